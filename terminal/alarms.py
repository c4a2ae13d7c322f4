"""The terminal's alarms (fleet.md "Alarms"): what is wrong now, each under one name, with why.

:class:`Alarms` is the one answer to "which alarms are up". Every part of the terminal that can
go wrong adds a *source* — a callable returning ``{name: why}`` for its alarms active now — and
everything that reports alarms reads :meth:`Alarms.active`: the status file (and so
``gate-terminal status``, a PROBLEM line each), the screen's banner (``texts.ALARM_TEXT``), the
hub link's retained ``state`` message (published again when the list changes) and the metrics
(``gate_alarm{name}``, read at scrape time). A new alarm is a new source (or a new name in one),
never a second list (``update_failed``: the release updater's source).

Names: a device's is ``<device>_down`` (:func:`device_alarm`); the others are below and in
``terminal/hub/link.py`` (``hub_unreachable``). The thresholds of the time-based ones are
configuration: ``[hub] alarm_hub_minutes``, ``[hub] alarm_outbox_minutes``,
``[trust] stale_grace_hours``.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

DISK_LOW = "disk_low"
CLOCK_UNTRUSTED = "clock_untrusted"
OUTBOX_BACKLOG = "outbox_backlog"
TRUST_STALE = "trust_stale"
UPDATE_FAILED = "update_failed"
HUB_UNREACHABLE = "hub_unreachable"  # raised by terminal/hub/link.py
DEVICES = ("camera", "id_card", "ss_card", "scanner", "relay", "screen", "audio")
# fleet.md's table: every one is in the metrics (0 or 1) from the start
NAMES = tuple(f"{d}_down" for d in DEVICES) + (HUB_UNREACHABLE, OUTBOX_BACKLOG, CLOCK_UNTRUSTED, DISK_LOW,
                                               TRUST_STALE, UPDATE_FAILED)

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


def outbox_backlog(oldest_at: float | None, minutes: float, now: float) -> dict[str, str]:
    """The oldest event the hub has not acknowledged is older than ``minutes``."""
    if oldest_at is None:
        return {}
    age = now - oldest_at
    return {OUTBOX_BACKLOG: f"oldest unacknowledged event {age_text(age)} old"} if age > 60 * minutes else {}


def trust_stale(next_update: int | None, grace_hours: float, now: float | None) -> dict[str, str]:
    """The trust list's ``next_update`` plus the grace has passed (a list without one never goes
    stale; with no trusted time, clock_untrusted says so instead)."""
    if next_update is None or now is None:
        return {}
    late = now - next_update
    return {TRUST_STALE: f"trust list {age_text(late)} past its next_update"} if late > 3600 * grace_hours else {}


class Alarms:
    """Sources are added at start (main thread) and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Source] = []

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def active(self) -> dict[str, str]:
        """Every alarm up now, name → why, in name order. A source that fails is an alarm of its
        own (``alarm_source_failed``), never a reason to hide the others'."""
        with self._lock:
            sources, found = list(self._sources), {}
        for source in sources:
            try:
                found.update(source())
            except Exception as e:
                log.exception("alarm source %r failed", source)
                found["alarm_source_failed"] = type(e).__name__
        return dict(sorted(found.items()))
