"""The daemon's status file, ``state_dir/status.json``: written by the daemon's housekeeping
at start and every :data:`WRITE_EVERY` seconds, and a last time when it stops; read by
``gate-terminal status`` whether the daemon runs or not.

The daemon rewrites it atomically (:class:`StatusFile`)::

    {"version": 1, "state": "running" | "stopped", "written_at": 1767300000.5, "pid": 812,
     "terminal_id": "370102-H0001-03",
     "devices": {"camera": null, "id_card": "LinkDown: /dev/gate/idcard: gone"},  # null = ok
     "hub": {"state": "connected" | "disconnected" | "off", "last_sync_at": 1767299990.1,
             "down_for": 725.0 | null, "alarms": ["hub_unreachable"], "resends": 0, "unheard": 0, …},
     "clock": "trusted" | "untrusted", "storage": {"alarm": false, "free_bytes": 123456789},
     "alarms": {"id_card_down": "LinkDown: /dev/gate/idcard: gone"},   # terminal/alarms.py
     "decided": 42,
     "last_decisions": [{"at": ..., "seq": 41, "method": "qr", "decision": "allow", "reason": "ok",
                         "name": "张*", "id": "370102********1234", "latency_ms": 4.1, "gate": "opened"}]}

Names and ID numbers in it are the masked forms the daemon already shows; the file is mode
0600 (the daemon's umask). A stopping daemon writes ``"state": "stopped"`` with no devices, no
hub and no alarms: nothing it said while running outlives it.

Whether the daemon runs is not read from the file's age but from the process
(:func:`daemon_state`): the daemon holds the state directory's flock (``state_dir/lock``, taken
by the store) for as long as it runs, and the kernel drops it when the process ends, however it
ends — a pid in a file can be reused by another process, a lock cannot outlive its holder. The
file's ``pid`` and ``state`` then say whether the holder is the daemon (``verify`` and ``card``
take the same lock for a moment); a running daemon's file older than :data:`STALE_AFTER` means
it is wedged, and is reported as such.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections import deque
from pathlib import Path

from terminal.ops.smallfile import write_atomic
from terminal.state.store import LOCK_NAME

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
                                   "name": result.name, "id": result.id, "latency_ms": result.latency_ms,
                                   "gate": result.gate})

    def write(self, *, devices: dict[str, str | None], hub: dict, clock: str, storage: dict,
              alarms: dict[str, str], now: float | None = None, state: str = "running") -> None:
        with self._lock:
            decided, last = self.decided, list(self._last)
        doc = {"version": 1, "state": state, "written_at": time.time() if now is None else now,
               "pid": os.getpid(), "terminal_id": self.terminal_id, "devices": devices, "hub": hub,
               "clock": clock, "storage": storage, "alarms": alarms, "decided": decided,
               "last_decisions": last}
        # Not durable: it is rewritten every few seconds, and one lost to a power cut costs nothing
        # (a daemon that is gone is known by its lock, not by this file).
        write_atomic(self.path, json.dumps(doc, ensure_ascii=False, indent=1).encode())

    def write_stopped(self, *, clock: str) -> None:
        """The last word of a stopping daemon: no device, hub or alarm is live any more."""
        self.write(devices={}, hub={"state": "off"}, clock=clock, storage={}, alarms={}, state="stopped")


def daemon_lock_held(state_dir: Path) -> bool | None:
    """Whether a process holds the state directory's lock; None if that cannot be told (the
    lock file is unreadable to this user). Takes the lock shared for an instant, never creates
    the file (the store's ``LOCK_PATIENCE`` covers a daemon starting in that instant)."""
    try:
        fd = os.open(Path(state_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken
    return False


def pid_alive(pid: object) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def daemon_state(state_dir: Path, doc: dict | None, now: float) -> tuple[bool, str | None]:
    """(running, the problem if any) from the lock, then the status file ``doc``."""
    last_said_running = doc is not None and doc.get("state", "running") == "running"
    says_running = last_said_running and pid_alive(doc.get("pid"))
    held = daemon_lock_held(state_dir)
    if held is None:  # cannot look at the lock: the pid is all there is
        held = says_running
    if not held:
        if last_said_running:
            return False, "daemon not running (it did not stop cleanly: its last status says running)"
        return False, "daemon not running"
    if not says_running:
        return False, ("daemon not running (the state directory is held by another gate-terminal "
                       "process, or the daemon is starting)")
    if doc["stale"]:
        return True, f"daemon not answering: its status is {int(now - float(doc['written_at']))} s old (wedged?)"
    return True, None


def read_status_file(state_dir: Path, now: float) -> dict | None:
    try:
        doc = json.loads((Path(state_dir) / STATUS_NAME).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != 1:
            return None
        doc["stale"] = not now - float(doc["written_at"]) <= STALE_AFTER
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc
