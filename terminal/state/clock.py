"""The clock guard of docs/protocol/token.md §6: never trust a wall clock blindly.

The highest trusted time seen is kept on disk (``clock_floor``). A wall clock behind it by
more than ``tolerance`` seconds — an RTC reset to 1970, a clock moved back, NTP answers
spoofed to move it back — latches the terminal into ``clock_untrusted``: tokens are refused
with that reason rather than judged against a time that may let a screenshot through. Being
synchronised does not excuse a clock behind the floor: NTP is unauthenticated, and whoever
can answer the kiosk's NTP queries can make the kernel synchronise to any time. Two things
restore trust: the kernel saying the system clock is synchronised (NTP, via ``adjtimex``)
while it is not behind the floor, or a trusted time from the hub (:meth:`ClockGuard.restore`,
fed by the hub's signed time beacon) — the one call that may set the floor back.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger(__name__)

# No terminal software was built before this instant: a wall clock behind it is an RTC that
# lost power, even on a first boot with nothing on disk yet (2026-01-01T00:00:00Z).
MIN_PLAUSIBLE_TIME = 1767225600.0

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def system_clock_synchronised() -> bool:
    """What ``timedatectl`` calls "System clock synchronized": adjtimex read-only query."""
    buf = ctypes.create_string_buffer(512)  # struct timex (208 bytes on 64-bit), modes = 0: read only
    try:
        state = _libc.adjtimex(buf)
    except AttributeError:
        return False
    return 0 <= state != _TIME_ERROR


class ClockGuard:
    def __init__(self, store, tolerance: float = 5.0, *, wall=time.time, mono=time.monotonic,
                 synchronised=system_clock_synchronised):
        self._store = store
        self._tolerance = tolerance
        self._wall = wall
        self._mono = mono
        self._synchronised = synchronised
        self.floor = float(store.get_meta("clock_floor", str(MIN_PLAUSIBLE_TIME)))
        self._untrusted = store.get_meta("clock_state") == "untrusted"
        self._anchor: tuple[float, float] | None = None  # (trusted unix time, monotonic) from the hub
        # now() moves the floor and is called from the decide, card reader and housekeeping
        # threads; the hub's time beacon restores from the decide thread.
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return "untrusted" if self._untrusted else "trusted"

    def now(self) -> float | None:
        """The terminal's trusted time, or None while the clock is untrusted."""
        with self._lock:
            return self._now()

    def _now(self) -> float | None:
        wall = self._wall()
        synchronised = self._synchronised()
        if synchronised and wall >= self.floor - self._tolerance:
            if self._untrusted:
                log.warning("clock: system clock is synchronised; trusting it again")
            self._untrusted = False
            self._anchor = None
            self.floor = max(self.floor, wall)
            return wall
        if self._anchor is not None:
            t = self._anchor[0] + (self._mono() - self._anchor[1])
            self.floor = max(self.floor, t)
            return t
        if self._untrusted:
            return None
        if wall < self.floor - self._tolerance:
            if synchronised:
                log.error("clock: system clock is synchronised but %.0f s behind the highest trusted time "
                          "(NTP answers moved it back?); refusing tokens (clock_untrusted) until the hub's "
                          "time or a synchronised clock past that time restores it", self.floor - wall)
            else:
                log.error("clock: wall clock is %.0f s behind the highest trusted time; refusing tokens "
                          "(clock_untrusted) until the hub's time or a synchronised clock restores it",
                          self.floor - wall)
            self._untrusted = True
            return None
        self.floor = max(self.floor, wall)
        return wall

    def restore(self, trusted: float) -> None:
        """A trusted time from the hub: run on it (monotonic) until the system clock is
        synchronised and not behind the floor."""
        with self._lock:
            self._restore(trusted)

    def _restore(self, trusted: float) -> None:
        self._anchor = (trusted, self._mono())
        self._untrusted = False
        self.floor = trusted  # signed and newer than any beacon before it: it outranks the floor

    def beacon(self, t: float) -> bool:
        """The hub's signed time beacon: restores an untrusted clock, in one step with the check.
        A beacon older than the highest time already trusted is a stale retained copy."""
        with self._lock:
            if not self._untrusted or t < self.floor:
                return False
            self._restore(t)
        log.warning("clock: restored from the hub's time beacon")
        return True

    def persist(self) -> None:
        """Write floor and state; call inside a store write transaction."""
        with self._lock:
            floor, state = self.floor, self.state
        self._store.set_meta("clock_floor", repr(floor))
        self._store.set_meta("clock_state", state)
