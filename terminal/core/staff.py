"""Staff credentials for overriding a review (docs/protocol/staff.md): the staff list and the staff QR code.

Staff list — in the hub's signed policy bundle, ``"staff": {"key": <32 hex>, "digests": [<32 hex>…]}``:
each digest is HMAC-SM3 of an ID number under the bundle's key, cut to 16 bytes. The list never
carries a number; a terminal tests a card by computing the digest of the number it has just read.

Staff QR code — ``SDST1:`` + Base45 of a compact binary signed by the hub key (SM2/SM3, as a
health code is signed by its issuer), short-lived:

    offset size field
      0     1   version   0x01
      1     4   kid       SM3(hub public key 04‖X‖Y)[:4]
      5     4   iat       issued at, Unix seconds
      9     2   ttl       seconds, 1-300
     11     8   nonce     random: a code confirms one review
     19     1   sid_len   1-32
     20     n   sid       the staff member's id at the hub, ASCII [A-Za-z0-9._-] (not an ID number)
   20+n    64   sig       SM2 r‖s over bytes [0, 20+n)

Parsing raises :class:`StaffError` with a reason code of :mod:`terminal.core.reasons`; the
verifier decides freshness against its trusted time and the review window.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import base45

from terminal.core import reasons as R
from terminal.crypto.gmcrypto import hmac_sm3
from terminal.crypto.sm2 import PrivateKey, PublicKey

# --- staff list ------------------------------------------------------------------------------
KEY_BYTES = 16
DIGEST_BYTES = 16
# The policy topic's inbound limit is 256 KiB; a digest is 35 bytes of JSON: room to spare.
MAX_STAFF = 5000
# Domain separation: the bundle's key digests ID numbers for this purpose only.
LABEL = b"gate-terminal staff v1\0"
_HEX = re.compile(r"[0-9a-f]*")


def normalise(id_number: str) -> bytes:
    """``x`` and ``X`` are the same check character (GB 11643); scanners add whitespace."""
    return id_number.strip().upper().encode("ascii", "replace")


def staff_digest(key: bytes, id_number: str) -> bytes:
    return hmac_sm3(key, LABEL + normalise(id_number))[:DIGEST_BYTES]


@dataclass(frozen=True)
class StaffList:
    key: bytes
    digests: frozenset[bytes]

    def __contains__(self, id_number: object) -> bool:
        return isinstance(id_number, str) and bool(self.digests) \
            and staff_digest(self.key, id_number) in self.digests

    def __len__(self) -> int:
        return len(self.digests)


NO_STAFF = StaffList(bytes(KEY_BYTES), frozenset())


def staff_list(key: bytes, id_numbers: list[str]) -> dict:
    """The bundle's ``staff`` object for ``id_numbers`` under ``key`` (the hub's side): digests
    sorted, so the order says nothing of who was added when."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"the staff key is {KEY_BYTES} bytes")
    if len(id_numbers) > MAX_STAFF:
        raise ValueError(f"at most {MAX_STAFF} staff")
    return {"key": key.hex(), "digests": sorted({staff_digest(key, n).hex() for n in id_numbers})}


def _hex(value: object, n: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * n or not _HEX.fullmatch(value):
        raise ValueError(f"{what} must be {2 * n} lowercase hex characters")
    return bytes.fromhex(value)


def parse_staff_list(doc: object) -> StaffList:
    """The bundle's ``staff`` object; ValueError naming what is wrong (bounded before it is read)."""
    if not isinstance(doc, dict) or set(doc) != {"key", "digests"}:
        raise ValueError("staff: not a {key, digests} object")
    key = _hex(doc["key"], KEY_BYTES, "staff.key")
    digests = doc["digests"]
    if not isinstance(digests, list) or len(digests) > MAX_STAFF:
        raise ValueError(f"staff.digests: not a list of at most {MAX_STAFF}")
    return StaffList(key, frozenset(_hex(d, DIGEST_BYTES, f"staff.digests[{i}]") for i, d in enumerate(digests)))


# --- staff QR code -----------------------------------------------------------------------------
PREFIX = "SDST1:"
_OTHER_VERSION = re.compile(r"SDST[0-9]+:")
VERSION = 0x01
HEADER_LEN = 20
SIG_LEN = 64
MAX_TTL = 300
MAX_SID = 32
SID = re.compile(r"[A-Za-z0-9._-]{1,32}")
# The longest genuine text: 20 + 32 + 64 bytes in Base45 (3 characters for 2 bytes); more is
# refused before it is decoded.
MAX_TEXT = len(PREFIX) + (HEADER_LEN + MAX_SID + SIG_LEN) // 2 * 3


class StaffError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_staff_qr(text: str) -> bool:
    """A staff code (of any version): the verifier routes it here, never to the health-code checks."""
    return bool(_OTHER_VERSION.match(text.strip()))


@dataclass(frozen=True)
class StaffQr:
    sid: str
    iat: int
    ttl: int
    nonce: bytes


def staff_qr(hub_key: PrivateKey, sid: str, *, iat: int, ttl: int = 30, nonce: bytes) -> str:
    """A staff code as the hub issues it (simulator and tests)."""
    if not SID.fullmatch(sid) or not 1 <= ttl <= MAX_TTL or len(nonce) != 8:
        raise ValueError(f"sid 1-{MAX_SID} of [A-Za-z0-9._-], ttl 1-{MAX_TTL}, an 8-byte nonce")
    signed = (bytes([VERSION]) + bytes.fromhex(hub_key.public_key.kid()) + iat.to_bytes(4, "big")
              + ttl.to_bytes(2, "big") + nonce + bytes([len(sid)]) + sid.encode("ascii"))
    return PREFIX + base45.b45encode(signed + hub_key.sign(signed)).decode("ascii")


def open_staff_qr(text: str, hub_keys: dict[str, PublicKey]) -> StaffQr:
    """Text form, layout and the hub's signature: ``bad_format``, ``unsupported_version`` or
    ``bad_signature`` (a signer that is not the pinned hub key included). Freshness is the caller's."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise StaffError(R.UNSUPPORTED_VERSION if _OTHER_VERSION.match(text) else R.BAD_FORMAT)
    if len(text) > MAX_TEXT:
        raise StaffError(R.BAD_FORMAT, f"{len(text)} characters")
    try:
        raw = base45.b45decode(text[len(PREFIX):])
    except ValueError:
        raise StaffError(R.BAD_FORMAT, "not Base45") from None
    # A later layout may have another length, so the version is judged first.
    if raw[:1] != bytes([VERSION]):
        raise StaffError(R.UNSUPPORTED_VERSION if raw else R.BAD_FORMAT, f"version {raw[:1].hex()}")
    if len(raw) < HEADER_LEN + 1 + SIG_LEN:
        raise StaffError(R.BAD_FORMAT, "too short")
    sid_len = raw[19]
    end = HEADER_LEN + sid_len
    if not 1 <= sid_len <= MAX_SID or len(raw) != end + SIG_LEN:
        raise StaffError(R.BAD_FORMAT, f"sid_len {sid_len}, length {len(raw)}")
    key = hub_keys.get(raw[1:5].hex())
    if key is None or not key.verify(raw[:end], raw[end:]):
        raise StaffError(R.BAD_SIGNATURE)
    sid = raw[HEADER_LEN:end].decode("ascii", "replace")
    ttl = int.from_bytes(raw[9:11], "big")
    if not SID.fullmatch(sid) or not 1 <= ttl <= MAX_TTL:  # signed, but not by the hub's rules
        raise StaffError(R.BAD_FORMAT, "sid or ttl out of range")
    return StaffQr(sid, int.from_bytes(raw[5:9], "big"), ttl, raw[11:19])


def freshness(q: StaffQr, t: float | None, max_skew: int) -> str | None:
    """The reason a verified code is not usable at trusted time ``t``, or None. Usable from
    ``iat - max_skew`` up to and including ``iat + ttl`` (as a health code is)."""
    if t is None:
        return R.CLOCK_UNTRUSTED
    if q.iat > t + max_skew:
        return R.NOT_YET_VALID
    if t > q.iat + q.ttl:
        return R.EXPIRED
    return None


# --- who overrides -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Staff:
    """The staff member confirming a review: ``via`` id_card / ss_card (on the staff list), qr
    (a staff code's ``sid``), or remote (the hub's ``open_gate``: ``sid`` names who sent it)."""
    via: str
    id_number: str | None = None
    name: str | None = None
    sid: str | None = None

    def subject(self) -> dict:
        """What the event's subject carries, encrypted to the hub: a card's holder as for anyone,
        else the staff id."""
        if self.id_number is not None:
            return {"id_number": self.id_number, "name": self.name or ""}
        return {"staff_id": self.sid, "via": self.via}
