"""SDHC1 health-code freshness tokens (docs/protocol/token.md): text form, binary layout, body.

This module only parses and builds; the order of the checks, and what is trusted, lives in
:mod:`terminal.verifier`. Every parse failure raises :class:`TokenError` carrying the
spec's reason code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import base45

from terminal.core import reasons as R
from terminal.crypto.gmcrypto import PaddingError, sm3, sm4_cbc_decrypt, sm4_cbc_encrypt
from drivers.idnumber import valid_check
from terminal.crypto.sm2 import PrivateKey

PREFIX = "SDHC1:"
_OTHER_VERSION = re.compile(r"SDHC[0-9]+:")
HEADER_LEN = 23
SIG_LEN = 64
MAX_BODY = 256
VERSION = 0x01
ALG_SM2_SM4 = 0x01

STATUS_NAMES = ("green", "yellow", "red")
FLAG_STAR, FLAG_CLOSE_CONTACT, FLAG_MONITORED = 0x01, 0x02, 0x04
NAT_NONE, NAT_NEGATIVE, NAT_POSITIVE, NAT_PENDING = 0, 1, 2, 3


class TokenError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    """The signed, still-encrypted token.

    offset size field
      0     1   version   0x01
      1     1   alg       0x01 = SM2-with-SM3 signature, SM4-CBC body
      2     4   kid       SM3(issuer 04‖X‖Y)[:4]
      6     4   iat       issued at, Unix seconds
     10     2   ttl       seconds
     12     8   nonce
     20     1   dkid      SM4 data key id
     21     2   body_len  positive multiple of 16, ≤ 256
     23     n   body      SM4-CBC(data key, IV = SM3(nonce ‖ iat)[:16], PKCS#7(plaintext))
   23+n    64   sig       SM2 r‖s over bytes [0, 23+n)
    """
    kid: str
    iat: int
    ttl: int
    nonce: bytes
    dkid: int
    body: bytes
    signed: bytes
    sig: bytes

    @property
    def iv(self) -> bytes:
        return body_iv(self.nonce, self.iat)


@dataclass(frozen=True)
class Body:
    """The plaintext body.

    offset size field
      0     1   status      0 green, 1 yellow, 2 red
      1     1   flags       bit0 star, bit1 close contact, bit2 monitored; bits 3-7 zero
      2     4   nat_at      last nucleic-acid sampling, Unix seconds; 0 = none
      6     1   nat_result  0 none, 1 negative, 2 positive, 3 pending
      7     1   vax_doses   0-9
      8    18   id_number   ASCII, GB 11643 check character
     26     1   name_len    1-60
     27     n   name        UTF-8, nothing after it
    """
    status: int
    flags: int
    nat_at: int
    nat_result: int
    vax_doses: int
    id_number: str
    name: str

    def to_bytes(self) -> bytes:
        name = self.name.encode("utf-8")
        return (bytes([self.status, self.flags]) + self.nat_at.to_bytes(4, "big")
                + bytes([self.nat_result, self.vax_doses]) + self.id_number.encode("ascii")
                + bytes([len(name)]) + name)


def body_iv(nonce: bytes, iat: int) -> bytes:
    return sm3(nonce + iat.to_bytes(4, "big"))[:16]


def parse_text(text: str) -> Envelope:
    """Step 1 of docs/protocol/token.md §4: text form, Base45, version, lengths."""
    text = text.strip()
    if not text.startswith(PREFIX):
        if _OTHER_VERSION.match(text):
            raise TokenError(R.UNSUPPORTED_VERSION, "unknown text version")
        raise TokenError(R.NOT_HEALTH_CODE)
    payload = text[len(PREFIX):]
    if len(payload) % 3 == 1:
        raise TokenError(R.BAD_FORMAT, "Base45 length 3n+1")
    try:
        raw = base45.b45decode(payload)
    except ValueError:
        raise TokenError(R.BAD_FORMAT, "not Base45") from None
    return parse_binary(raw)


def parse_binary(raw: bytes) -> Envelope:
    if len(raw) < 2:
        raise TokenError(R.BAD_FORMAT, "too short")
    # A later layout may have another length, so version and alg are judged first.
    if raw[0] != VERSION or raw[1] != ALG_SM2_SM4:
        raise TokenError(R.UNSUPPORTED_VERSION, f"version {raw[0]} alg {raw[1]}")
    if len(raw) < HEADER_LEN:
        raise TokenError(R.BAD_FORMAT, "too short")
    body_len = int.from_bytes(raw[21:23], "big")
    if body_len == 0 or body_len % 16 or body_len > MAX_BODY:
        raise TokenError(R.BAD_FORMAT, f"body_len {body_len}")
    if len(raw) != HEADER_LEN + body_len + SIG_LEN:
        raise TokenError(R.BAD_FORMAT, f"length {len(raw)} != {HEADER_LEN + body_len + SIG_LEN}")
    end = HEADER_LEN + body_len
    return Envelope(
        kid=raw[2:6].hex(),
        iat=int.from_bytes(raw[6:10], "big"),
        ttl=int.from_bytes(raw[10:12], "big"),
        nonce=raw[12:20],
        dkid=raw[20],
        body=raw[HEADER_LEN:end],
        signed=raw[:end],
        sig=raw[end:],
    )


def decrypt_body(env: Envelope, key: bytes) -> Body:
    """Step 5: decrypt with the data key and parse; any defect is ``bad_format``."""
    try:
        plain = sm4_cbc_decrypt(key, env.iv, env.body)
    except PaddingError as e:
        raise TokenError(R.BAD_FORMAT, str(e)) from None
    return parse_body(plain)


def parse_body(plain: bytes) -> Body:
    if len(plain) < 28:
        raise TokenError(R.BAD_FORMAT, "body too short")
    status, flags = plain[0], plain[1]
    if status > 2:
        raise TokenError(R.BAD_FORMAT, f"status {status}")
    if flags & 0xF8:
        raise TokenError(R.BAD_FORMAT, "reserved flag bits set")
    nat_result, vax = plain[6], plain[7]
    if nat_result > 3:
        raise TokenError(R.BAD_FORMAT, f"nat_result {nat_result}")
    if vax > 9:
        raise TokenError(R.BAD_FORMAT, f"vax_doses {vax}")
    try:
        id_number = plain[8:26].decode("ascii")
    except UnicodeDecodeError:
        raise TokenError(R.BAD_FORMAT, "id_number not ASCII") from None
    if not valid_check(id_number):
        raise TokenError(R.BAD_FORMAT, "id_number check character")
    name_len = plain[26]
    if not 1 <= name_len <= 60:
        raise TokenError(R.BAD_FORMAT, f"name_len {name_len}")
    if len(plain) != 27 + name_len:
        raise TokenError(R.BAD_FORMAT, "body length does not match name_len")
    try:
        name = plain[27:].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError(R.BAD_FORMAT, "name not UTF-8") from None
    return Body(status, flags, int.from_bytes(plain[2:6], "big"), nat_result, vax, id_number, name)


def encode(issuer: PrivateKey, *, dkid: int, data_key: bytes, iat: int, ttl: int, nonce: bytes,
           body: Body) -> str:
    """Build the QR text of a token, as the issuing platform does (simulator and tests)."""
    ct = sm4_cbc_encrypt(data_key, body_iv(nonce, iat), body.to_bytes())
    kid = bytes.fromhex(issuer.public_key.kid())
    signed = (bytes([VERSION, ALG_SM2_SM4]) + kid + iat.to_bytes(4, "big") + ttl.to_bytes(2, "big")
              + nonce + bytes([dkid]) + len(ct).to_bytes(2, "big") + ct)
    return PREFIX + base45.b45encode(signed + issuer.sign(signed)).decode("ascii")
