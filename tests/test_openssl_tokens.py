"""Tokens minted with the OpenSSL command line alone (SM3 IV, SM4-CBC body, SM2 signature
with distid), like the contract vectors but fresh: the terminal must judge them right."""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess

import base45
import pytest
from Cryptodome.Util.asn1 import DerSequence

from terminal.config import load
from drivers.idnumber import check_character
from terminal.verifier import Verifier

from conftest import VECTORS

NOW = 1_790_000_000


def openssl(*args, data: bytes | None = None) -> bytes:
    exe = shutil.which("openssl")
    assert exe, "openssl is installed by scripts/setup"
    return subprocess.run([exe, *args], input=data, capture_output=True, check=True).stdout


def mint(tmp_path, key_pem, *, status=0, flags=0, nat_hours_ago=10, iat=NOW, ttl=60, dkid=1,
         name="王小明", kid=None) -> str:
    data_key = json.loads((VECTORS / "data_keys.json").read_text())["data_keys"]["1"]
    first17 = "37010220010203456"
    body = (bytes([status, flags]) + (iat - nat_hours_ago * 3600).to_bytes(4, "big") + bytes([1, 3])
            + (first17 + check_character(first17)).encode() + bytes([len(name.encode())]) + name.encode())
    nonce = secrets.token_bytes(8)
    iv = openssl("dgst", "-sm3", "-binary", data=nonce + iat.to_bytes(4, "big"))[:16]
    ct = openssl("enc", "-sm4-cbc", "-K", data_key, "-iv", iv.hex(), data=body)
    pub_der = openssl("pkey", "-in", str(key_pem), "-pubout", "-outform", "DER")
    if kid is None:
        kid = openssl("dgst", "-sm3", "-binary", data=pub_der[-65:])[:4]
    signed = (b"\x01\x01" + kid + iat.to_bytes(4, "big") + ttl.to_bytes(2, "big") + nonce + bytes([dkid])
              + len(ct).to_bytes(2, "big") + ct)
    msg = tmp_path / "signed.bin"
    msg.write_bytes(signed)
    der = openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
                  "-inkey", str(key_pem), "-in", str(msg))
    r, s = DerSequence().decode(der)
    return "SDHC1:" + base45.b45encode(signed + r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()


@pytest.fixture
def verifier(vector_config, tmp_path):
    v = Verifier.open(load(vector_config), tmp_path / "state")
    yield v
    v.close()


@pytest.mark.parametrize("kw, venue, expected", [
    ({}, "mall", ("allow", "ok")),
    ({"status": 1}, "hospital", ("review", "yellow_code")),
    ({"flags": 1}, "bus", ("deny", "star_code")),
    ({"nat_hours_ago": 50}, "school", ("deny", "nat_expired")),
    ({"iat": NOW - 61}, "mall", ("deny", "expired")),
    ({"iat": NOW + 31}, "mall", ("deny", "not_yet_valid")),
    ({"dkid": 7}, "mall", ("deny", "unknown_data_key")),
])
def test_openssl_minted(verifier, vector_config, tmp_path, kw, venue, expected):
    key = vector_config.parent / "issuer.pem"
    r = verifier.verify(mint(tmp_path, key, **kw), now=NOW, venue=venue)
    assert (r.decision, r.reason) == expected


def test_openssl_minted_by_other_keys(verifier, vector_config, tmp_path):
    keys = vector_config.parent
    assert verifier.verify(mint(tmp_path, keys / "stranger.pem"), now=NOW).reason == "unknown_issuer"
    assert verifier.verify(mint(tmp_path, keys / "revoked_issuer.pem"), now=NOW).reason == "issuer_revoked"
    # a stranger signing under the real issuer's kid: the signature gives it away
    issuer_kid = bytes.fromhex("dbd19bd9")
    assert verifier.verify(mint(tmp_path, keys / "stranger.pem", kid=issuer_kid), now=NOW).reason == \
        "bad_signature"
