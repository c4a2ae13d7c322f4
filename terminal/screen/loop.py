"""The panel's own thread: the last decision for ``result_seconds``, then the idle screen
with the venue and a clock, an alarm banner while a device is out of order.

Rendering takes milliseconds; doing it here keeps it off the decision path, and only the
newest request is drawn (a burst of decisions never queues stale panels).

The screen is a device like the others: one that cannot be opened (no framebuffer yet, a PNG
directory that cannot be made) or fails to show is ``screen_down``, and the terminal decides on
without it. This thread opens it again with the jittered backoff (drivers/backoff.py); a
framebuffer says its own size, so the renderer is made anew if it differs from the configured one.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from drivers.backoff import backoff_delay
from terminal.core.policy import REVIEW, VENUES

log = logging.getLogger(__name__)

VENUE_LABELS = dict(zip(VENUES, ("医院", "药店", "学校", "公交", "商场", "政务大厅", "景区", "工地", "车站")))


# Retry delays for a screen that cannot be opened, seconds (jittered, doubling).
REOPEN_MIN, REOPEN_MAX = 0.5, 5.0
NAME = "screen"  # in DeviceStatus: the alarm screen_down


class ScreenLoop:
    def __init__(self, cfg, screen, alarms, devices, prompt):
        """``screen``: a backend (``size``, ``show(image)``, ``close()``, optionally ``error``);
        None opens the configured one. ``devices``: the DeviceStatus its failures go to.
        ``prompt``: () -> what the idle screen asks for (the inputs working now).
        A configuration error (ValueError) or a missing font (FontError) raises here."""
        from terminal.screen.render import Renderer

        sc = cfg.screen
        self._spec = (sc.kind, sc.path, sc.width, sc.height)
        self._devices = devices
        self._failures = 0
        self._next_open = 0.0
        self.screen = screen if screen is not None else self._open()
        self._large_print = sc.large_print
        self.renderer = Renderer(self.screen.size if self.screen is not None else (sc.width, sc.height),
                                 large_print=sc.large_print)
        self.configure(cfg)
        self.alarms = alarms  # () -> list of alarm texts (devices out of order, disk full)
        self.prompt = prompt
        self._cond = threading.Condition()
        self._pending = None        # (kind, payload) to draw next
        self._until = 0.0           # monotonic time the current result stays up to
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="screen", daemon=True)
        self.shown = 0

    def configure(self, cfg) -> None:
        """Venue name and timing (at start, and on a reload)."""
        self.venue = cfg.venue_name or VENUE_LABELS.get(cfg.venue, cfg.venue)
        self.result_seconds = cfg.screen.result_seconds
        self.pulse_wait = cfg.relay.pulse_ms / 1000 + 1.0  # a pulse not out by then never will be

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)
        if self.screen is not None:
            self.screen.close()

    def _open(self):
        """The configured backend, or None (screen_down, retried later with backoff)."""
        from terminal.screen import FramebufferError, open_screen
        try:
            screen = open_screen(*self._spec)
        except (FramebufferError, OSError) as e:
            self._next_open = time.monotonic() + backoff_delay(self._failures, base=REOPEN_MIN,
                                                               cap=REOPEN_MAX, floor=0.5)
            self._failures += 1
            self._devices.fail(NAME, str(e))
            return None
        self._failures = 0
        self._devices.ok(NAME)
        return screen

    def _reopen(self) -> bool:
        """On the screen's thread: try again once the backoff allows; True once it is open."""
        from terminal.screen.render import Renderer
        if self.screen is None and time.monotonic() >= self._next_open:
            self.screen = self._open()
            if self.screen is not None:
                log.warning("screen %s is open again", self._spec[1] or self._spec[0])
                if self.screen.size != self.renderer.size:
                    self.renderer = Renderer(self.screen.size, large_print=self._large_print)
        return self.screen is not None

    def _shown(self) -> None:
        """A backend's ``show`` never raises: it says whether its last image got out in ``error``."""
        error = getattr(self.screen, "error", None)
        if error is None:
            self._devices.ok(NAME)
        else:
            self._devices.fail(NAME, error)

    def show_result(self, result, pulse=None) -> None:
        """``pulse``: the allow's ``drivers.relay.PulseOutcome``. Its panel says 请通行 only once the
        pulse went out; one that did not (or not within the pulse's length) is shown as an allow
        at a shut gate, 请联系工作人员开门, like an event recorded as gate "fault"."""
        with self._cond:
            self._pending = ("result", (result, pulse))
            self._cond.notify()

    def notice(self, key: str) -> None:
        """A screen-only notice (``texts.CARD_UNREAD``, ``texts.SYSTEM_ERROR``) on an amber panel."""
        with self._cond:
            self._pending = ("notice", key)
            self._cond.notify()

    def _alarm(self) -> str | None:
        alarms = self.alarms()
        return "、".join(alarms) if alarms else None

    def _run(self) -> None:
        from terminal.screen.render import Panel

        last_idle = None
        while True:
            with self._cond:
                now = time.monotonic()
                wait = (self._until - now) if self._until > now else 1.0 - (time.time() % 1.0)
                if self._pending is None and not self._stop:
                    self._cond.wait(max(0.01, wait))
                if self._stop:
                    return
                pending, self._pending = self._pending, None
            if not self._reopen():
                continue  # nothing to draw on: the request is dropped, the next one is newer
            try:
                if pending is not None:
                    kind, payload = pending
                    if kind == "result":
                        r, pulse = payload
                        gate = r.gate if pulse is None or pulse.wait(self.pulse_wait) else "fault"
                        image = self.renderer.result(Panel(r.decision, r.reason, r.name, r.method,
                                                           self._alarm(), datetime.now(), gate))
                    else:
                        image = self.renderer.result(Panel(REVIEW, payload, None, None, self._alarm(),
                                                           datetime.now()))
                    self._until = time.monotonic() + self.result_seconds
                    last_idle = None
                elif time.monotonic() >= self._until:
                    key = (int(time.time()), self._alarm(), self.prompt())
                    if key == last_idle:
                        continue
                    last_idle = key
                    image = self.renderer.idle(self.venue, datetime.now(), key[1], key[2])
                else:
                    continue
                self.screen.show(image)
                self._shown()
                self.shown += 1
            except Exception:  # a panel failure must never stop the terminal deciding
                log.exception("screen: could not show a panel")
                time.sleep(1)
