"""``gate-terminal scanner read``: print the codes a scan engine reads, each presentation once.

Codes are printed as they come (one line each, or ``{"text": …}`` per line with ``--json``); the
engine's repeats of a code still in view are one presentation, printed once. Exit 0 after
``--count`` codes, or at the timeout if at least one came; 1 with one line on stderr if none did
(saying what the line carried instead: banners, garbage, over-long lines) or the port is unusable.
"""
from __future__ import annotations

import json
import sys
import time

from drivers.scanner.framing import SUFFIXES
from drivers.serial_link import LinkDown
from terminal.commands.usage import UsageError
from terminal.config import MAX_PREFIX


def register(sub) -> None:
    p = sub.add_parser("scanner", help="2D scan engines: read codes")
    scansub = p.add_subparsers(dest="scanner_command", required=True, metavar="SCANNERCOMMAND")
    r = scansub.add_parser("read", help="print each code the engine reads, once per presentation")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial engine: device path, pty or socket://host:port")
    where.add_argument("--device", help="keyboard-mode engine: its input device (/dev/input/…), grabbed")
    r.add_argument("--baud", type=int, default=9600, help="serial: the engine's rate (default 9600)")
    r.add_argument("--suffix", choices=tuple(SUFFIXES), default="cr",
                   help="serial: what ends each code (default cr)")
    r.add_argument("--prefix", default="", metavar="P",
                   help="what the engine sends before each code (lines without it are ignored)")
    r.add_argument("--count", type=int, default=1, metavar="N", help="exit after N codes (default 1)")
    r.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait in all (default 10)")
    r.add_argument("--json", action="store_true", help='one {"text": …} object per line')
    r.set_defaults(func=run)


def open_engine(args):
    if args.device:
        from drivers.scanner.hid import HidScanner  # evdev, only for a keyboard-mode engine
        return HidScanner(args.device, prefix=args.prefix)
    from drivers.scanner.reader import SerialScanner
    return SerialScanner(args.port, baudrate=args.baud, prefix=args.prefix, suffix=args.suffix)


def run(args) -> int:
    if not (args.port or args.device):
        raise UsageError("--port or --device must name the engine")
    if args.baud <= 0:
        raise UsageError(f"--baud {args.baud}: must be a positive number")
    if not 1 <= args.count <= 10000:
        raise UsageError(f"--count {args.count}: must be 1-10000")
    if not 0 <= args.timeout <= 3600:
        raise UsageError(f"--timeout {args.timeout}: must be 0-3600 seconds")
    if len(args.prefix) > MAX_PREFIX or "\r" in args.prefix or "\n" in args.prefix:
        raise UsageError(f"--prefix: must be up to {MAX_PREFIX} characters without CR or LF")
    engine = open_engine(args)
    deadline = time.monotonic() + args.timeout
    read = 0
    try:
        code = engine.poll(0)  # at once: a port that cannot be opened is reported without waiting
        while True:
            if code is not None:
                read += 1
                print(json.dumps({"text": code.text}, ensure_ascii=False) if args.json else code.text,
                      flush=True)
                if read >= args.count:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            code = engine.poll(remaining)
    except LinkDown as e:
        if not read:
            return _fail(f"port unavailable: {e}")
        print(f"gate-terminal: port lost after {read} code{'s' if read != 1 else ''}: {e}", file=sys.stderr)
    finally:
        engine.close()
    if not read:
        said = [f"{n} line{'s' if n != 1 else ''} {why}" for why, n in engine.dropped().items() if n]
        return _fail(f"no code within {args.timeout:g} s" + (f" ({', '.join(said)})" if said else ""))
    return 0


def _fail(message: str) -> int:
    print(f"gate-terminal: {message}", file=sys.stderr)
    return 1
