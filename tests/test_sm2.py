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
from terminal.crypto.keyfiles import load_private_key, private_key_pem
from terminal.crypto.sm2 import N, PrivateKey, PublicKey, SM2Error

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
    assert KEY.decrypt(b"\x04" + g.encrypt(message)) == message


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
