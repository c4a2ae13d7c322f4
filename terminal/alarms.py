"""The terminal's alarms (docs/protocol/hub.md "Alarms"): the one place that says which are on.

Each source is a callable answering ``{alarm name: reason}`` for the alarms it raises; the
daemon wires them (devices, hub link, outbox, clock guard, disk guard, trust list, and latched
alarms such as ``update_failed`` that another part raises and clears). :meth:`Alarms.refresh`
asks them all, and on any change logs what started and ended, sets ``gate_alarm{name}`` and
calls ``on_change`` (the hub link republishes its ``state`` with the new list). Housekeeping
refreshes every few seconds and writes the result into the status file, which
``gate-terminal status`` turns into a PROBLEM line each; the link refreshes once more when it
publishes its birth message, so a reconnect never says ``hub_unreachable``.

It sits beside the daemon (like housekeeping): it reads the state, hub and inputs rooms through
the callables it is given and imports none of them.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

DEVICE_ALARMS = ("camera_down", "id_card_down", "ss_card_down", "scanner_down", "relay_down", "screen_down",
                 "audio_down")
NAMES = DEVICE_ALARMS + ("hub_unreachable", "outbox_backlog", "clock_untrusted", "disk_low", "trust_stale",
                         "update_failed")

Source = Callable[[], Mapping[str, str]]


def age_text(s: float) -> str:
    """A duration as status shows it: 45s → 0m45s, 12m05s, 3h07m, 2d4h."""
    s = max(0, int(s))
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60:02d}m" \
        if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def device_alarms(errors: Mapping[str, str]) -> dict[str, str]:
    """``DeviceStatus.errors()`` (device → why) as ``<device>_down`` alarms."""
    return {f"{device}_down": why for device, why in errors.items()}


def outbox_backlog(oldest_at: float | None, minutes: float, now: float) -> dict[str, str]:
    """The oldest unacknowledged event is older than ``minutes``."""
    if oldest_at is None:
        return {}
    age = now - oldest_at
    return {"outbox_backlog": f"oldest unacknowledged event {age_text(age)} old"} if age > 60 * minutes else {}


def trust_stale(next_update: int | None, grace_hours: float, now: float | None) -> dict[str, str]:
    """The trust list's ``next_update`` plus the grace has passed (a list without one never goes
    stale; with no trusted time, clock_untrusted says so instead)."""
    if next_update is None or now is None:
        return {}
    late = now - next_update
    return {"trust_stale": f"trust list {age_text(late)} past its next_update"} if late > 3600 * grace_hours else {}


class Alarms:
    def __init__(self, metrics=None, on_change: Callable[[Mapping[str, str]], None] = lambda active: None):
        self._sources: list[Source] = []
        self._latched: dict[str, str] = {}
        self._metrics = metrics
        self._on_change = on_change
        self._lock = threading.Lock()  # refreshed by housekeeping and the hub pump
        self.current: Mapping[str, str] = {}  # replaced whole: readers need no lock
        if metrics is not None:
            for name in NAMES:
                metrics.alarm(name, False)

    def add_source(self, source: Source) -> None:
        self._sources.append(source)

    def latch(self, name: str, reason: str) -> None:
        """Raise an alarm that stays until :meth:`unlatch` (``update_failed``: the updater's)."""
        with self._lock:
            self._latched = {**self._latched, name: reason}

    def unlatch(self, name: str) -> None:
        with self._lock:
            self._latched = {k: v for k, v in self._latched.items() if k != name}

    def set_on_change(self, on_change: Callable[[Mapping[str, str]], None]) -> None:
        self._on_change = on_change

    def refresh(self) -> Mapping[str, str]:
        """Ask every source; on a change log it, set the metrics and call ``on_change``."""
        with self._lock:
            active: dict[str, str] = {}
            for source in self._sources:
                try:
                    active.update(source())
                except Exception as e:  # a broken source must not hide the others' alarms
                    log.exception("alarm source %r failed", source)
                    active["alarm_source_failed"] = f"{type(e).__name__}"
            active.update(self._latched)
            active = dict(sorted(active.items()))
            before, self.current = self.current, active
        if active.keys() == before.keys():
            return active
        for name in active.keys() - before.keys():
            log.error("alarm %s: %s", name, active[name])
            if self._metrics is not None:
                self._metrics.alarm(name, True)
        for name in before.keys() - active.keys():
            log.warning("alarm %s ended", name)
            if self._metrics is not None:
                self._metrics.alarm(name, False)
        self._on_change(active)
        return active
