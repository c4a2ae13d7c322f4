"""``gate-terminal check-config``: validate a configuration and everything it points at, change nothing.

Stricter than ``run`` on purpose: a daemon whose hub TLS files are missing still starts, decides
offline and retries (the files may come later), and a reader unplugged right now is retried
too; here a missing TLS file is an error, and an absent serial port a warning (readers are
hot-plugged), so an installer hears about both before the terminal goes into service.
"""
from __future__ import annotations

import ssl
import sys
from pathlib import Path

from terminal import config as cfgmod
from terminal.commands.usage import UsageError

def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a configuration and the files it names",
                       description="Check the configuration, the trust list against the pinned roots, "
                                   "the key files (modes included), the hub's TLS files and the state "
                                   "directory's database; exit 0 if all is well, 2 if not. A serial "
                                   "port absent right now is a warning only.")
    p.add_argument("--config", required=True, type=Path)
    p.set_defaults(func=run)


def run(args) -> int:
    from terminal.core.trust import MAX_TRUST_LIST_BYTES, EnvelopeError, open_trust_list
    from terminal.crypto.keyfiles import KeyFileError, load_data_keys, load_private_key
    from terminal.ops.smallfile import read_small
    from terminal.state.store import MIGRATIONS

    try:
        cfg = cfgmod.load(args.config)
        data_keys = load_data_keys(cfg.data_keys)
        if cfg.device_key is not None:
            load_private_key(cfg.device_key)
        raw = read_small(cfg.trust_list, MAX_TRUST_LIST_BYTES)
        trust = open_trust_list(raw, {k.kid(): k for k in cfg.root_keys})
        check_tls(cfg)
        schema = check_state_dir(cfg)
    except (cfgmod.ConfigError, KeyFileError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{e.filename}: {e.strerror}") from None
    except EnvelopeError as e:
        raise UsageError(f"{cfg.trust_list}: {e}") from None
    for key, port in (("id_card.port", cfg.id_card.port), ("ss_card.port", cfg.ss_card.port),
                      ("scanner.port", cfg.scanner.port), ("scanner.device", cfg.scanner.device),
                      ("relay.port", cfg.relay.port)):
        if port and "://" not in port and not Path(port).exists():
            print(f"gate-terminal: warning: {key} {port}: not present now (the daemon retries "
                  f"until it is plugged in)", file=sys.stderr)
    database = "none yet" if schema is None else f"schema {schema}" + (
        f" (migrated to {len(MIGRATIONS)} at the next start)" if schema < len(MIGRATIONS) else "")
    print(f"{args.config}: ok — terminal {cfg.terminal_id}, venue {cfg.venue}, trust list seq {trust.seq} "
          f"({len(trust.issuers)} issuers), data keys {sorted(data_keys)}, database {database}")
    return 0


def check_tls(cfg: cfgmod.Config) -> None:
    """The hub's CA, client certificate and key: there, readable, the key 0600 like the device
    key, and loadable together as the link will load them (the key matches the certificate)."""
    from terminal.crypto.keyfiles import KeyFileError, check_private_mode

    files = {key: path for key, path in cfg.hub.tls_files().items() if path is not None}
    for key, path in files.items():
        try:
            if not path.is_file():
                raise cfgmod.ConfigError(f"{cfg.path}: hub.{key} {path}: "
                                         + ("not a regular file" if path.exists() else "no such file"))
            path.open("rb").close()
        except OSError as e:
            raise cfgmod.ConfigError(f"{cfg.path}: hub.{key} {path}: {e.strerror}") from None
    if "key" in files:
        try:
            check_private_mode(files["key"])
        except KeyFileError as e:
            raise cfgmod.ConfigError(f"{cfg.path}: hub.key {e}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if "ca" in files:
        try:
            ctx.load_verify_locations(cafile=files["ca"])
        except (ssl.SSLError, ValueError) as e:
            raise cfgmod.ConfigError(f"{cfg.path}: hub.ca {files['ca']}: not a CA certificate: {e}") from None
    if "cert" in files and "key" in files:
        try:
            ctx.load_cert_chain(files["cert"], files["key"])
        except ssl.SSLError as e:
            raise cfgmod.ConfigError(f"{cfg.path}: hub.cert {files['cert']} and hub.key {files['key']}: "
                                     f"not a certificate and its key: {e}") from None


def check_state_dir(cfg: cfgmod.Config) -> int | None:
    """The database's schema version (None: none yet, the first start makes it). A state
    directory that is not a directory, or a database that is corrupt or of a newer schema,
    is refused. Read-only."""
    from terminal.state.store import StoreError, inspect_database

    if cfg.state_dir.exists() and not cfg.state_dir.is_dir():
        raise cfgmod.ConfigError(f"{cfg.path}: terminal.state_dir {cfg.state_dir}: not a directory")
    try:
        return inspect_database(cfg.state_dir)
    except StoreError as e:
        raise cfgmod.ConfigError(f"{cfg.path}: terminal.state_dir {e}") from None
