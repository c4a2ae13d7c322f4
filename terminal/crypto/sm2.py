"""SM2 (GB/T 32918) signatures and public-key encryption, with SM3 from gmssl.

Why not ``gmssl.sm2.CryptSM2`` for the curve itself: measured here it takes ~10.5 ms per
verification and ~10 ms per encryption (two plain double-and-add scalar multiplications
over hex strings), which alone would eat the 25 ms budget of a presentation; its
``encrypt`` and default signing nonce come from ``random.choice`` (not a CSPRNG); its
``decrypt`` never compares C3; ``verify`` does not range-check ``r, s``; and it strips a
``04`` prefix with ``str.lstrip``, corrupting keys whose X starts with 0 or 4. This module
keeps gmssl's SM3 (and SM4, in :mod:`terminal.crypto.gmcrypto`) and does the curve arithmetic with
precomputed fixed-base tables: every point a terminal multiplies on a hot path is fixed
(G, the issuers' keys from the trust list, the hub key), so a multiplication is ~64 mixed
additions. Cross-checked against gmssl and the OpenSSL-made vectors in the tests.

Wire forms (GM/T 0009): signature ``r‖s`` (2×32 bytes); ciphertext ``C1‖C3‖C2`` with
C1 the uncompressed point ``04‖x‖y`` (65 bytes), C3 = SM3(x2‖M‖y2) (32), C2 = M xor KDF.
"""
from __future__ import annotations

import secrets
from functools import lru_cache

from terminal.crypto.gmcrypto import sm3

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_ID = b"1234567812345678"  # the default signer identity (distid) of GM/T 0009

_INF = (1, 1, 0)  # Jacobian point at infinity (Z = 0)


class SM2Error(ValueError):
    """A malformed key, signature or ciphertext."""


# --- field and group arithmetic (Jacobian coordinates, a = -3) ------------------------

def _double(pt):
    x, y, z = pt
    if z == 0 or y == 0:
        return _INF
    yy = y * y % P
    zz = z * z % P
    s = 4 * x * yy % P
    m = 3 * (x - zz) * (x + zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return (x3, y3, z3)


def _add_affine(pt, q):
    """Jacobian ``pt`` + affine ``q`` (q never infinity)."""
    x1, y1, z1 = pt
    x2, y2 = q
    if z1 == 0:
        return (x2, y2, 1)
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    if h == 0:
        return _double(pt) if r == 0 else _INF
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - y1 * hhh) % P
    z3 = z1 * h % P
    return (x3, y3, z3)


def _add(p1, p2):
    """Jacobian + Jacobian."""
    if p1[2] == 0:
        return p2
    if p2[2] == 0:
        return p1
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        return _double(p1) if r == 0 else _INF
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = z1 * z2 * h % P
    return (x3, y3, z3)


def _to_affine(pt):
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _batch_affine(points):
    """Affine forms of many Jacobian points (none at infinity) with one inversion."""
    acc = []
    prod = 1
    for _, _, z in points:
        acc.append(prod)
        prod = prod * z % P
    inv = pow(prod, -1, P)
    out = [None] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        zi = inv * acc[i] % P
        inv = inv * z % P
        zi2 = zi * zi % P
        out[i] = (x * zi2 % P, y * zi2 * zi % P)
    return out


def on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


class _FixedBase:
    """k·Q for a fixed Q: table[i][j] = j·16^i·Q (affine), one mixed add per 4-bit digit."""

    def __init__(self, x: int, y: int):
        rows = []
        base = (x, y, 1)
        for _ in range(64):
            row = [base]
            for _ in range(14):
                row.append(_add(row[-1], base))
            rows.append(row)
            # 16·base for the next row
            nxt = base
            for _ in range(4):
                nxt = _double(nxt)
            base = nxt
        flat = _batch_affine([p for row in rows for p in row])
        self.table = [flat[i * 15:(i + 1) * 15] for i in range(64)]

    def mul(self, k: int):
        acc = _INF
        i = 0
        while k:
            d = k & 15
            if d:
                acc = _add_affine(acc, self.table[i][d - 1])
            k >>= 4
            i += 1
        return acc


def _mul_var(k: int, x: int, y: int):
    """k·(x, y) for a point seen once (decryption's C1): 4-bit fixed window."""
    q = (x, y, 1)
    window = [_INF, q]
    for _ in range(14):
        window.append(_add(window[-1], q))
    acc = _INF
    for shift in range((k.bit_length() + 3) // 4 * 4 - 4, -4, -4):
        for _ in range(4):
            acc = _double(acc)
        d = (k >> shift) & 15
        if d:
            acc = _add(acc, window[d])
    return acc


_G = _FixedBase(GX, GY)


@lru_cache(maxsize=64)
def _fixed_base(x: int, y: int) -> _FixedBase:
    return _FixedBase(x, y)


def _i2b(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _kdf(z: bytes, klen: int) -> bytes:
    out = bytearray()
    ct = 1
    while len(out) < klen:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return bytes(out[:klen])


# --- keys ---------------------------------------------------------------------------

class PublicKey:
    """An SM2 public key: the 65-byte uncompressed point ``04‖X‖Y``."""

    __slots__ = ("x", "y", "_z")

    def __init__(self, x: int, y: int):
        if not on_curve(x, y):
            raise SM2Error("public key is not a point on the SM2 curve")
        self.x, self.y = x, y
        self._z: dict[bytes, bytes] = {}

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        if len(data) != 65 or data[0] != 4:
            raise SM2Error("public key must be 65 bytes, uncompressed (04‖X‖Y)")
        return cls(int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        text = text.strip()
        if len(text) != 130:
            raise SM2Error("public key must be 130 hex digits (04‖X‖Y)")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise SM2Error("public key is not hexadecimal") from None
        return cls.from_bytes(raw)

    def to_bytes(self) -> bytes:
        return b"\x04" + _i2b(self.x) + _i2b(self.y)

    def hex(self) -> str:
        return self.to_bytes().hex()

    def precompute(self) -> None:
        """Build this key's multiplication table now, not on the first presentation (~10 ms)."""
        _fixed_base(self.x, self.y)

    def kid(self) -> str:
        """Key id of docs/protocol/token.md: first 4 bytes of SM3(04‖X‖Y), as 8 hex digits."""
        return sm3(self.to_bytes())[:4].hex()

    def __eq__(self, other):
        return isinstance(other, PublicKey) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def _za(self, ident: bytes) -> bytes:
        z = self._z.get(ident)
        if z is None:
            entl = (len(ident) * 8).to_bytes(2, "big")
            z = sm3(entl + ident + _i2b(A) + _i2b(B) + _i2b(GX) + _i2b(GY) + _i2b(self.x) + _i2b(self.y))
            self._z[ident] = z
        return z

    def digest(self, message: bytes, ident: bytes = DEFAULT_ID) -> int:
        return int.from_bytes(sm3(self._za(ident) + message), "big")

    def verify(self, message: bytes, signature: bytes, ident: bytes = DEFAULT_ID) -> bool:
        """GB/T 32918.2 verification of a 64-byte ``r‖s`` signature over ``message``."""
        if len(signature) != 64:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (1 <= r < N and 1 <= s < N):
            return False
        t = (r + s) % N
        if t == 0:
            return False
        e = self.digest(message, ident)
        pt = _to_affine(_add(_G.mul(s), _fixed_base(self.x, self.y).mul(t)))
        if pt is None:
            return False
        return (e + pt[0]) % N == r

    def encrypt(self, message: bytes) -> bytes:
        """SM2 encryption (GB/T 32918.4) to this key: ``C1(04‖x1‖y1) ‖ C3 ‖ C2``."""
        if not message:
            raise SM2Error("nothing to encrypt")
        table = _fixed_base(self.x, self.y)
        while True:
            k = secrets.randbelow(N - 1) + 1
            c1 = _to_affine(_G.mul(k))
            x2, y2 = _to_affine(table.mul(k))
            t = _kdf(_i2b(x2) + _i2b(y2), len(message))
            if any(t):
                break
        c2 = bytes(a ^ b for a, b in zip(message, t))
        c3 = sm3(_i2b(x2) + message + _i2b(y2))
        return b"\x04" + _i2b(c1[0]) + _i2b(c1[1]) + c3 + c2


class PrivateKey:
    __slots__ = ("d", "public_key")

    def __init__(self, d: int):
        if not 1 <= d < N - 1:
            raise SM2Error("private key out of range")
        self.d = d
        self.public_key = PublicKey(*_to_affine(_G.mul(d)))

    @classmethod
    def generate(cls) -> "PrivateKey":
        return cls(secrets.randbelow(N - 2) + 1)

    def sign(self, message: bytes, ident: bytes = DEFAULT_ID) -> bytes:
        e = self.public_key.digest(message, ident)
        d = self.d
        inv = pow(1 + d, -1, N)
        while True:
            k = secrets.randbelow(N - 1) + 1
            x1, _ = _to_affine(_G.mul(k))
            r = (e + x1) % N
            if r == 0 or r + k == N:
                continue
            s = inv * (k - r * d) % N
            if s:
                return _i2b(r) + _i2b(s)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) < 65 + 32 + 1 or ciphertext[0] != 4:
            raise SM2Error("ciphertext too short or C1 not an uncompressed point")
        x1 = int.from_bytes(ciphertext[1:33], "big")
        y1 = int.from_bytes(ciphertext[33:65], "big")
        if not on_curve(x1, y1):
            raise SM2Error("C1 is not on the curve")
        c3 = ciphertext[65:97]
        c2 = ciphertext[97:]
        pt = _to_affine(_mul_var(self.d, x1, y1))
        if pt is None:
            raise SM2Error("C1 is degenerate")
        x2, y2 = pt
        t = _kdf(_i2b(x2) + _i2b(y2), len(c2))
        if not any(t):
            raise SM2Error("degenerate key stream")
        m = bytes(a ^ b for a, b in zip(c2, t))
        if not secrets.compare_digest(sm3(_i2b(x2) + m + _i2b(y2)), c3):
            raise SM2Error("ciphertext check (C3) failed")
        return m
