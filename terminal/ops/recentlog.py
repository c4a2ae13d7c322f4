"""The daemon's last log lines, masked, kept in memory for the remote diagnostics bundle.

The code logs masked values already (``张*``, ``370102********1234``); as a second guard for
what leaves the terminal, every line is masked again on the way in: anything shaped like a
resident ID number (:func:`terminal.ops.journal.redact`) and every run of two or more CJK
characters (a name is one; the log's own words are English) keep only their first character.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import deque

from drivers.idnumber import mask_name
from terminal.ops.journal import redact

KEEP_LINES = 2000
MAX_LINE = 1000  # characters kept of one line (a traceback's lines are kept apart)
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]{2,}")


def mask_text(text: str) -> str:
    return _CJK_RUN.sub(lambda m: mask_name(m.group(0)), redact(text))


class RecentLog(logging.Handler):
    """A logging handler holding the last ``keep`` lines, masked; :meth:`lines` reads them."""

    def __init__(self, keep: int = KEEP_LINES, level: int = logging.DEBUG):
        super().__init__(level)
        self._lines: deque[str] = deque(maxlen=keep)
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = mask_text(self.format(record))
        except Exception:  # never let a log call fail
            self.handleError(record)
            return
        with self._guard:
            self._lines.extend(line[:MAX_LINE] for line in text.splitlines())

    def lines(self) -> list[str]:
        with self._guard:
            return list(self._lines)
