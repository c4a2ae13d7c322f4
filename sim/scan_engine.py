"""A virtual 2D scan engine in serial mode (docs/protocol/devices.md §6), on a pseudo-terminal
or a TCP port (:class:`sim.serial_endpoint.SerialEndpoint`).

    engine = VirtualScanEngine(prefix="]Q", suffix="crlf", repeat=0.5).start()
    scanner = SerialScanner(engine.url, prefix="]Q", suffix="crlf")
    engine.show("SDHC1:…")     # a phone under the engine: sent now, again every 0.5 s
    engine.clear()             # taken away

It writes the bytes a real engine writes, ``prefix text suffix`` per decoded code, built here
and not with the driver's code. Fault knobs: ``faults`` (the endpoint's line faults: ``garbage``
before each code, ``chunk_size``/``chunk_delay`` split writes, ``truncate_next``, ``mute``),
``banner`` (power-on text sent before the first code after every (re)connection), ``repeat``
(seconds between repeats while in view; None: once), ``decode_delay`` (the engine's own time
to decode), and ``unplug()``/``replug()``.
"""
from __future__ import annotations

import threading
import time
from typing import Literal

from sim.serial_endpoint import LineFaults, SerialEndpoint

SUFFIX_BYTES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
BANNER = "NLS-EM20 V2.3.1 boot ok"  # what such an engine prints at power-on: no prefix


class VirtualScanEngine:
    def __init__(self, *, kind: Literal["pty", "tcp"] = "pty", prefix: str = "", suffix: str = "cr",
                 repeat: float | None = None, decode_delay: float = 0.0, banner: str | None = None):
        self.prefix = prefix
        self.suffix = SUFFIX_BYTES[suffix]
        self.repeat = repeat
        self.decode_delay = decode_delay
        self.banner = banner
        self.endpoint = SerialEndpoint(self, kind)
        self._cond = threading.Condition()
        self._text: str | None = None  # in view
        self._due = 0.0                # when it is sent next
        self._banner_due = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent: list[tuple[str, float]] = []  # (text, monotonic time) of every code written

    # -- the endpoint's handler (its thread) ----------------------------------------------
    def received(self, data: bytes) -> bytes:
        return b""  # an engine in this mode takes no commands

    def reset(self) -> None:
        with self._cond:
            self._banner_due = True  # powered up again: it will say so

    # -- control ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def faults(self) -> LineFaults:
        return self.endpoint.faults

    def start(self) -> "VirtualScanEngine":
        self.endpoint.start()
        self._thread = threading.Thread(target=self._run, name="sim-scan-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.endpoint.stop()

    def __enter__(self) -> "VirtualScanEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def unplug(self) -> None:
        self.endpoint.unplug()

    def replug(self) -> None:
        self.endpoint.replug()

    def show(self, text: str) -> None:
        """A code comes into view: decoded after ``decode_delay``, then repeated while in view."""
        with self._cond:
            self._text, self._due = text, time.monotonic() + self.decode_delay
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._text = None

    def first_sent_after(self, text: str, t: float) -> float | None:
        """When ``text`` was first written at or after ``t`` (None: not yet)."""
        with self._cond:
            return next((at for sent, at in self.sent if sent == text and at >= t), None)

    # -- the engine (its thread) ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self._text is None or time.monotonic() < self._due):
                    self._cond.wait(None if self._text is None else self._due - time.monotonic())
                if self._stopping:
                    return
                text = self._text
                banner, self._banner_due = self._banner_due and self.banner, False
                if self.repeat is None:
                    self._text = None
                else:
                    self._due += self.repeat
            data = (banner.encode() + self.suffix if banner else b"") + \
                (self.prefix + text).encode() + self.suffix
            at = time.monotonic()
            self.endpoint.emit(data)
            with self._cond:
                self.sent.append((text, at))

