"""The panel's own thread: the last decision for ``result_seconds``, then the idle screen
with the venue and a clock, an alarm banner while a device is out of order.

Rendering takes milliseconds; doing it here keeps it off the decision path, and only the
newest request is drawn (a burst of decisions never queues stale panels).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from terminal.core.policy import REVIEW, VENUES

log = logging.getLogger(__name__)

VENUE_LABELS = dict(zip(VENUES, ("医院", "药店", "学校", "公交", "商场", "政务大厅", "景区", "工地", "车站")))


class ScreenLoop:
    def __init__(self, cfg, screen, alarms):
        """``screen``: a backend (``size``, ``show(image)``, ``close()``); None opens the configured one."""
        from terminal.screen import open_screen
        from terminal.screen.render import Renderer

        sc = cfg.screen
        self.screen = screen if screen is not None else open_screen(sc.kind, sc.path, sc.width, sc.height)
        self.renderer = Renderer(self.screen.size, large_print=sc.large_print)
        self.configure(cfg)
        self.alarms = alarms  # () -> list of alarm texts (devices out of order, disk full)
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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)
        self.screen.close()

    def show_result(self, result, gate: str | None = None) -> None:
        """``gate``: what became of the gate (``"fault"``: an allow shown as 请联系工作人员开门)."""
        with self._cond:
            self._pending = ("result", (result, gate))
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
            try:
                if pending is not None:
                    kind, payload = pending
                    if kind == "result":
                        r, gate = payload
                        image = self.renderer.result(Panel(r.decision, r.reason, r.name, r.method,
                                                           self._alarm(), datetime.now(), gate))
                    else:
                        image = self.renderer.result(Panel(REVIEW, payload, None, None, self._alarm(),
                                                           datetime.now()))
                    self._until = time.monotonic() + self.result_seconds
                    last_idle = None
                elif time.monotonic() >= self._until:
                    key = (int(time.time()), self._alarm())
                    if key == last_idle:
                        continue
                    last_idle = key
                    image = self.renderer.idle(self.venue, datetime.now(), key[1])
                else:
                    continue
                self.screen.show(image)
                self.shown += 1
            except Exception:  # a panel failure must never stop the terminal deciding
                log.exception("screen: could not show a panel")
                time.sleep(1)
