"""A scan engine in USB HID keyboard mode, read with python-evdev (devices.md §6).

The engine shows up as an input device (``/dev/input/by-id/usb-…-event-kbd``). It is *grabbed*
(EVIOCGRAB) so its key presses reach this reader only — never a console or a desktop where a
code would be typed into whatever has the focus. Key presses become lines in
:mod:`drivers.scanner.keymap`; lines become codes and presentations in :class:`ScanEngine`.

Unplugged (the read fails with ENODEV), missing or grabbed by another program: the device is
closed and reopened after a jittered backoff, the caller gets LinkDown meanwhile.
"""
from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from drivers.backoff import backoff_delay
from drivers.scanner.keymap import EV_KEY, KeyDecoder
from drivers.scanner.protocol import REPEAT_WINDOW
from drivers.scanner.reader import LINE_GAP, ScanEngine
from drivers.serial_link import LinkDown


def open_evdev(path: str) -> Any:
    """The input device at ``path``, grabbed (an ``evdev.InputDevice``)."""
    import evdev  # only a keyboard-mode engine needs it
    dev = evdev.InputDevice(path)
    try:
        dev.grab()
    except OSError:
        dev.close()
        raise
    return dev


class HidScanner(ScanEngine):
    """``open_device(path)`` returns a grabbed device with ``fileno()``, ``read()`` (the pending
    events; BlockingIOError when none), ``ungrab()`` and ``close()`` — evdev's by default."""

    def __init__(self, device: str, *, prefix: str = "", gap: float = REPEAT_WINDOW,
                 line_gap: float = LINE_GAP, backoff_min: float = 0.2, backoff_max: float = 5.0,
                 open_device: Callable[[str], Any] = open_evdev,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(prefix=prefix, gap=gap, line_gap=line_gap, clock=clock)
        self.path = device
        self.keys = self.lines_in = KeyDecoder()
        self._open_device = open_device
        self._backoff = (backoff_min, backoff_max)
        self._dev: Any = None
        self._failures = 0
        self._next_try = 0.0
        self.last_error: str | None = None
        self.opens = 0

    def _device(self) -> Any:
        if self._dev is None:
            if self._clock() < self._next_try:
                raise LinkDown(f"{self.path}: {self.last_error} (retrying)")
            try:
                self._dev = self._open_device(self.path)
            except OSError as e:
                raise self._down(f"cannot open: {e.strerror or e}") from None
            self._failures, self.last_error = 0, None
            self.opens += 1
        return self._dev

    def _down(self, why: str) -> LinkDown:
        self.close()
        self.keys.resync()
        self.last_error = why
        self._failures += 1
        self._next_try = self._clock() + backoff_delay(self._failures - 1, base=self._backoff[0],
                                                       cap=self._backoff[1], floor=0.5)
        return LinkDown(f"{self.path}: {why}")

    def _lines(self, timeout: float) -> list[str]:
        dev = self._device()
        events = []
        try:
            if select.select([dev], [], [], self._wait(timeout, self.keys.in_line))[0]:
                events = list(dev.read())
        except BlockingIOError:
            pass
        except OSError as e:  # ENODEV: unplugged
            raise self._down(f"I/O error: {e.strerror or e}") from None
        if self._quiet_mid_line(bool(events), self.keys.in_line):
            self.keys.resync()
        lines = []
        for ev in events:
            if ev.type == EV_KEY and (line := self.keys.feed(ev.code, ev.value)) is not None:
                lines.append(line)
        return lines

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            for release in (dev.ungrab, dev.close):
                try:
                    release()
                except OSError:
                    pass  # already gone with the device
