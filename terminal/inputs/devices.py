"""Which devices are out of order: set by the input threads, the decide thread (the relay) and
the screen's thread, read by the alarms, the status file and STATUS= (hence the lock)."""
from __future__ import annotations

import logging
import threading

from terminal.alarms import device_alarm

log = logging.getLogger(__name__)


class DeviceStatus:
    """Which devices are out of order: logged and counted on every change, shown as alarms."""

    def __init__(self, metrics=None):
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._metrics = metrics

    def ok(self, name: str) -> None:
        with self._lock:
            was = self._errors.pop(name, None)
        if was is not None:
            log.warning("device %s is back", name)
            if self._metrics:
                self._metrics.device_up(name)

    def fail(self, name: str, why: str) -> None:
        with self._lock:
            was = self._errors.get(name)
            self._errors[name] = why
        if was is None:
            log.error("device %s out of order: %s", name, why)
            if self._metrics:
                self._metrics.device_error(name)

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    def alarms(self) -> dict[str, str]:
        """An alarm source (terminal/alarms.py): ``<device>_down`` → why, for each device out of order."""
        return {device_alarm(n): why for n, why in self.errors().items()}
