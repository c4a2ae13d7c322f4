"""The daemon's status file, ``state_dir/status.json``: written by the daemon's housekeeping
every :data:`WRITE_EVERY` seconds, read by ``gate-terminal status`` whether the daemon runs or not.

The daemon rewrites it atomically (:class:`StatusFile`)::

    {"version": 1, "written_at": 1767300000.5, "pid": 812, "terminal_id": "370102-H0001-03",
     "devices": {"camera": null, "id_card": "LinkDown: /dev/gate/idcard: gone"},  # null = ok
     "hub": {"state": "connected" | "disconnected" | "off", "last_sync_at": 1767299990.1,
             "down_for": 725.0 | null, "alarms": ["hub_unreachable"]},
     "clock": "trusted" | "untrusted", "storage": {"alarm": false, "free_bytes": 123456789},
     "alarms": {"id_card_down": "LinkDown: /dev/gate/idcard: gone"},  # terminal/alarms.py: name → why
     "decided": 42,
     "last_decisions": [{"at": ..., "seq": 41, "method": "qr", "decision": "allow", "reason": "ok",
                         "name": "张*", "id": "370102********1234", "latency_ms": 4.1}]}

Names and ID numbers in it are the masked forms the daemon already shows; the file is mode
0600 (the daemon's umask). A status file older than :data:`STALE_AFTER` means the daemon is not
running (or is wedged): it is reported, not trusted.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from terminal.ops.smallfile import write_atomic

STATUS_NAME = "status.json"
WRITE_EVERY = 5.0
STALE_AFTER = 3 * WRITE_EVERY
LAST_DECISIONS = 10


class StatusFile:
    """The daemon side: remembers the last decisions (masked), writes the file on request."""

    def __init__(self, state_dir: Path, terminal_id: str, keep: int = LAST_DECISIONS):
        self.path = Path(state_dir) / STATUS_NAME
        self.terminal_id = terminal_id
        self._last: deque[dict] = deque(maxlen=keep)
        self.decided = 0
        self._lock = threading.Lock()  # record() runs on the decide thread, write() on housekeeping

    def record(self, result, at: float) -> None:
        """One decided presentation (a verifier ``Result``: its name and id are masked)."""
        with self._lock:
            self.decided += 1
            self._last.appendleft({"at": at, "seq": result.seq, "method": result.method,
                                   "decision": result.decision, "reason": result.reason,
                                   "name": result.name, "id": result.id, "latency_ms": result.latency_ms})

    def write(self, *, devices: dict[str, str | None], hub: dict, clock: str, storage: dict,
              alarms: Mapping[str, str] | None = None, now: float | None = None) -> None:
        with self._lock:
            decided, last = self.decided, list(self._last)
        doc = {"version": 1, "written_at": time.time() if now is None else now, "pid": os.getpid(),
               "terminal_id": self.terminal_id, "devices": devices, "hub": hub, "clock": clock,
               "storage": storage, "alarms": dict(alarms or {}), "decided": decided, "last_decisions": last}
        # Not durable: it is rewritten every few seconds, and one lost to a power cut costs nothing.
        write_atomic(self.path, json.dumps(doc, ensure_ascii=False, indent=1).encode())


def read_status_file(state_dir: Path, now: float) -> dict | None:
    try:
        doc = json.loads((Path(state_dir) / STATUS_NAME).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != 1:
            return None
        doc["stale"] = not now - float(doc["written_at"]) <= STALE_AFTER
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc
