"""SDHC1 token bodies built field by field, valid and broken, sealed into tokens the vectors'
issuer signs with the vectors' data key: every case passes steps 1-4 of spec/token.md §4, so
body validation (step 5) is what decides it. Flipping bytes of a signed token never gets there.

The layout is written out here rather than taken from ``terminal.core.token``: a test that built
its tokens with the code under test would agree with that code's mistakes.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import base45
from hypothesis import strategies as st

from terminal.core import token as tok
from terminal.config import load
from terminal.crypto.gmcrypto import sm3, sm4_cbc_encrypt
from drivers.idnumber import check_character
from terminal.crypto.keyfiles import parse_private_pem
from terminal.verifier import Verifier

from conftest import VECTORS

ISSUER = parse_private_pem((VECTORS / "issuer.pem").read_text())
DKID = 1
DATA_KEY = bytes.fromhex(json.loads((VECTORS / "data_keys.json").read_text())["data_keys"][str(DKID)])
# The trust list's window for ISSUER (trust.json), both ends inclusive.
NOT_BEFORE, NOT_AFTER = 1766186147, 1800314147
NOW = 1768844563  # the vectors' presentation time, well inside that window
ID_NUMBER = "37010219900101123" + check_character("37010219900101123")

_nonces = itertools.count(1)


def fresh_nonce() -> bytes:
    """Unique in this process: one verifier sees many examples, and a repeat would be `replayed`."""
    return next(_nonces).to_bytes(8, "big")


def open_verifier(config: Path, state: Path) -> Verifier:
    return Verifier.open(load(config), state)


def pkcs7(plain: bytes) -> bytes:
    n = 16 - len(plain) % 16
    return plain + bytes([n]) * n


def seal_blocks(padded: bytes, *, iat: int = NOW, ttl: int = 60, nonce: bytes | None = None,
                dkid: int = DKID) -> str:
    """A signed token whose body is exactly ``padded`` (whole blocks, padding not added here)."""
    assert len(padded) % 16 == 0
    nonce = fresh_nonce() if nonce is None else nonce
    iv = sm3(nonce + iat.to_bytes(4, "big"))[:16]
    # CBC is prefix-consistent: the whole-block plaintext's ciphertext is the head of the padded one's.
    ct = sm4_cbc_encrypt(DATA_KEY, iv, padded)[:len(padded)]
    signed = (b"\x01\x01" + bytes.fromhex(ISSUER.public_key.kid()) + iat.to_bytes(4, "big")
              + ttl.to_bytes(2, "big") + nonce + bytes([dkid]) + len(ct).to_bytes(2, "big") + ct)
    return tok.PREFIX + base45.b45encode(signed + ISSUER.sign(signed)).decode("ascii")


def seal(plain: bytes, **kw) -> str:
    return seal_blocks(pkcs7(plain), **kw)


def body_bytes(status: int = 0, flags: int = 0, nat_at: int = NOW - 3600, nat_result: int = 1,
               vax: int = 3, id_number: bytes = ID_NUMBER.encode(), name: bytes = "张三".encode(),
               name_len: int | None = None) -> bytes:
    """A plaintext body from raw field values (anything, in range or not)."""
    return (bytes([status, flags]) + nat_at.to_bytes(4, "big") + bytes([nat_result, vax]) + id_number
            + bytes([len(name) if name_len is None else name_len]) + name)


# --- valid bodies -------------------------------------------------------------------

id_numbers = st.text("0123456789", min_size=17, max_size=17).map(lambda s: s + check_character(s))
# Up to 60 ASCII characters, or up to 15 of anything (≤ 4 UTF-8 bytes each): always 1-60 bytes.
names = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=15))

bodies = st.builds(
    tok.Body, status=st.integers(0, 2), flags=st.integers(0, 7), nat_at=st.integers(0, 2**32 - 1),
    nat_result=st.integers(0, 3), vax_doses=st.integers(0, 9), id_number=id_numbers, name=names)


def raw(body: tok.Body) -> bytes:
    return body_bytes(body.status, body.flags, body.nat_at, body.nat_result, body.vax_doses,
                      body.id_number.encode("ascii"), body.name.encode("utf-8"))


# --- broken bodies: one defect each, everything else valid --------------------------

@dataclass(frozen=True)
class Broken:
    defect: str
    plain: bytes   # before padding


def _put(plain: bytes, i: int, value: int) -> bytes:
    b = bytearray(plain)
    b[i] = value
    return bytes(b)


_NON_DIGIT_ASCII = st.integers(0, 0x7F).filter(lambda c: not 0x30 <= c <= 0x39)
_BAD_UTF8 = st.sampled_from([b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe5\xbc", b"\xed\xa0\x80",
                             b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xff", b"\xfe"])


@st.composite
def broken_bodies(draw) -> Broken:
    plain = raw(draw(bodies))
    name = plain[27:]
    defect = draw(st.sampled_from([
        "status", "reserved_flag", "nat_result", "vax", "id_not_ascii", "id_not_digit", "id_check",
        "name_len_0", "name_len_over_60", "name_len_mismatch", "trailing", "name_not_utf8", "short"]))
    if defect == "status":
        plain = _put(plain, 0, draw(st.integers(3, 255)))
    elif defect == "reserved_flag":  # one reserved bit alone, beside any valid ones
        plain = _put(plain, 1, plain[1] | 1 << draw(st.integers(3, 7)))
    elif defect == "nat_result":
        plain = _put(plain, 6, draw(st.integers(4, 255)))
    elif defect == "vax":
        plain = _put(plain, 7, draw(st.integers(10, 255)))
    elif defect == "id_not_ascii":
        plain = _put(plain, draw(st.integers(8, 25)), draw(st.integers(0x80, 0xFF)))
    elif defect == "id_not_digit":
        plain = _put(plain, draw(st.integers(8, 24)), draw(_NON_DIGIT_ASCII))
    elif defect == "id_check":
        right = chr(plain[25])
        plain = _put(plain, 25, ord(draw(st.sampled_from([c for c in "0123456789Xx" if c != right]))))
    elif defect == "name_len_0":  # then the body's length cannot match either
        plain = _put(plain, 26, 0)
    elif defect == "name_len_over_60":  # a name that long, and name_len saying so: only the limit stops it
        n = draw(st.integers(61, 228))
        plain = plain[:26] + bytes([n]) + draw(st.text("abcXYZ", min_size=n, max_size=n)).encode()
    elif defect == "name_len_mismatch":
        plain = _put(plain, 26, draw(st.integers(1, 60).filter(lambda n: n != len(name))))
    elif defect == "trailing":
        plain += draw(st.binary(min_size=1, max_size=255 - len(plain)))
    elif defect == "name_not_utf8":
        head = draw(st.text(st.characters(max_codepoint=0x7F), max_size=20)).encode()
        bad = draw(_BAD_UTF8)
        tail = draw(st.text("ab张", max_size=8)).encode()
        name = head + bad + tail
        plain = plain[:26] + bytes([len(name)]) + name
    else:
        plain = draw(st.binary(max_size=27))
    return Broken(defect, plain)


# --- bad PKCS#7 padding around a valid body ----------------------------------------

@st.composite
def badly_padded(draw) -> Broken:
    """Whole blocks whose padding is wrong: pad byte 0, pad byte over 16, or pad bytes that
    disagree with the last one (a body that would otherwise be accepted)."""
    plain = raw(draw(bodies))
    blocks = bytearray(plain + draw(st.binary(min_size=16 - len(plain) % 16, max_size=16 - len(plain) % 16)))
    defect = draw(st.sampled_from(["pad_zero", "pad_over_16", "pad_inconsistent"]))
    if defect == "pad_zero":
        blocks[-1] = 0
    elif defect == "pad_over_16":
        blocks[-1] = draw(st.integers(17, 255))
    else:
        p = draw(st.integers(2, 16))
        blocks[-p:] = bytes([p]) * p
        blocks[-draw(st.integers(2, p))] = draw(st.integers(0, 255).filter(lambda v: v != p))
    return Broken(defect, bytes(blocks))
