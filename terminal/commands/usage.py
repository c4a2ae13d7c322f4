"""The one error a command raises for its operator: its own module, so a command (or the
simulator's, registered from outside) can raise it without importing the parser."""
from __future__ import annotations


class UsageError(Exception):
    """A bad argument, config key or file: one line for the operator, exit status 2."""
