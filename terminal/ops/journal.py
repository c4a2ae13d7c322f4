"""Logging set up for where stderr goes: journald under systemd, a terminal otherwise.

Under systemd, stderr is a journal stream (``$JOURNAL_STREAM`` names its device:inode).
Each line then starts with the syslog priority journald parses (``<3>`` error, ``<4>``
warning, ``<6>`` info, ``<7>`` debug) and carries no timestamp (the journal keeps its own).
Every line of a multi-line record (a traceback) carries the prefix, so none of it lands at
the wrong priority. As a last guard for privacy, anything shaped like a resident ID number is
masked before it is written: the code logs masked values already (``370102********1234``).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Mapping, TextIO

from drivers.idnumber import mask_id

PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
# 18 characters: 17 digits and a digit or X, not inside a longer run of digits (hex, seqs)
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def journal_stream(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True if ``stream`` is the journal stream systemd connected (sd_journal_stream_fd)."""
    env = os.environ if env is None else env
    try:
        dev, ino = (int(x) for x in env["JOURNAL_STREAM"].split(":"))
        st = os.fstat(stream.fileno())
    except (KeyError, ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def redact(text: str) -> str:
    return _ID_NUMBER.sub(lambda m: mask_id(m.group(0)), text)


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, each line of it prefixed."""

    def __init__(self):
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)}>"
        return "\n".join(prefix + line for line in redact(super().format(record)).splitlines())


class ConsoleFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(level: int = logging.WARNING, *, stream: TextIO | None = None,
          env: Mapping[str, str] | None = None) -> bool:
    """Replace the root logger's handlers with one for ``stream`` (default stderr).

    Returns True when it writes for journald. Call once at start (the CLI's main, instead of
    ``logging.basicConfig``); ``run`` may lower the level to INFO afterwards as it does now.
    """
    stream = sys.stderr if stream is None else stream
    under_journal = journal_stream(stream, env)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if under_journal else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return under_journal
