"""``gate-terminal verify``: decide codes from the command line, each one presentation, each an event."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from terminal import config as cfgmod
from terminal.commands.usage import UsageError
from terminal.core.policy import ALLOW, VENUES
from terminal.state.clock import MIN_PLAUSIBLE_TIME

# --now is a time a token could be judged at: not before any terminal existed, not past the
# last second a calendar date can show (9999-12-31T23:59:59Z); NaN and infinities are neither.
MAX_TIME = 253402300799.0


def register(sub) -> None:
    p = sub.add_parser("verify", help="verify health codes (stdin with '-': one code per line)",
                       description="Verify each code as one presentation and record it as an event. "
                                   "Exit 0 if every code was allowed, 1 if any was denied or sent to "
                                   "review, 2 on a usage or configuration error.")
    p.add_argument("--config", required=True, type=Path, help="terminal configuration (TOML)")
    p.add_argument("--venue", choices=VENUES, help="venue type instead of the configured one")
    p.add_argument("--now", type=float, metavar="UNIX",
                   help="trusted time for this run (audits, tests); the clock guard does not apply")
    p.add_argument("--state-dir", type=Path, help="state directory instead of the configured one")
    p.add_argument("--json", action="store_true", help="one JSON object per code on stdout")
    p.add_argument("codes", nargs="+", metavar="TEXT", help="code texts, or - to read stdin")
    p.set_defaults(func=run)


def _codes(args):
    for code in args.codes:
        if code == "-":
            # Universal newlines: \r\n and a lone \r end a code as \n does (stdin splits at \n only).
            sys.stdin.reconfigure(newline=None)
            for line in sys.stdin:
                if line.strip():
                    yield line
        else:
            yield code


def run(args) -> int:
    from terminal.crypto.keyfiles import KeyFileError
    from terminal.state.store import StoreError
    from terminal.verifier import SetupError, Verifier

    if args.now is not None and not MIN_PLAUSIBLE_TIME <= args.now <= MAX_TIME:
        raise UsageError(f"--now must be a Unix time from {MIN_PLAUSIBLE_TIME:.0f} to {MAX_TIME:.0f}")
    try:
        cfg = cfgmod.load(args.config)
        verifier = Verifier.open(cfg, args.state_dir, now=args.now)
    except (cfgmod.ConfigError, SetupError, StoreError, KeyFileError) as e:
        raise UsageError(str(e)) from None
    all_allowed = True
    try:
        for code in _codes(args):
            r = verifier.verify(code, now=args.now, venue=args.venue)
            all_allowed &= r.decision == ALLOW
            if args.json:
                print(json.dumps(r.as_json(), ensure_ascii=False), flush=True)
            else:
                who = " ".join(x for x in (r.name, r.id) if x)
                print(f"{r.decision:<6} {r.reason:<20} {who}".rstrip(), flush=True)
    finally:
        verifier.close()
    return 0 if all_allowed else 1
