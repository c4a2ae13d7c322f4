"""``gate-terminal check-config``: validate a configuration and everything it points at, change nothing."""
from __future__ import annotations

from pathlib import Path

from terminal import config as cfgmod
from terminal.cli import UsageError
from terminal.keyfiles import KeyFileError, load_data_keys, load_private_key
from terminal.smallfile import read_small
from terminal.trust import MAX_TRUST_LIST_BYTES, EnvelopeError, open_trust_list


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a configuration and the files it names",
                       description="Check the configuration, the trust list against the pinned roots, "
                                   "and the key files (modes included); exit 0 if all is well, 2 if not.")
    p.add_argument("--config", required=True, type=Path)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        cfg = cfgmod.load(args.config)
        data_keys = load_data_keys(cfg.data_keys)
        if cfg.device_key is not None:
            load_private_key(cfg.device_key)
        raw = read_small(cfg.trust_list, MAX_TRUST_LIST_BYTES)
        trust = open_trust_list(raw, {k.kid(): k for k in cfg.root_keys})
    except (cfgmod.ConfigError, KeyFileError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{e.filename}: {e.strerror}") from None
    except EnvelopeError as e:
        raise UsageError(f"{cfg.trust_list}: {e}") from None
    print(f"{args.config}: ok — terminal {cfg.terminal_id}, venue {cfg.venue}, trust list seq {trust.seq} "
          f"({len(trust.issuers)} issuers), data keys {sorted(data_keys)}")
    return 0
