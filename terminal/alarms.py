"""The terminal's alarms (fleet.md "Alarms"): what is wrong now, each under one name, with why.

:class:`Alarms` is the one answer to "which alarms are up". Every part of the terminal that can
go wrong adds a *source* — a callable returning ``{name: why}`` for its alarms active now — and
everything that reports alarms reads :meth:`Alarms.active`: the status file (and so
``gate-terminal status``, a PROBLEM line each), the screen's banner (``texts.ALARM_TEXT``) and
whatever reports to the hub or the metrics next. A new alarm is a new source (or a new name in
one), never a second list.

Names: a device's is ``<device>_down`` (:func:`device_alarm`); the others are below and in
``terminal/hub/link.py`` (``hub_unreachable``).
"""
from __future__ import annotations

import threading
from typing import Callable

DISK_LOW = "disk_low"
CLOCK_UNTRUSTED = "clock_untrusted"

Source = Callable[[], dict[str, str]]


def device_alarm(device: str) -> str:
    """``camera_down``, ``id_card_down``, ``ss_card_down``, ``scanner_down``, ``relay_down``,
    ``screen_down``, ``audio_down``."""
    return f"{device}_down"


def age_text(seconds: float) -> str:
    """``0m45s``, ``12m05s``, ``3h07m``, ``2d4h``: how long, for a person."""
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


class Alarms:
    """Sources are added at start (main thread) and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Source] = []

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def active(self) -> dict[str, str]:
        """Every alarm up now, name → why, in name order."""
        with self._lock:
            sources = list(self._sources)
        found: dict[str, str] = {}
        for source in sources:
            found.update(source())
        return dict(sorted(found.items()))
