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
additions. That fast path skips zero digits, so it is kept for public scalars (verification);
a secret scalar — a signing or encryption nonce, the private key in decryption — goes through
a regular ladder over the same tables whose steps do not depend on the scalar (see "secret
scalars" below). Cross-checked against gmssl and the OpenSSL-made vectors in the tests.

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
        # For secret scalars (_mul_base_ct): the odd multiples 1, 3, ..., 15 of each row, x‖y
        # packed into one int so a masked scan touches one value per entry, and 16^64·Q.
        self.odd_rows = [tuple(x | y << 256 for x, y in row[0::2]) for row in self.table]
        self.top = _to_affine(_double(_double(_double(_double((*self.table[63][0], 1))))))

    def mul(self, k: int):
        """k·Q for a PUBLIC k (verification): zero digits are skipped, so the time tells
        how many digits of k are zero — never use it for a nonce or a private key."""
        acc = _INF
        i = 0
        while k:
            d = k & 15
            if d:
                acc = _add_affine(acc, self.table[i][d - 1])
            k >>= 4
            i += 1
        return acc


# --- secret scalars: a regular ladder ----------------------------------------------------
#
# _FixedBase.mul skips zero digits (~3.5–4.5 µs per non-zero 4-bit digit), so its time tells
# how many nibbles of a nonce are zero — over many signatures, a lattice attack on the key.
# For a secret scalar every step below runs the same whatever the scalar: it is recoded into 64
# odd signed digits (none is zero, nothing to skip), each table entry is taken by a masked scan
# of its whole row (no memory access indexed by a secret), the sign by a mask, and no addition
# branches: each is either one whose special cases (O, doubling) are shown impossible (_jadd)
# or a complete formula (Renes–Costello–Batina 2016, a = -3, projective X/Z, Y/Z) that has none;
# the final inversion is blinded (_to_affine_ct).
# CPython's integers are not constant-time themselves — an operation's cost follows its
# operands' lengths in 30-bit digits, and `x & 0` is cheaper than `x & -1` — so this removes
# the data-dependent control flow and table access, not every nanosecond of leakage.

_M256 = (1 << 256) - 1


def _padd(pt, x2: int, y2: int):
    """Complete projective ``pt`` + affine ``(x2, y2)`` (RCB16 alg. 4 with Z2 = 1); pt may be O."""
    x1, y1, z1 = pt
    t0 = x1 * x2 % P
    t1 = y1 * y2 % P
    t3 = ((x1 + y1) * (x2 + y2) - t0 - t1) % P
    t4 = (y2 * z1 + y1) % P
    y3 = (x2 * z1 + x1) % P
    x3 = (y3 - B * z1) % P
    x3 = 3 * x3
    z3 = t1 - x3
    x3 = t1 + x3
    t2 = 3 * z1
    y3 = (B * y3 - t2 - t0) % P
    y3 = 3 * y3
    t0 = 3 * t0 - t2
    return ((t3 * x3 - t4 * y3) % P, (x3 * z3 + t0 * y3) % P, (t4 * z3 + t3 * t0) % P)


def _pdouble(pt):
    """Complete projective doubling, a = -3 (RCB16 alg. 6)."""
    x, y, z = pt
    t0 = x * x % P
    t1 = y * y % P
    t2 = z * z % P
    t3 = 2 * x * y % P
    z3 = 2 * x * z % P
    y3 = (B * t2 - z3) % P
    x3 = t1 - 3 * y3
    y3 = (x3 * (t1 + 3 * y3)) % P
    x3 = x3 * t3 % P
    t2 = 3 * t2
    z3 = (B * z3 - t2 - t0) % P
    z3 = 3 * z3
    t0 = (3 * t0 - t2) * z3 % P
    y3 = (y3 + t0) % P
    t0 = 2 * y * z % P
    x3 = (x3 - t0 * z3) % P
    z3 = 4 * t0 * t1 % P
    return (x3, y3, z3)


def _recode(k: int) -> list[int]:
    """Digits d_0..d_63, each odd in [-15, 15], with k ≡ 16^64 + Σ d_i·16^i (mod n), for 1 ≤ k < n.

    The representative k or k + n that is odd (n is odd) is picked by a mask; it is < 2n < 2^257,
    so after 64 digits what is left is always 1: the top digit needs no lookup.
    """
    k += N & -(~k & 1)
    digits = []
    for _ in range(64):
        d = (k & 31) - 16
        digits.append(d)
        k = (k - d) >> 4
    return digits


def _select(row: tuple, d: int, points: int = 1) -> tuple[int, ...]:
    """|d| times the row's point(s), negated if d < 0, for odd d in [-15, 15]: entry (|d| - 1) / 2
    — one point x‖y, or two (a pair row) x‖y‖x'‖y' — taken by a masked scan of every entry."""
    neg = d >> 4                       # -1 if d < 0 else 0
    idx = ((d ^ neg) - neg) >> 1       # (|d| - 1) / 2
    out = row[0]
    for j in range(1, 8):
        out ^= (out ^ row[j]) & ((idx ^ j) - 1 >> 8)   # mask -1 only where j == idx
    y = (out >> 256) & _M256
    if points == 1:
        return out & _M256, y ^ ((y ^ (P - y)) & neg)
    y2 = out >> 768
    return (out & _M256, y ^ ((y ^ (P - y)) & neg), (out >> 512) & _M256, y2 ^ ((y2 ^ (P - y2)) & neg))


def _jadd(pt, x2: int, y2: int):
    """Jacobian ``pt`` + affine ``(x2, y2)`` with none of _add_affine's checks: only for sums
    that cannot meet its special cases (pt = O or ±(x2, y2)): the comb's rows 1..62."""
    x1, y1, z1 = pt
    z1z1 = z1 * z1 % P
    h = (x2 * z1z1 - x1) % P
    r = (y2 * z1 * z1z1 - y1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return (x3, (r * (v - x3) - y1 * hhh) % P, z1 * h % P)


# The comb (_mul_base_ct, _mul_pair_ct) adds rows 1..62 with the cheaper incomplete _jadd. Why
# that is safe: after rows 0..i-1 the sum is S·Q with S = Σ d_j·16^j odd and |S| < 16^i; the
# addend is d_i·16^i·Q with |d_i·16^i| ≥ 16^i, and |S ± d_i·16^i| < 16^(i+1) ≤ 16^63 < n, so
# S ≢ 0, ±d_i·16^i (mod n). Row 63 and the top digit can meet those cases (for a few scalars,
# in the tests), so _comb_finish adds them with the complete formulas.

def _comb_finish(acc, last: tuple[int, int], top: tuple[int, int]):
    x, y, z = acc
    acc = (x * z % P, y, z * z % P * z % P)          # Jacobian → projective (X/Z, Y/Z)
    return _padd(_padd(acc, *last), *top)


def _mul_base_ct(fb: _FixedBase, k: int):
    """k·Q for a SECRET 1 ≤ k < n and a fixed Q: 64 row scans, 62 + 2 additions."""
    digits = _recode(k)
    rows = fb.odd_rows
    acc = (*_select(rows[0], digits[0]), 1)
    for i in range(1, 63):
        acc = _jadd(acc, *_select(rows[i], digits[i]))
    return _comb_finish(acc, _select(rows[63], digits[63]), fb.top)


@lru_cache(maxsize=4)
def _pair_rows(x: int, y: int) -> tuple[tuple, ...]:
    """G's and Q's odd rows side by side, one int per entry: encryption multiplies both by the
    same nonce, so one masked scan per digit serves the two additions."""
    q = _fixed_base(x, y)
    return tuple(tuple(g | e << 512 for g, e in zip(gr, qr)) for gr, qr in zip(_G.odd_rows, q.odd_rows))


def _mul_pair_ct(k: int, x: int, y: int):
    """(k·G, k·Q) for a SECRET 1 ≤ k < n and a fixed Q (encryption's C1 and shared point):
    one scan of each pair row serves both sums."""
    digits = _recode(k)
    rows = _pair_rows(x, y)
    xg, yg, xq, yq = _select(rows[0], digits[0], 2)
    acc_g, acc_q = (xg, yg, 1), (xq, yq, 1)
    for i in range(1, 63):
        xg, yg, xq, yq = _select(rows[i], digits[i], 2)
        acc_g = _jadd(acc_g, xg, yg)
        acc_q = _jadd(acc_q, xq, yq)
    xg, yg, xq, yq = _select(rows[63], digits[63], 2)
    return (_comb_finish(acc_g, (xg, yg), _G.top), _comb_finish(acc_q, (xq, yq), _fixed_base(x, y).top))


def _mul_ct(k: int, x: int, y: int):
    """k·(x, y) for a SECRET 1 ≤ k < n and a point seen once (decryption's C1): 256 complete
    doublings, 64 row scans and 64 complete additions (rare, so no case analysis to save time)."""
    q = (x, y, 1)
    q2 = _double(q)
    odd = [q]                          # Q, 3Q, ..., 15Q: the point is public, no secret here
    for _ in range(7):
        odd.append(_add(odd[-1], q2))
    row = tuple(ax | ay << 256 for ax, ay in _batch_affine(odd))
    acc = q                            # the top digit is always 1
    for d in reversed(_recode(k)):
        acc = _pdouble(_pdouble(_pdouble(_pdouble(acc))))
        acc = _padd(acc, *_select(row, d))
    return acc


def _to_affine_ct(pt) -> tuple[int, int]:
    """Affine form of a projective point from a secret scalar (never O: 1 ≤ k < n).

    Z depends on the scalar and Euclid's steps follow their input, so Euclid inverts Z·r for a
    fresh random r instead (a uniformly random value); Fermat's pow(z, P - 2) costs ~7× more.
    """
    x, y, z = pt
    r = secrets.randbelow(P - 1) + 1
    zi = pow(z * r % P, -1, P) * r % P
    return (x * zi % P, y * zi % P)


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

    __slots__ = ("x", "y", "_z", "_table")

    def __init__(self, x: int, y: int):
        if not on_curve(x, y):
            raise SM2Error("public key is not a point on the SM2 curve")
        self.x, self.y = x, y
        self._z: dict[bytes, bytes] = {}
        self._table: _FixedBase | None = None

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
        """Build this key's multiplication table now, not on the first presentation (~10 ms),
        and keep it with this object: the shared cache holds 64 keys, and a hub verifying a
        fleet's batches with hundreds of device keys would rebuild a table for nearly every
        batch (~80 ms instead of ~6; benchmarks/bench_fleet.py). ~0.2 MB a key."""
        self._table = _fixed_base(self.x, self.y)

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
        pt = _to_affine(_add(_G.mul(s), (self._table or _fixed_base(self.x, self.y)).mul(t)))
        if pt is None:
            return False
        return (e + pt[0]) % N == r

    def encrypt(self, message: bytes) -> bytes:
        """SM2 encryption (GB/T 32918.4) to this key: ``C1(04‖x1‖y1) ‖ C3 ‖ C2``."""
        if not message:
            raise SM2Error("nothing to encrypt")
        while True:
            k = secrets.randbelow(N - 1) + 1
            c1_pt, shared = _mul_pair_ct(k, self.x, self.y)   # k is secret too: the regular ladder
            c1 = _to_affine_ct(c1_pt)
            x2, y2 = _to_affine_ct(shared)
            t = _kdf(_i2b(x2) + _i2b(y2), len(message))
            if any(t):
                break
        c2 = bytes(a ^ b for a, b in zip(message, t))
        c3 = sm3(_i2b(x2) + message + _i2b(y2))
        return b"\x04" + _i2b(c1[0]) + _i2b(c1[1]) + c3 + c2


class PrivateKey:
    """An SM2 private key; every multiplication by d or by a nonce runs the regular ladder."""

    __slots__ = ("d", "public_key", "_inv1d")

    def __init__(self, d: int):
        if not 1 <= d < N - 1:
            raise SM2Error("private key out of range")
        self.d = d
        self.public_key = PublicKey(*_to_affine_ct(_mul_base_ct(_G, d)))
        self._inv1d = pow(1 + d, N - 2, N)   # (1 + d)^-1 by Fermat: no Euclid steps that follow d

    @classmethod
    def generate(cls) -> "PrivateKey":
        return cls(secrets.randbelow(N - 2) + 1)

    def sign(self, message: bytes, ident: bytes = DEFAULT_ID) -> bytes:
        e = self.public_key.digest(message, ident)
        d = self.d
        while True:
            k = secrets.randbelow(N - 1) + 1
            x1, _ = _to_affine_ct(_mul_base_ct(_G, k))
            r = (e + x1) % N
            if r == 0 or r + k == N:
                continue
            s = self._inv1d * (k - r * d) % N
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
        x2, y2 = _to_affine_ct(_mul_ct(self.d, x1, y1))   # C1 on a prime-order curve: never O
        t = _kdf(_i2b(x2) + _i2b(y2), len(c2))
        if not any(t):
            raise SM2Error("degenerate key stream")
        m = bytes(a ^ b for a, b in zip(c2, t))
        if not secrets.compare_digest(sm3(_i2b(x2) + m + _i2b(y2)), c3):
            raise SM2Error("ciphertext check (C3) failed")
        return m
