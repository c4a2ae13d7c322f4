"""The scan engine the daemon polls: one :class:`ScanRead` per presentation of a code.

:class:`ScanEngine` is the loop both connections share: lines from the device, their codes
(:class:`~drivers.scanner.protocol.LineParser`), the engine's repeats folded
(:class:`~drivers.scanner.protocol.RepeatFold`). :class:`SerialScanner` gets its lines from a
serial line (UART or USB-CDC, through :class:`~drivers.serial_link.SerialLink`);
:class:`drivers.scanner.hid.HidScanner` from a keyboard-mode engine.

A line that stops half-way and stays quiet for ``line_gap`` seconds lost its end: it is dropped,
never glued to the front of the next code.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers.scanner.framing import SUFFIXES, LineDecoder
from drivers.scanner.protocol import REPEAT_WINDOW, LineParser, RepeatFold, decode
from drivers.serial_link import LinkDown, SerialLink

LINE_GAP = 0.5  # s of silence that ends a partial line; 9600 baud sends ~1 byte per ms
MAX_WAITING = 16  # codes read but not yet polled; a flood beyond that keeps the newest


@dataclass(frozen=True)
class ScanRead:
    text: str
    at: float  # the clock's time when the code's line ended (time.monotonic by default)


class ScanEngine:
    """``poll(timeout)``: the next new presentation's code, or None by the timeout. Raises
    :class:`~drivers.serial_link.LinkDown` if the device was still away when the wait ended
    (it is reopened with backoff; poll never busy-loops on a missing device)."""

    RETRY = 0.1  # s between reopen attempts while the device is away (the backoff paces them)

    def __init__(self, *, prefix: str = "", gap: float = REPEAT_WINDOW, line_gap: float = LINE_GAP,
                 clock: Callable[[], float] = time.monotonic):
        self.parser = LineParser(prefix)
        self.fold = RepeatFold(gap)
        self.line_gap = line_gap
        self._clock = clock
        self._ready: deque[ScanRead] = deque(maxlen=MAX_WAITING)
        self._last_input = 0.0
        self.lines_in = None  # the subclass's line source (its decoder): counts over-long lines

    def _lines(self, timeout: float) -> list[str]:
        """Complete lines that arrive within ``timeout`` s ([] if none); LinkDown if the device
        is away."""
        raise NotImplementedError

    def _quiet_mid_line(self, got_input: bool, in_line: bool) -> bool:
        """After a read: has a partial line stayed quiet for longer than ``line_gap``? Only an
        empty read can say so — input the device sent while nobody was reading sits in the
        kernel's buffer and is read first, so it never looks like silence."""
        now = self._clock()
        if got_input:
            self._last_input = now
            return False
        return in_line and now - self._last_input >= self.line_gap

    def _wait(self, timeout: float, in_line: bool) -> float:
        """How long one read may wait: mid-line no longer than ``line_gap``, so the silence that
        ends a partial line is seen before the next code's bytes can be glued to it."""
        return min(timeout, self.line_gap) if in_line else timeout

    def poll(self, timeout: float) -> ScanRead | None:
        deadline = self._clock() + timeout
        while not self._ready:
            down: LinkDown | None = None
            try:
                lines = self._lines(max(0.0, deadline - self._clock()))
            except LinkDown as e:
                down, lines = e, []
            now = self._clock()
            for line in lines:
                text = self.parser.code(line)
                if text is not None and self.fold.is_new(text, now):
                    self._ready.append(ScanRead(text, now))
            if self._ready:
                break
            remaining = deadline - now
            if remaining <= 0:
                if down is not None:
                    raise down
                return None
            if down is not None:
                time.sleep(min(self.RETRY, remaining))
        return self._ready.popleft()

    def dropped(self) -> dict[str, int]:
        """Lines that carried no code, by why: the clue to a wrong prefix or suffix setting."""
        return {"without the prefix": self.parser.banners, "garbage": self.parser.garbage,
                "over 4 KiB": self.lines_in.long_lines}

    def close(self) -> None:
        raise NotImplementedError


class SerialScanner(ScanEngine):
    """A scan engine on a serial line: ``url`` a device path, a pty or ``socket://host:port``."""

    def __init__(self, url: str, baudrate: int = 9600, *, prefix: str = "", suffix: str = "cr",
                 gap: float = REPEAT_WINDOW, line_gap: float = LINE_GAP, backoff_min: float = 0.2,
                 backoff_max: float = 5.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(prefix=prefix, gap=gap, line_gap=line_gap, clock=clock)
        if suffix not in SUFFIXES:
            raise ValueError(f"suffix must be one of {', '.join(SUFFIXES)}, not {suffix!r}")
        self.link = SerialLink(url, baudrate, backoff_min=backoff_min, backoff_max=backoff_max,
                               clock=clock)
        self.decoder = self.lines_in = LineDecoder(SUFFIXES[suffix])

    def _lines(self, timeout: float) -> list[str]:
        try:
            data = self.link.read(4096, self._wait(timeout, self.decoder.in_line))
        except LinkDown:
            self.decoder.resync()  # the rest of a line in flight is gone with the port
            raise
        if self._quiet_mid_line(bool(data), self.decoder.in_line):
            self.decoder.resync()
        return [decode(line) for line in self.decoder.feed(data)]

    def close(self) -> None:
        self.link.close()
