"""Client certificates for a fleet of simulated terminals, hundreds a second.

:class:`sim.broker.CertAuthority` runs the openssl command line twice per certificate (~20-40 ms
of process start-up each on a loaded machine): fine for a test's handful, minutes for a fleet.
Here one process signs them all with the same CA key, EC P-256 keys and ECDSA-SHA256 from
pycryptodomex (already a dependency; the ``cryptography`` package is not), the DER built with
its ASN.1 helpers. The certificates say what CertAuthority's client certificates say (CN = the
terminal id, CA:FALSE, digitalSignature + keyAgreement, clientAuth), so Mosquitto takes the CN
as the username and the ACL applies as for any terminal.
"""
from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

from Cryptodome.Hash import SHA256
from Cryptodome.IO import PEM
from Cryptodome.PublicKey import ECC
from Cryptodome.Signature import DSS
from Cryptodome.Util.asn1 import (DerBitString, DerBoolean, DerInteger, DerObjectId, DerOctetString,
                                  DerSequence, DerSetOf)

ECDSA_SHA256 = DerSequence([DerObjectId("1.2.840.10045.4.3.2")]).encode()
CN_OID = "2.5.4.3"
DAYS = 825


def _name(cn: str) -> bytes:
    return DerSequence([DerSetOf([DerSequence([DerObjectId(CN_OID), _tlv(0x0C, cn.encode())])])]).encode()


def _time(t: datetime.datetime) -> bytes:
    """UTCTime (RFC 5280: for years before 2050)."""
    return b"\x17\x0d" + t.strftime("%y%m%d%H%M%SZ").encode()


def _extension(oid: str, critical: bool, value: bytes) -> DerSequence:
    parts = [DerObjectId(oid)]
    if critical:
        parts.append(DerBoolean(True))
    parts.append(DerOctetString(value))
    return DerSequence(parts)


def _tlv(tag: int, body: bytes) -> bytes:
    """One DER element: ``tag``, the definite length of ``body``, ``body``."""
    n = len(body)
    if n < 128:
        return bytes([tag, n]) + body
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + body


# CA:FALSE; digitalSignature (bit 0) + keyAgreement (bit 4); clientAuth. In [3] EXPLICIT.
EXTENSIONS = _tlv(0xA3, DerSequence([
    _extension("2.5.29.19", True, DerSequence([]).encode()),
    _extension("2.5.29.15", True, bytes([0x03, 0x02, 0x03, 0x88])),  # BIT STRING, 3 unused bits
    _extension("2.5.29.37", False, DerSequence([DerObjectId("1.3.6.1.5.5.7.3.2")]).encode()),
]).encode())
VERSION_3 = _tlv(0xA0, DerInteger(2).encode())


def _der_uint(raw: bytes) -> bytes:
    """A non-negative INTEGER from big-endian bytes (Cryptodome's DER encoder is ~10 ms a signature)."""
    v = raw.lstrip(b"\0") or b"\0"
    return _tlv(0x02, b"\0" + v if v[0] & 0x80 else v)


def _subject_of(cert_der: bytes) -> bytes:
    """The DER of a certificate's subject Name (the issuer Name of what it signs, byte for byte)."""
    tbs = DerSequence().decode(DerSequence().decode(cert_der)[0])
    # version [0], serial, signature, issuer, validity, subject
    return tbs[5]


class FleetCA:
    """Issues client certificates under an existing CA (``ca.crt`` + ``ca.key``, PEM, EC P-256)."""

    def __init__(self, ca_cert: Path, ca_key: Path) -> None:
        der, _, _ = PEM.decode(Path(ca_cert).read_text())
        self._issuer = _subject_of(der)
        self._signer = DSS.new(ECC.import_key(Path(ca_key).read_text()), "fips-186-3")  # r‖s, DER below

    def certificate(self, cn: str, public_key: ECC.EccKey) -> bytes:
        """A DER client certificate for ``cn`` and ``public_key``."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        validity = _tlv(0x30, _time(now - datetime.timedelta(minutes=5)) + _time(now + datetime.timedelta(days=DAYS)))
        tbs = DerSequence([
            VERSION_3,
            DerInteger(int.from_bytes(secrets.token_bytes(16), "big") >> 1),
            ECDSA_SHA256, self._issuer, validity, _name(cn),
            public_key.export_key(format="DER"),
            EXTENSIONS,
        ]).encode()
        rs = self._signer.sign(SHA256.new(tbs))
        sig = _tlv(0x30, _der_uint(rs[:32]) + _der_uint(rs[32:]))
        return DerSequence([tbs, ECDSA_SHA256, DerBitString(sig)]).encode()

    def issue(self, cn: str, directory: Path) -> tuple[Path, Path]:
        """Write ``directory/client.crt`` and ``client.key`` (0600) for ``cn``; their paths."""
        key = ECC.generate(curve="P-256")
        der = self.certificate(cn, key.public_key())
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "client.crt", directory / "client.key"
        cert_path.write_text(_pem("CERTIFICATE", der))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.export_key(format="PEM"))
        return cert_path, key_path


def _pem(label: str, der: bytes) -> str:
    return PEM.encode(der, label) + "\n"
