"""A serial line that survives being unplugged: open by URL, reopen with jittered backoff.

Every serial device (ID-card SAM, social-security reader, gate relay) talks through a
:class:`SerialLink`. The URL is anything pyserial's ``serial_for_url`` takes: ``/dev/ttyUSB0``,
``/dev/gate/idcard`` (udev name), a pseudo-terminal path, or ``socket://127.0.0.1:7001``.

A failed open or I/O error closes the port and raises :class:`LinkDown`; the next call reopens
it, but not before the backoff delay has passed, so a missing reader costs the caller nothing
but a quick exception, never a busy loop.
"""
from __future__ import annotations

import termios
import time

import serial

from drivers.backoff import backoff_delay

# A hung-up tty (adapter unplugged, pty master closed) fails tcflush/tcdrain with
# termios.error, which is neither OSError nor SerialException.
_IO_ERRORS = (serial.SerialException, OSError, termios.error)


class LinkDown(Exception):
    """The port is closed (unplugged, never opened, I/O error); try again later."""


class SerialLink:
    def __init__(self, url: str, baudrate: int = 115200, *, backoff_min: float = 0.2,
                 backoff_max: float = 5.0, clock=time.monotonic):
        self.url = url
        self.baudrate = baudrate
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._clock = clock
        self._port: serial.SerialBase | None = None
        self._failures = 0
        self._next_try = 0.0
        self.last_error: str | None = None
        self.opens = 0  # successful opens, for status and tests

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open now if closed; raise LinkDown while the backoff delay runs or the open fails."""
        if self._port is not None:
            return
        now = self._clock()
        if now < self._next_try:
            raise LinkDown(f"{self.url}: {self.last_error or 'not open'} (retrying)")
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.05,
                                         write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as e:
            self._fail(f"cannot open: {e}")
            raise LinkDown(f"{self.url}: {self.last_error}") from None
        self._port = port
        self._failures = 0
        self.last_error = None
        self.opens += 1

    def _fail(self, why: str) -> None:
        self.last_error = why
        self._failures += 1
        self._next_try = self._clock() + backoff_delay(self._failures - 1, base=self._backoff_min,
                                                       cap=self._backoff_max, floor=0.5)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        # pyserial's socket:// backend skips socket.close() when shutdown() fails, as it does
        # on a connection the far end reset: close the socket ourselves (closing twice is a no-op).
        sock = getattr(port, "_socket", None)
        try:
            port.close()
        except _IO_ERRORS:
            pass
        if sock is not None:
            sock.close()

    def _io_error(self, e: Exception) -> LinkDown:
        self.close()
        self._fail(f"I/O error: {e}")
        return LinkDown(f"{self.url}: {self.last_error}")

    def write(self, data: bytes) -> None:
        self.open()
        try:
            self._port.write(data)
            self._port.flush()
        except _IO_ERRORS as e:
            raise self._io_error(e) from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Return up to ``max_bytes`` available within ``timeout`` seconds (b"" if none)."""
        self.open()
        port = self._port
        deadline = self._clock() + timeout
        try:
            while True:
                waiting = port.in_waiting
                if waiting:
                    return port.read(min(waiting, max_bytes))
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return b""
                port.timeout = min(remaining, 0.05)
                chunk = port.read(1)
                if chunk:
                    more = port.in_waiting
                    return chunk + (port.read(min(more, max_bytes - 1)) if more and max_bytes > 1 else b"")
        except (*_IO_ERRORS, TypeError) as e:
            # pyserial raises TypeError from os.read on a port closed under it.
            raise self._io_error(e) from None

    def reset_input(self) -> None:
        """Drop whatever is buffered (after a timeout, before a new request)."""
        if self._port is None:
            return
        try:
            self._port.reset_input_buffer()
        except _IO_ERRORS as e:
            raise self._io_error(e) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
