"""The scan engine's thread: poll the engine → one presentation per code presented.

A code from the scan engine is decided exactly like one the camera read: the event's method is
``qr`` (docs/protocol/hub.md has no other for a code), the presentation's ``source`` says
``scanner``. The engine's repeats of a code still in view are folded in the driver
(``drivers/scanner/protocol.py``), so each presentation here is a person, decided once.
"""
from __future__ import annotations

import threading
from typing import Callable

from drivers.serial_link import LinkDown
from terminal.core.presentation import Presentation


class ScannerInput:
    name = "scanner"

    def __init__(self, engine, put: Callable[[Presentation], None], devices, watchdog, metrics):
        """``engine``: a ``drivers.scanner.ScanEngine`` (serial or keyboard mode)."""
        self.engine = engine
        self._put = put
        self._devices = devices
        self._watchdog = watchdog
        self._metrics = metrics
        self.thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.engine.close()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                read = self.engine.poll(0.5)
            except LinkDown as e:  # unplugged or not there yet: the driver reopens it with backoff
                self._watchdog.progress(self.name)
                self._devices.fail(self.name, str(e))
                stop.wait(0.5)
                continue
            self._watchdog.progress(self.name)
            self._devices.ok(self.name)
            if read is not None:
                self._metrics.presented("qr")
                self._put(Presentation("qr", int(read.at * 1e9), text=read.text, source="scanner"))
