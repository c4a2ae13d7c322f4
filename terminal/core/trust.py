"""Signed envelopes and the issuers' trust list (docs/protocol/token.md §5).

Envelope: ``{"payload": base64(exact JSON bytes), "signer": kid of the signing key,
"sig": 128 hex r‖s}``, SM2/SM3 over the decoded payload bytes. The same envelope carries
trust lists, policy bundles, data keys and time beacons (docs/protocol/hub.md).
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from terminal.core import boundedjson
from terminal.crypto.sm2 import PrivateKey, PublicKey, SM2Error


# A trust list file: about 400 bytes an issuer, so some 2,500 issuers.
MAX_TRUST_LIST_BYTES = 1 << 20


class EnvelopeError(ValueError):
    pass


def _read_envelope(raw: bytes | str) -> tuple[bytes, object, bytes]:
    try:
        env = boundedjson.loads(raw)
        return base64.b64decode(env["payload"], validate=True), env["signer"], bytes.fromhex(env["sig"])
    except boundedjson.JsonLimitError as e:
        raise EnvelopeError(f"envelope refused unparsed: {e}") from None
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise EnvelopeError("not a signed envelope {payload, signer, sig}") from None


def envelope_payload(raw: bytes | str) -> bytes:
    """The payload of a signed envelope, NOT verified: for a relay that holds no key to check it."""
    return _read_envelope(raw)[0]


def open_envelope(raw: bytes | str, keys: dict[str, PublicKey]) -> bytes:
    """Verify a signed envelope against ``keys`` (kid → key) and return its payload bytes."""
    payload, signer, sig = _read_envelope(raw)
    key = keys.get(signer) if isinstance(signer, str) else None
    if key is None:
        raise EnvelopeError(f"signer {str(signer)[:16]!r} is not a pinned key")
    if not key.verify(payload, sig):
        raise EnvelopeError(f"signature by {signer} does not verify")
    return payload


def seal_envelope(payload: bytes, key: PrivateKey) -> bytes:
    return json.dumps({"payload": base64.b64encode(payload).decode(), "signer": key.public_key.kid(),
                       "sig": key.sign(payload).hex()}).encode()


@dataclass(frozen=True)
class Issuer:
    kid: str
    public_key: PublicKey
    not_before: int
    not_after: int
    status: str  # "active" | "revoked"

    def valid_at(self, t: int) -> bool:
        return self.status == "active" and self.not_before <= t <= self.not_after


@dataclass(frozen=True)
class TrustList:
    seq: int
    issued_at: int
    issuers: dict[str, Issuer]
    # When the root promises the next list (optional; this project's addition, docs/protocol/token.md §5):
    # past it plus [trust] stale_grace_hours the terminal raises trust_stale. None: never stale.
    next_update: int | None = None


def trust_list(seq: int, issued_at: int, issuers: list[Issuer], root_key: PrivateKey,
               next_update: int | None = None) -> bytes:
    """A trust list signed by a provincial root key (what :func:`open_trust_list` reads)."""
    doc = {"type": "trust-list", "seq": seq, "issued_at": issued_at, "issuers": [
        {"kid": i.kid, "public_key": i.public_key.hex(), "not_before": i.not_before, "not_after": i.not_after,
         "status": i.status} for i in issuers]}
    if next_update is not None:
        doc["next_update"] = next_update
    return seal_envelope(json.dumps(doc, separators=(",", ":")).encode(), root_key)


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise EnvelopeError(f"trust list: {what} must be a non-negative integer")
    if v > boundedjson.MAX_SQL_INT:  # kept in an SQLite INTEGER
        raise EnvelopeError(f"trust list: {what} is beyond 2^63-1")
    return v


def json_payload(payload: bytes, what: str = "") -> object:
    """An envelope's payload parsed through the bounded parser; EnvelopeError (prefixed ``what``) otherwise."""
    try:
        return boundedjson.loads(payload)
    except boundedjson.JsonLimitError as e:
        raise EnvelopeError(f"{what}payload refused unparsed: {e}") from None
    except ValueError:
        raise EnvelopeError(f"{what}payload is not JSON") from None


def parse_trust_list(payload: bytes) -> TrustList:
    doc = json_payload(payload, "trust list: ")
    if not isinstance(doc, dict) or doc.get("type") != "trust-list" or not isinstance(doc.get("issuers"), list):
        raise EnvelopeError("trust list: not a {type: trust-list, issuers: [...]} document")
    issuers = {}
    for i, e in enumerate(doc["issuers"]):
        if not isinstance(e, dict):
            raise EnvelopeError(f"trust list: issuers[{i}] is not an object")
        try:
            key = PublicKey.from_hex(e.get("public_key", ""))
        except (SM2Error, AttributeError):
            raise EnvelopeError(f"trust list: issuers[{i}].public_key is not an SM2 public key") from None
        # The kid is derived from the key; a list that disagrees is broken, not half-usable.
        if e.get("kid") != key.kid():
            raise EnvelopeError(f"trust list: issuers[{i}].kid does not match its public key")
        if e.get("status") not in ("active", "revoked"):
            raise EnvelopeError(f"trust list: issuers[{i}].status must be active or revoked")
        issuers[key.kid()] = Issuer(key.kid(), key, _int(e.get("not_before"), f"issuers[{i}].not_before"),
                                    _int(e.get("not_after"), f"issuers[{i}].not_after"), e["status"])
    next_update = doc.get("next_update")
    return TrustList(_int(doc.get("seq"), "seq"), _int(doc.get("issued_at", 0), "issued_at"), issuers,
                     None if next_update is None else _int(next_update, "next_update"))


def open_trust_list(raw: bytes | str, roots: dict[str, PublicKey]) -> TrustList:
    return parse_trust_list(open_envelope(raw, roots))
