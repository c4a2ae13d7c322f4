"""Which devices are out of order: set by the input threads, read by the screen's alarm
banner, the status file and STATUS= (hence the lock)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

LABELS = {"camera": "摄像头", "id_card": "身份证读卡器", "ss_card": "社保卡读卡器", "scanner": "扫码器",
          "relay": "闸机继电器"}


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

    def alarms(self) -> list[str]:
        return [f"{LABELS.get(n, n)}故障" for n in sorted(self.errors())]
