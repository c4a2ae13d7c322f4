"""The camera's thread: newest frame from the grabber → QR decode → new presentations.

QR decoding is the terminal's heaviest CPU work; it runs here, never on the decision path and
never in the way of a card read. The grabber (``drivers.camera.FrameGrabber``) runs its own
thread that reads the device and keeps only the newest frame.
"""
from __future__ import annotations

import threading
from typing import Callable

from terminal.core.presentation import Presentation, QrPresentations


class CameraInput:
    name = "camera"

    def __init__(self, grabber, gap: float, put: Callable[[Presentation], None], devices, watchdog, metrics):
        self.grabber = grabber
        self._tracker = QrPresentations(gap)  # confined to this input's thread
        self._put = put
        self._devices = devices
        self._watchdog = watchdog
        self._metrics = metrics
        self.thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        """Start the grabber, then the decode loop until ``stop`` is set."""
        self.grabber.start()
        self.thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.grabber.stop()

    def _run(self, stop: threading.Event) -> None:
        from drivers.qrdecode import decode
        last = 0
        while not stop.is_set():
            frame = self.grabber.wait_newer(last, timeout=0.5)
            if frame is None:
                err = self.grabber.error
                if err:  # a failure its driver is retrying: not a hang
                    self._devices.fail(self.name, err)
                    self._watchdog.progress(self.name)
                continue
            self._watchdog.progress(self.name)
            self._devices.ok(self.name)
            last = frame.counter
            for text in self._tracker.observe(decode(frame.image).texts, frame.ts):
                self._metrics.presented("qr")
                self._put(Presentation("qr", int(frame.ts * 1e9), text=text, source="camera"))
