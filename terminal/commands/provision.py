"""``gate-terminal provision``: this terminal's own keys, made once, on the terminal.

    device.pem       SM2 device key (PKCS#8 PEM, 0600): signs event batches, unwraps data keys
    device.pub.hex   its public key, 130 hex — the hub registers it
    client.key       TLS client key (ECDSA P-256, 0600) for mqtts:// to the hub
    client.csr       certificate request, CN = terminal id — the hub's CA signs it → client.pem

The TLS key and CSR come from the ``openssl`` command line (scripts/setup installs it): the
broker's TLS is ordinary X.509 that Python's ssl module speaks, the command is what CA
operators use to read the CSR back, and it keeps a second crypto library (``cryptography``)
out of the terminal. A key that exists is never replaced: provisioning twice would orphan the
terminal's registration at the hub. Everything is made in a scratch directory and moved into
place only when all of it succeeded.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from terminal import config as cfgmod
from terminal.commands.usage import UsageError

DEVICE_KEY, DEVICE_PUB, TLS_KEY, TLS_CSR = "device.pem", "device.pub.hex", "client.key", "client.csr"
SECRETS = (DEVICE_KEY, TLS_KEY)


def register(sub) -> None:
    p = sub.add_parser("provision", help="make this terminal's device key, TLS key and certificate request",
                       description="Create the SM2 device key and a TLS client key with a CSR (CN = terminal "
                                   "id) and print what the hub needs to register the terminal. Never "
                                   "overwrites a key.")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", type=Path, help="where the keys go (default: the config file's directory)")
    p.add_argument("--json", action="store_true", help="print the registration as one JSON object")
    p.set_defaults(func=run)


def provision(terminal_id: str, out: Path) -> dict:
    """Make the four files in ``out``; returns what the hub needs. Raises UsageError."""
    from terminal.crypto.keyfiles import private_key_pem, write_secret
    from terminal.crypto.sm2 import PrivateKey

    out.mkdir(parents=True, exist_ok=True)
    existing = [n for n in (DEVICE_KEY, DEVICE_PUB, TLS_KEY, TLS_CSR) if (out / n).exists()]
    if existing:
        raise UsageError(f"{out}: {', '.join(existing)} already there; provisioning never replaces a key "
                         "(the hub has registered it). Move them away first to start over.")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UsageError("openssl not found (install the openssl package: scripts/setup does)")
    device = PrivateKey.generate()
    with tempfile.TemporaryDirectory(dir=out, prefix=".provision-") as scratch:
        tmp = Path(scratch)
        write_secret(tmp / DEVICE_KEY, private_key_pem(device))
        (tmp / DEVICE_PUB).write_text(device.public_key.hex() + "\n")
        old = os.umask(0o077)  # the TLS key is 0600 from its first byte
        try:
            r = subprocess.run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                "-nodes", "-keyout", str(tmp / TLS_KEY), "-out", str(tmp / TLS_CSR),
                                "-subj", f"/CN={terminal_id}", "-sha256"],
                               capture_output=True, text=True, timeout=60)
        finally:
            os.umask(old)
        if r.returncode != 0:
            raise UsageError(f"openssl req failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        for name in SECRETS:
            os.chmod(tmp / name, 0o600)
        (tmp / DEVICE_PUB).chmod(0o644)
        (tmp / TLS_CSR).chmod(0o644)
        for name in (DEVICE_KEY, DEVICE_PUB, TLS_KEY, TLS_CSR):
            os.link(tmp / name, out / name)  # link, not replace: a file that appeared meanwhile stays
    return {"terminal_id": terminal_id, "device_public_key": device.public_key.hex(),
            "device_kid": device.public_key.kid(), "csr": str(out / TLS_CSR),
            "device_key": str(out / DEVICE_KEY), "tls_key": str(out / TLS_KEY)}


def run(args) -> int:
    try:
        cfg = cfgmod.load(args.config)
    except cfgmod.ConfigError as e:
        raise UsageError(str(e)) from None
    out = (args.out or cfg.path.parent).resolve()
    reg = provision(cfg.terminal_id, out)
    if args.json:
        print(json.dumps(reg))
        return 0
    print(f"provisioned terminal {reg['terminal_id']} in {out}\n"
          f"  device key   {reg['device_key']} (0600)\n"
          f"  TLS key      {reg['tls_key']} (0600)\n"
          f"send to the hub to register this terminal:\n"
          f"  tid                {reg['terminal_id']}\n"
          f"  device public key  {reg['device_public_key']}\n"
          f"  CSR                {reg['csr']}  (CN={reg['terminal_id']}; the signed certificate goes to "
          f"hub.cert)")
    if cfg.device_key is not None and cfg.device_key != out / DEVICE_KEY:
        print(f"note: terminal.device_key in {cfg.path} names {cfg.device_key}, not {out / DEVICE_KEY}")
    if cfg.hub.key is not None and cfg.hub.key != out / TLS_KEY:
        print(f"note: hub.key in {cfg.path} names {cfg.hub.key}, not {out / TLS_KEY}")
    return 0
