"""The daemon's housekeeping thread: every :data:`~terminal.state.statusfile.WRITE_EVERY`
seconds store health (for the watchdog), the disk, the alarms, the status file and systemd's STATUS=;
hourly the retention of synced events and expired nonces.

It sits beside the daemon rather than in ``terminal/ops``: it ties the store, the disk guard,
the hub link and the status file together, and ``ops`` stays a bottom layer that ``config``
and the key files can import.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from terminal.state import diskguard, retention
from terminal.state.statusfile import WRITE_EVERY

log = logging.getLogger(__name__)


class Housekeeping:
    name = "housekeeping"

    def __init__(self, *, store, clock, disk, status_file, devices, device_names: list[str], hub,
                 alarms, metrics, watchdog, notifier, retention_days: Callable[[], int],
                 summary: Callable[[], str], every: float = WRITE_EVERY):
        """``hub``: the :class:`terminal.hub.bridge.HubBridge`, or None without a hub;
        ``alarms``: the terminal's :class:`terminal.alarms.Alarms`;
        ``retention_days``: read each round, as a reload may change it; ``every``: seconds
        between rounds (tests shorten it)."""
        self._store = store
        self._clock = clock
        self._disk = disk
        self._status_file = status_file
        self._devices = devices
        self._device_names = device_names
        self._hub = hub
        self._alarms = alarms
        self._metrics = metrics
        self._watchdog = watchdog
        self._notifier = notifier
        self._retention_days = retention_days
        self._summary = summary
        self._every = every
        self.thread: threading.Thread | None = None

    def start(self, done: threading.Event) -> None:
        """Run until ``done`` (set once the inputs have stopped)."""
        self.thread = threading.Thread(target=self._run, args=(done,), name=self.name, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self, done: threading.Event) -> None:
        next_purge = 0.0
        first = True  # the status file at once: `status` says "running" from the start
        while first or not done.wait(self._every):
            first = False
            try:
                store = self._store
                store.checkpoint()
                if diskguard.probe(store):
                    self._watchdog.progress("store")
                self._metrics.storage_alarm(self._disk.check())
                self._metrics.clock(self._clock.state)
                if time.monotonic() >= next_purge:
                    retention.purge(store, self._retention_days(), self._clock.now())
                    next_purge = time.monotonic() + retention.PURGE_EVERY
                self._status_file.write(
                    devices={**{n: None for n in self._device_names}, **self._devices.errors()},
                    hub=self._hub.report(self._metrics) if self._hub is not None else {"state": "off"},
                    clock=self._clock.state,
                    storage={"alarm": self._disk.alarm, "free_bytes": diskguard.free_bytes(store.state_dir)},
                    alarms=self._alarms.active())
                self._notifier.status(self._summary())
            except Exception:  # housekeeping must never take the terminal down
                log.exception("housekeeping failed")
        self._watchdog.unwatch("store")
