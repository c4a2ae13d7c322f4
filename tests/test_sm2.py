"""SM2/SM3/SM4: our curve arithmetic against gmssl and the OpenSSL command line, both ways."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from Cryptodome.Util.asn1 import DerSequence
from gmssl import sm2 as gmssl_sm2
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto.gmcrypto import PaddingError, sm3, sm3_gmssl, sm4_cbc_decrypt, sm4_cbc_encrypt
from terminal.crypto import sm2
from terminal.crypto.keyfiles import load_private_key, private_key_pem
from terminal.crypto.sm2 import GX, GY, N, P, PrivateKey, PublicKey, SM2Error

from conftest import VECTORS

KEY = PrivateKey.generate()
OPENSSL = shutil.which("openssl")


def gmssl_for(key: PrivateKey, mode: int = 1) -> gmssl_sm2.CryptSM2:
    # gmssl strips a "04" prefix with str.lstrip (eats leading 0/4 digits of X): set the
    # attribute directly instead of passing it to the constructor.
    g = gmssl_sm2.CryptSM2(private_key=f"{key.d:064x}", public_key="", mode=mode)
    g.public_key = key.public_key.hex()[2:]
    return g


def test_sm3_standard_vector():
    # GB/T 32905 example 1
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3_gmssl(b"abc") == sm3(b"abc")


@settings(max_examples=50)
@given(st.binary(max_size=1000))
def test_sm3_backends_agree(data):
    assert sm3(data) == sm3_gmssl(data)


def test_sm4_standard_vector_and_padding():
    # GB/T 32907 example: one block, key = plaintext = 0123456789abcdeffedcba9876543210
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    ct = sm4_cbc_encrypt(key, bytes(16), key)
    assert ct[:16].hex() == "681edf34d206965e86b3e94f536e4246"
    assert sm4_cbc_decrypt(key, bytes(16), ct) == key
    bad = bytearray(ct)
    bad[-1] ^= 0x55  # the padding block decrypts to garbage
    with pytest.raises(PaddingError):
        sm4_cbc_decrypt(key, bytes(16), bytes(bad))
    with pytest.raises(PaddingError):
        sm4_cbc_decrypt(key, bytes(16), ct[:-1])


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300))
def test_sign_verify_cross_gmssl(message):
    sig = KEY.sign(message)
    assert KEY.public_key.verify(message, sig)
    g = gmssl_for(KEY)
    assert g.verify_with_sm3(sig.hex(), message)
    theirs = bytes.fromhex(g.sign_with_sm3(message, f"{PrivateKey.generate().d:064x}"))
    assert KEY.public_key.verify(message, theirs)
    assert not KEY.public_key.verify(message + b"x", sig)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_encrypt_decrypt_cross_gmssl(message):
    ct = KEY.public_key.encrypt(message)
    assert ct[0] == 4 and len(ct) == 65 + 32 + len(message)
    assert KEY.decrypt(ct) == message
    g = gmssl_for(KEY)
    assert g.decrypt(ct[1:]) == message            # gmssl writes C1 without the 04 byte
    # GB/T 32918.4 A5: a KDF output t of all zeros means "pick another k"; gmssl returns None
    # instead (about 1 in 256 for a 1-byte message), so its caller retries, as ours does inside.
    theirs = next(c for c in (g.encrypt(message) for _ in range(64)) if c is not None)
    assert KEY.decrypt(b"\x04" + theirs) == message


def test_decrypt_checks_c3_and_c1():
    ct = bytearray(KEY.public_key.encrypt(b"secret"))
    ct[-1] ^= 1
    with pytest.raises(SM2Error, match="C3"):
        KEY.decrypt(bytes(ct))
    ct = bytearray(KEY.public_key.encrypt(b"secret"))
    ct[5] ^= 1
    with pytest.raises(SM2Error, match="curve"):
        KEY.decrypt(bytes(ct))
    with pytest.raises(SM2Error):
        KEY.decrypt(b"\x04" + bytes(10))


def test_signature_range_checks():
    msg = b"m"
    sig = KEY.sign(msg)
    s = int.from_bytes(sig[32:], "big")
    assert KEY.public_key.verify(msg, sig)
    if s + N < 2 ** 256:  # the same s modulo n must not verify twice (malleability)
        assert not KEY.public_key.verify(msg, sig[:32] + (s + N).to_bytes(32, "big"))
    assert not KEY.public_key.verify(msg, bytes(32) + sig[32:])
    assert not KEY.public_key.verify(msg, sig[:32] + bytes(32))
    assert not KEY.public_key.verify(msg, sig[:63])


def test_public_key_must_be_on_curve():
    raw = bytearray(KEY.public_key.to_bytes())
    raw[-1] ^= 1
    with pytest.raises(SM2Error):
        PublicKey.from_bytes(bytes(raw))
    with pytest.raises(SM2Error):
        PublicKey.from_hex("04" + "00" * 64)
    with pytest.raises(SM2Error):
        PublicKey.from_hex("zz" * 65)


def test_vector_keys_and_kids():
    root = PublicKey.from_hex((VECTORS / "root.pub.hex").read_text())
    assert root.kid() == "5f79938f"  # the signer named in trust.envelope.json


def _openssl(*args, data: bytes | None = None) -> bytes:
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, check=True).stdout


def test_openssl_verifies_ours_and_we_verify_openssl(tmp_path):
    """Independent implementation both ways: OpenSSL `pkeyutl` with distid, DER ↔ r‖s."""
    assert OPENSSL, "openssl is installed by scripts/setup"
    key_path = tmp_path / "k.pem"
    key_path.write_text(private_key_pem(KEY))
    key_path.chmod(0o600)
    assert load_private_key(key_path).d == KEY.d
    msg = tmp_path / "m.bin"
    msg.write_bytes(b"SDHC1 interop \x00\xff" * 7)
    common = ["-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]

    der = _openssl("pkeyutl", "-sign", *common, "-inkey", str(key_path), "-in", str(msg))
    seq = DerSequence().decode(der)
    sig = seq[0].to_bytes(32, "big") + seq[1].to_bytes(32, "big")
    assert KEY.public_key.verify(msg.read_bytes(), sig)

    ours = KEY.sign(msg.read_bytes())
    sig_path = tmp_path / "s.der"
    sig_path.write_bytes(DerSequence([int.from_bytes(ours[:32], "big"), int.from_bytes(ours[32:], "big")]).encode())
    pub = tmp_path / "pub.pem"
    pub.write_bytes(_openssl("pkey", "-in", str(key_path), "-pubout"))
    out = _openssl("pkeyutl", "-verify", *common, "-pubin", "-inkey", str(pub), "-in", str(msg),
                   "-sigfile", str(sig_path))
    assert b"Verified Successfully" in out


def test_openssl_sm4_matches():
    key, iv = bytes(range(16)), bytes(range(16, 32))
    plain = "张三 health body".encode()
    theirs = _openssl("enc", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), data=plain)
    assert sm4_cbc_encrypt(key, iv, plain) == theirs
    assert sm4_cbc_decrypt(key, iv, theirs) == plain


# --- the regular ladder for secret scalars (issue #12, finding 22) ---------------------

def _affine_add(p1, p2):
    """Textbook affine addition with None as the point at infinity: the oracle below shares
    no formula, table or recoding with terminal.crypto.sm2."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + sm2.A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def _oracle_mul(k, pt):
    acc = None
    for bit in bin(k)[2:]:
        acc = _affine_add(acc, acc)
        if bit == "1":
            acc = _affine_add(acc, pt)
    return acc


EDGE_SCALARS = [
    1, 2, 3, 15, 16, 17, 31, 32, 33, N - 1, N - 2, N - 3, N - 15, N - 16, N - 17,
    N // 2, N // 2 + 1,
    0xF,                                   # all-zero high nibbles
    (1 << 128) - 1,                        # high half zero
    ((1 << 128) - 1) << 124,               # low 31 nibbles zero
    1 << 252, 15 << 252,                   # one non-zero nibble, at the top
    (1 << 252) - 1, (1 << 255) - 1,        # all ones (the largest all-ones scalars below n)
    int("0F" * 32, 16), int("F0" * 32, 16), int("1" * 64, 16),
    int("8" + "0" * 63, 16) | 1,
    # the comb's last two additions (complete formulas) meet their special cases: row 63 sums
    # to O, row 63 doubles, the top digit doubles
    2 ** 256 - N, 46 * 16 ** 63 - 2 * N, 2 ** 257 % N,
]
assert all(1 <= k < N for k in EDGE_SCALARS)    # the ladder's domain: a nonce or a private key
OTHER = PrivateKey(0x1D3F7A6C2B9E45).public_key    # a second fixed/variable base


@pytest.mark.parametrize("k", EDGE_SCALARS, ids=hex)
def test_ladder_matches_oracle_on_edge_scalars(k):
    g = (GX, GY)
    q = (OTHER.x, OTHER.y)
    want_g, want_q = _oracle_mul(k, g), _oracle_mul(k, q)
    assert sm2._to_affine_ct(sm2._mul_base_ct(sm2._G, k)) == want_g
    assert sm2._to_affine_ct(sm2._mul_base_ct(sm2._fixed_base(*q), k)) == want_q
    assert sm2._to_affine_ct(sm2._mul_ct(k, *g)) == want_g
    assert sm2._to_affine_ct(sm2._mul_ct(k, *q)) == want_q
    assert tuple(map(sm2._to_affine_ct, sm2._mul_pair_ct(k, *q))) == (want_g, want_q)
    # and the public-scalar fast path agrees with both
    assert sm2._to_affine(sm2._G.mul(k)) == want_g


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=N - 1))
def test_ladder_matches_oracle_on_random_scalars(k):
    assert sm2._to_affine_ct(sm2._mul_base_ct(sm2._G, k)) == _oracle_mul(k, (GX, GY))
    assert sm2._to_affine_ct(sm2._mul_ct(k, OTHER.x, OTHER.y)) == _oracle_mul(k, (OTHER.x, OTHER.y))


@pytest.mark.parametrize("k", EDGE_SCALARS, ids=hex)
def test_recoding_has_no_zero_digit_and_sums_to_k(k):
    digits = sm2._recode(k)
    assert len(digits) == 64
    assert all(d % 2 == 1 and -15 <= d <= 15 for d in digits)
    assert (16 ** 64 + sum(d * 16 ** i for i, d in enumerate(digits))) % N == k


def test_select_gives_every_signed_odd_multiple():
    row = sm2._G.odd_rows[0]
    pair_row = sm2._pair_rows(OTHER.x, OTHER.y)[0]
    for d in range(-15, 16, 2):
        want = _oracle_mul(d % N, (GX, GY))
        assert sm2._select(row, d) == want
        assert sm2._select(pair_row, d, 2) == want + _oracle_mul(d % N, (OTHER.x, OTHER.y))


SCALAR_CLASSES = [1, 2, N - 1, N - 2, 0xF, int("F" * 63, 16), int("0F" * 32, 16),
                  int("1" * 64, 16), 0x8D3A7E19C05B4F26]


def test_ladder_runs_the_same_operations_for_every_scalar(mocker):
    """Counted through the module's own functions: the same number of additions, doublings
    and row scans, over the same rows in the same order, whatever the scalar."""
    calls = mocker.Mock()  # one parent keeps the spies' calls in the order they happened
    for name in ("_padd", "_pdouble", "_select", "_jadd"):
        calls.attach_mock(mocker.spy(sm2, name), name)

    def traced(mul, *args) -> list:
        start = len(calls.mock_calls)
        mul(*args)
        return [(name, id(a[0])) if name == "_select" else name for name, a, _ in calls.mock_calls[start:]]

    traces = {}
    for k in SCALAR_CLASSES:
        base = traced(sm2._mul_base_ct, sm2._G, k)
        pair = traced(sm2._mul_pair_ct, k, OTHER.x, OTHER.y)
        var = traced(sm2._mul_ct, k, OTHER.x, OTHER.y)
        traces[k] = (base, pair, [e if isinstance(e, str) else e[0] for e in var])
    first_base, first_pair, first_var = traces[SCALAR_CLASSES[0]]
    assert (first_base.count("_jadd"), first_base.count("_padd"), len(first_base)) == (62, 2, 128)
    assert (first_pair.count("_jadd"), first_pair.count("_padd"), len(first_pair)) == (124, 4, 192)
    assert first_var.count("_pdouble") == 256 and first_var.count("_padd") == 64
    for k, trace in traces.items():
        assert trace == (first_base, first_pair, first_var), hex(k)


def test_secret_scalars_never_reach_the_variable_time_path(mocker):
    """Key loading, signing, encryption and decryption must not call _FixedBase.mul (it skips
    zero digits); verification, with public scalars, still does."""
    hub = PrivateKey.generate()
    hub.public_key.precompute()
    mul = mocker.patch.object(sm2._FixedBase, "mul", autospec=True,
                              side_effect=AssertionError("variable-time multiplication used"))
    key = PrivateKey(KEY.d)
    sig = key.sign(b"batch")
    ct = hub.public_key.encrypt(b"data key")
    assert hub.decrypt(ct) == b"data key"
    mul.assert_not_called()  # not even a call whose AssertionError something swallowed
    with pytest.raises(AssertionError, match="variable-time"):
        key.public_key.verify(b"batch", sig)
    mocker.stop(mul)
    assert key.public_key == KEY.public_key
    assert key.public_key.verify(b"batch", sig)


def test_a_precomputed_key_keeps_its_table_past_the_shared_cache(mocker):
    """A hub verifying hundreds of device keys: each precomputed key verifies with its own
    table, never rebuilding one when more keys than the cache holds are in use."""
    keys = [PrivateKey.generate() for _ in range(2)]
    for k in keys:
        k.public_key.precompute()
    sm2._fixed_base.cache_clear()  # as if 64 other keys had pushed them out
    build = mocker.spy(sm2._FixedBase, "__init__")
    for k in keys:
        assert k.public_key.verify(b"batch", k.sign(b"batch"))
        assert not k.public_key.verify(b"batch!", k.sign(b"batch"))
    build.assert_not_called()
    fresh = PublicKey.from_bytes(keys[0].public_key.to_bytes())  # not precomputed: the shared cache
    assert fresh.verify(b"batch", keys[0].sign(b"batch"))
    assert build.call_count == 1
