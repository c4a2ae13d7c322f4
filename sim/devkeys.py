"""A complete development key set, as the provincial platform and provisioning would make it.

Test keys only: the root signs a trust list naming the issuer; the issuer signs tokens; the
SM4 data key encrypts token bodies; the hub key receives event subjects; the device key is
the terminal's own. ``config.toml`` beside them is ready for ``verify`` and ``sim issue``.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from terminal.crypto.keyfiles import private_key_pem, write_secret
from terminal.crypto.sm2 import PrivateKey
from terminal.core.policy import VENUES
from terminal.core.trust import Issuer
from terminal.hub import wire

KEY_NAMES = ("root", "issuer", "hub", "device")
DEFAULT_DKID = 1


def make_trust_list(issuer: PrivateKey, root: PrivateKey, *, seq: int, now: int,
                    status: str = "active") -> bytes:
    return wire.trust_list(seq, now, [Issuer(issuer.public_key.kid(), issuer.public_key, now - 365 * 86400,
                                             now + 5 * 365 * 86400, status)], root)


def write_key_set(outdir: Path, *, terminal_id: str = "370102-H0001-01", venue: str = "mall",
                  force: bool = False) -> dict[str, PrivateKey]:
    if venue not in VENUES:  # else check-config would reject the config.toml written here
        raise ValueError(f"venue {venue!r}: not a venue type (one of {', '.join(VENUES)})")
    outdir.mkdir(parents=True, exist_ok=True)
    if not force and any((outdir / f"{n}.pem").exists() for n in KEY_NAMES):
        raise FileExistsError(f"{outdir} already holds a key set; pass --force to replace it")
    keys = {name: PrivateKey.generate() for name in KEY_NAMES}
    for name, key in keys.items():
        write_secret(outdir / f"{name}.pem", private_key_pem(key))
        (outdir / f"{name}.pub.hex").write_text(key.public_key.hex() + "\n")
    write_secret(outdir / "data_keys.json",
                 json.dumps({"data_keys": {str(DEFAULT_DKID): secrets.token_hex(16)}}) + "\n")
    (outdir / "trust.envelope.json").write_bytes(
        make_trust_list(keys["issuer"], keys["root"], seq=1, now=int(time.time())))
    (outdir / "config.toml").write_text(f"""\
# Development terminal made by `gate-terminal sim keys` (test keys only).
# Every key is explained in config.example.toml.
[terminal]
id = "{terminal_id}"
venue = "{venue}"
state_dir = "state"
device_key = "device.pem"

[trust]
root_keys = ["{keys['root'].public_key.hex()}"]
trust_list = "trust.envelope.json"
data_keys = "data_keys.json"

[hub]
public_key = "{keys['hub'].public_key.hex()}"
""")
    return keys
