"""The ``gate-terminal`` command line. Each command lives in a ``terminal.commands`` module with
``register(subparsers)``; exit codes: 0 success, 1 a negative result, 2 usage or configuration error."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib.metadata import entry_points

from terminal import __version__
from terminal.commands.usage import UsageError
from terminal.ops import journal

COMMAND_MODULES = (
    "terminal.commands.verify",
    "terminal.commands.run",
    "terminal.commands.card",
    "terminal.commands.scanner",
    "terminal.commands.check",
    "terminal.commands.decode",
    "terminal.commands.status",
    "terminal.commands.provision",
    "terminal.commands.install",
    "terminal.commands.release",
)
# Commands that live outside terminal/ (the simulator's ``sim``) register through this entry
# point group in pyproject.toml: terminal/ never imports them.
COMMANDS_GROUP = "gate_terminal.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gate-terminal", description="Entrance verification terminal")
    parser.add_argument("--version", action="version", version=f"gate-terminal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision (masked) to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    journal.setup(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"gate-terminal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): point it at /dev/null so the exit-time flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # a bug: one line for the operator, the traceback only with -v
        logging.getLogger("terminal").debug("unexpected error", exc_info=True)
        print(f"gate-terminal: internal error: {type(e).__name__}: {e} (run with -v for details)",
              file=sys.stderr)
        return 70
