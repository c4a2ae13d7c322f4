"""Key files: SM2 private keys as PEM (PKCS#8 as ``openssl genpkey`` writes them, or SEC1),
the local data-key file, and the 0600 rule for anything secret.

A key file that others can read is refused rather than used: a terminal that silently
accepted a world-readable key would teach installers that it does not matter.
"""
from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

from Cryptodome.Util.asn1 import DerBitString, DerObjectId, DerOctetString, DerSequence

from terminal.crypto.sm2 import PrivateKey, SM2Error
from terminal.ops.sdnotify import is_credential
from terminal.ops.smallfile import read_small, write_atomic

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"
MAX_BYTES = 1 << 16  # a PEM key is under 1 KiB, the data keys (256 at most) about 12 KiB


class KeyFileError(ValueError):
    """A key file that is missing, unreadable, too open or malformed; the message names it."""


def check_private_mode(path: Path) -> None:
    if is_credential(path):
        return  # systemd's private credentials directory: readable through an ACL (mode 0440)
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: key file is readable by others (mode {stat.S_IMODE(mode):04o}); "
                           f"run: chmod 600 {path}")


def _read_secret(path: Path) -> bytes:
    check_private_mode(path)
    try:
        return read_small(path, MAX_BYTES)
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror}") from None


def _pem_body(text: str, path: Path) -> tuple[str, bytes]:
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", text, re.S)
    if not m:
        raise KeyFileError(f"{path}: not a PEM file")
    try:
        return m.group(1), base64.b64decode("".join(m.group(2).split()), validate=True)
    except ValueError:
        raise KeyFileError(f"{path}: PEM body is not valid base64") from None


def _sec1_scalar(der: bytes) -> int:
    # ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] params, [1] publicKey }
    seq = DerSequence().decode(der, strict=True)
    if seq[0] != 1:
        raise ValueError("not an EC private key")
    return int.from_bytes(DerOctetString().decode(seq[1]).payload, "big")


def parse_private_pem(text: str, path: Path = Path("<key>")) -> PrivateKey:
    kind, der = _pem_body(text, path)
    try:
        if kind == "PRIVATE KEY":
            # PrivateKeyInfo ::= SEQUENCE { 0, AlgorithmIdentifier { ecPublicKey, sm2 }, OCTET STRING ECPrivateKey }
            seq = DerSequence().decode(der, strict=True)
            alg = DerSequence().decode(seq[1])
            if (DerObjectId().decode(alg[0]).value != OID_EC_PUBLIC_KEY
                    or DerObjectId().decode(alg[1]).value != OID_SM2):
                raise KeyFileError(f"{path}: not an SM2 key")
            d = _sec1_scalar(DerOctetString().decode(seq[2]).payload)
        elif kind == "EC PRIVATE KEY":
            d = _sec1_scalar(der)
        else:
            raise KeyFileError(f"{path}: expected an SM2 PRIVATE KEY, found {kind}")
        return PrivateKey(d)
    except (ValueError, IndexError, TypeError, EOFError, SM2Error) as e:
        if isinstance(e, KeyFileError):
            raise
        raise KeyFileError(f"{path}: malformed SM2 private key") from None


def load_private_key(path: Path) -> PrivateKey:
    return parse_private_pem(_read_secret(path).decode("ascii", "replace"), path)


def private_key_pem(key: PrivateKey) -> str:
    pub = DerBitString(key.public_key.to_bytes()).encode()
    ec = DerSequence([1, DerOctetString(key.d.to_bytes(32, "big")).encode(),
                      b"\xa1" + bytes([len(pub)]) + pub]).encode()
    info = DerSequence([0, DerSequence([DerObjectId(OID_EC_PUBLIC_KEY).encode(),
                                        DerObjectId(OID_SM2).encode()]).encode(),
                        DerOctetString(ec).encode()]).encode()
    b64 = base64.b64encode(info).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


def write_secret(path: Path, data: str | bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable), on disk."""
    write_atomic(path, data.encode() if isinstance(data, str) else data, mode=0o600, durable=True)


def load_data_keys(path: Path) -> dict[int, bytes]:
    """The local data-key file ``{"data_keys": {"1": "<32 hex>"}}`` (docs/protocol/token.md §5), mode 0600."""
    raw = _read_secret(path)
    try:
        doc = json.loads(raw)
        entries = doc["data_keys"]
        if not isinstance(entries, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply
        raise KeyFileError(f"{path}: expected {{\"data_keys\": {{\"<dkid>\": \"<32 hex>\"}}}}") from None
    keys: dict[int, bytes] = {}
    for dkid, hexkey in entries.items():
        try:
            n = int(dkid)
            key = bytes.fromhex(hexkey)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path}: data key {dkid!r} is not <dkid 0-255>: <32 hex>") from None
        if not 0 <= n <= 255 or len(key) != 16:
            raise KeyFileError(f"{path}: data key {dkid!r} must have a dkid 0-255 and 16 bytes (32 hex)")
        keys[n] = key
    return keys
