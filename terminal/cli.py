"""The ``gate-terminal`` command line. Each command lives in a ``cmd_*`` module with
``register(subparsers)``; exit codes: 0 success, 1 a negative result, 2 usage or configuration error."""
from __future__ import annotations

import argparse
import importlib
import sys

from terminal import __version__

COMMAND_MODULES = (
)


class UsageError(Exception):
    """A bad argument, config key or file: one line for the operator, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gate-terminal", description="Entrance verification terminal")
    parser.add_argument("--version", action="version", version=f"gate-terminal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"gate-terminal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
