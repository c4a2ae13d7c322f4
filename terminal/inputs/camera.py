"""The camera's thread: newest frame from the grabber → QR decode → new presentations.

QR decoding is the terminal's heaviest CPU work; it runs here, never on the decision path and
never in the way of a card read. The grabber (``drivers.camera.FrameGrabber``) runs its own
thread that reads the device and keeps only the newest frame.

While no code is being read, a frame now and then is looked at for a code in view that does not
decode (``drivers.qrview``): where the decoders located one, every ``LOOK_EVERY`` s; a search of
its own when they located none, every ``SEARCH_EVERY`` s. Every frame also tells
``drivers.presence`` whether something is in view, and since when. The weaker evidence — part of
a code (``Decoded.partial``) or OpenCV's search — counts only while something is: on an empty
counter they are phantoms of its texture, and the search costs nothing while nobody is there.
``terminal.core.guidance`` turns that into hints on the screen and, 10 s after presenting
began, an ``unreadable`` presentation.
"""
from __future__ import annotations

import threading
from typing import Callable

from terminal.core.guidance import CodeWatch, Hint, Unreadable
from terminal.core.presentation import Presentation, QrPresentations

LOOK_EVERY = 0.2    # s between looks at a code the decoders located and could not read: hints need no more
SEARCH_EVERY = 0.2  # s between OpenCV searches (~11 ms each) when they located none and something is in view


class CameraInput:
    name = "camera"

    def __init__(self, grabber, gap: float, put: Callable[[Presentation], None], guide: Callable[[str], None],
                 devices, watchdog, metrics):
        """``guide``: show a hint (``terminal.core.guidance`` key) to the person at the camera."""
        self.grabber = grabber
        self._tracker = QrPresentations(gap)  # confined to this input's thread, as is the watch
        self._watch = CodeWatch(gap)
        self._put = put
        self._guide = guide
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
        from drivers.presence import Presence
        from drivers.qrdecode import decode, to_gray
        from drivers.qrview import look
        presence = Presence()
        last, looked, searched = 0, 0.0, 0.0
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
            gray = to_gray(frame.image)  # once: the decoders, presence and qrview all read grey
            decoded = decode(gray)
            for text in self._tracker.observe(decoded.texts, frame.ts):
                self._metrics.presented("qr")
                self._put(Presentation("qr", int(frame.ts * 1e9), text=text, source="camera"))
            present_since = presence.update(gray, frame.ts)
            partial = decoded.partial if present_since is not None else ()
            reading, found, view = self._tracker.in_view > 0, bool(decoded.found or partial), None
            if not reading and found and frame.ts - looked >= LOOK_EVERY:
                looked = frame.ts
                view = look(gray, decoded.found, partial)
            elif not reading and not found and present_since is not None and frame.ts - searched >= SEARCH_EVERY:
                searched = frame.ts
                view = look(gray)
                found = view is not None
            step = self._watch.frame(frame.ts, reading=reading, found=found, view=view,
                                     short_side=min(frame.image.shape[:2]), present_since=present_since)
            if isinstance(step, Hint):
                self._metrics.guided(step.cause)
                self._guide(step.key)
            elif isinstance(step, Unreadable):
                self._metrics.presented("qr")
                self._put(Presentation("qr", int(step.since * 1e9), unreadable=True, source="camera"))
