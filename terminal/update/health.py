"""The health window of a new release: it marks itself good, or the launcher rolls it back.

Right after a switch, ``update/pending.json`` names the running version. This release then
watches the daemon's own checks (:meth:`terminal.daemon.Daemon.health_problems`: READY sent,
the watchdog fed, every configured device open, a self-test decision made) and, once none is
left, marks itself good: the launcher's SIGALRM is cancelled, the marker and the
``update_failed`` flag removed, a ``good`` report queued. Until the deadline it keeps looking;
past it, it does nothing — the alarm ends the process and the launcher rolls back
(terminal/update/boot.py), so one party alone ever decides a rollback.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from terminal.update import boot

log = logging.getLogger(__name__)


class HealthWindow:
    def __init__(self, prefix: Path, version: str, problems: Callable[[], list[str]], *,
                 on_good: Callable[[], None] = lambda: None, poll: float = 0.5,
                 clock: Callable[[], float] = time.time):
        self.prefix = prefix
        self.version = version
        self._problems = problems
        self._on_good = on_good
        self._poll = poll
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_problems: list[str] = []

    def pending(self) -> dict | None:
        """The marker, if it is this version's switch that waits to be judged."""
        p = boot.read_pending(self.prefix)
        return p if p is not None and p["version"] == self.version else None

    def start(self) -> bool:
        """Watch in a thread if this release is on trial; False if it is not."""
        if self.pending() is None:
            return False
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        pending = self.pending()
        while pending is not None and not self._stop.is_set():
            try:
                self.last_problems = self._problems()
            except Exception as e:  # a failing check is a problem, never a pass
                log.exception("update: health check failed")
                self.last_problems = [f"health check failed: {type(e).__name__}"]
            if not self.last_problems:
                self.mark_good()
                return
            if self._clock() >= pending["deadline"]:
                log.error("update: release %s not healthy within its window (%s); the launcher rolls it back",
                          self.version, "; ".join(self.last_problems))
                return  # SIGALRM ends us; the launcher, which alone rolls back, runs next
            self._stop.wait(self._poll)

    def mark_good(self) -> None:
        signal.alarm(0)  # the launcher's deadline no longer applies
        boot.add_report(self.prefix, self.version, "good", "healthy within its window")
        boot.clear(self.prefix / boot.FAILED)
        boot.clear(self.prefix / boot.PENDING)
        log.warning("update: release %s is healthy and marked good", self.version)
        self._on_good()
