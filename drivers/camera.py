"""Camera frames: sources (a V4L2 camera, image files, a video file) and the grabber thread.

A :class:`FrameSource` hands out pictures one at a time, blocking until the next is there.
The :class:`FrameGrabber` reads a source as fast as it delivers and keeps ONLY the newest
frame, stamped with the monotonic time it arrived and a counter. Readers ask for "the newest
frame after the one I had" (:meth:`FrameGrabber.latest`, never blocks) or wait for one
(:meth:`FrameGrabber.wait_newer`), so a decision is never made on a picture that sat in a
buffer while the decoder was busy. A camera that fails or disappears is closed, reported in
:attr:`FrameGrabber.error` and reopened with jittered exponential backoff, forever.
"""
from __future__ import annotations

import glob
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from drivers.backoff import backoff_delay

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp"}


class CameraError(Exception):
    """The camera cannot be opened or stopped delivering (unplugged, busy, unreadable file)."""


class EndOfStream(CameraError):
    """A finite source (files played once, a scripted virtual camera) has nothing more."""


class FrameSource(ABC):
    """One picture at a time, 8-bit BGR ``(h, w, 3)``; ``read`` blocks until the next one."""

    name: str = "camera"

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or files; raise :class:`CameraError` if that is impossible now."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """The next picture; raise :class:`CameraError` if the source failed, :class:`EndOfStream`
        when a finite source is exhausted."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""


class _Pacer:
    """Hands out frame slots at ``fps`` so that file playback runs at camera speed."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self.period:
            return
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # Never "catch up" with a burst after a stall: the grabber would drop it anyway.
        self._next = max(self._next, time.monotonic() - self.period) + self.period


class V4L2Source(FrameSource):
    """A UVC camera through OpenCV's V4L2 backend, by path (``/dev/video0``, a udev name) or
    index. MJPG is asked for because a USB 2 camera sends raw YUYV 1280×720 at only ~10 fps."""

    def __init__(self, device: str | int, width: int = 640, height: int = 480, fps: float = 30.0,
                 fourcc: str | None = "MJPG"):
        self.device = device
        self.name = str(device)
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._cap: cv2.VideoCapture | None = None
        self.actual: tuple[int, int, float] | None = None   # what the driver agreed to

    def open(self) -> None:
        if self._cap is not None:
            return
        if isinstance(self.device, str) and not os.path.exists(self.device):
            raise CameraError(f"{self.device}: no such device")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.device}: cannot open (busy, not a camera, or no permission)")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)   # fewer driver buffers: less latency to drain
        self.actual = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                       float(cap.get(cv2.CAP_PROP_FPS)))
        self._cap = cap

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise CameraError(f"{self.name}: not open")
        ok, img = self._cap.read()
        if not ok or img is None or img.size == 0:
            raise CameraError(f"{self.name}: no frame (camera unplugged or stalled)")
        return img

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ImageFileSource(FrameSource):
    """Still images played as a camera at ``fps`` (0: as fast as read), in order, looping."""

    def __init__(self, paths: list[str], fps: float = 30.0, loop: bool = True):
        if not paths:
            raise CameraError("no image files given")
        self.paths = list(paths)
        self.name = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1})"
        self.fps, self.loop = fps, loop
        self._index = 0
        self._pacer: _Pacer | None = None

    def open(self) -> None:
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise CameraError(f"{missing[0]}: no such file")
        self._pacer = _Pacer(self.fps)

    def read(self) -> np.ndarray:
        if self._pacer is None:
            raise CameraError(f"{self.name}: not open")
        if self._index >= len(self.paths):
            if not self.loop:
                raise EndOfStream(f"{self.name}: all images played")
            self._index = 0
        path = self.paths[self._index]
        self._index += 1
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise CameraError(f"{path}: not a readable image")
        self._pacer.wait()
        return img

    def close(self) -> None:
        self._pacer = None


class VideoFileSource(FrameSource):
    """A recorded video played as a camera, at the file's frame rate unless ``fps`` is given."""

    def __init__(self, path: str, fps: float | None = None, loop: bool = True):
        self.path = self.name = path
        self.fps, self.loop = fps, loop
        self._cap: cv2.VideoCapture | None = None
        self._pacer: _Pacer | None = None

    def open(self) -> None:
        if self._cap is not None:
            return
        if not os.path.isfile(self.path):
            raise CameraError(f"{self.path}: no such file")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.path}: not a readable video")
        fps = self.fps if self.fps is not None else cap.get(cv2.CAP_PROP_FPS) or 30.0
        self._cap, self._pacer = cap, _Pacer(fps)

    def read(self) -> np.ndarray:
        if self._cap is None or self._pacer is None:
            raise CameraError(f"{self.name}: not open")
        ok, img = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self._cap.read()
        if not ok or img is None:
            raise EndOfStream(f"{self.name}: end of video")
        self._pacer.wait()
        return img

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def open_source(spec: str | int, *, width: int = 640, height: int = 480, fps: float = 30.0) -> FrameSource:
    """A source from a config string: a camera index (``0``) or device path (``/dev/video0``,
    ``/dev/v4l/by-id/...``), a video file, or image files (paths, comma-separated, globs)."""
    if isinstance(spec, int) or spec.isdigit():
        return V4L2Source(int(spec), width, height, fps)
    if spec.startswith("/dev/"):
        return V4L2Source(spec, width, height, fps)
    paths: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
        if not matches:
            raise CameraError(f"{part}: no files match")
        paths += matches
    if not paths:
        raise CameraError("empty camera source")
    if all(os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS for p in paths):
        return ImageFileSource(paths, fps)
    if len(paths) == 1:
        return VideoFileSource(paths[0])
    raise CameraError(f"{spec}: give either image files or one video file")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    counter: int      # 1, 2, 3 ... over the grabber's whole life, across reopens
    ts: float         # time.monotonic() when the source delivered it


class FrameGrabber:
    """Reads ``source`` on a thread and keeps only the newest :class:`Frame`.

    ``error`` is the last failure (None while frames flow); ``stall_after`` seconds without a
    frame also count as a failure, since a wedged driver can block in ``read`` for a long time.
    """

    def __init__(self, source: FrameSource, *, backoff_min: float = 0.2, backoff_max: float = 5.0,
                 stall_after: float = 2.0):
        self.source = source
        self._backoff_min, self._backoff_max = backoff_min, backoff_max
        self._stall_after = stall_after
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._counter = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.opens = 0          # successful opens of the source
        self.failures = 0       # failed opens and reads
        self.ended = False      # a finite source ran out; the thread has stopped

    def start(self) -> "FrameGrabber":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"grabber {self.source.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "FrameGrabber":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def error(self) -> str | None:
        with self._cond:
            if self._error is None and self._frame is not None and not self.ended:
                age = time.monotonic() - self._frame.ts
                if age > self._stall_after:
                    return f"{self.source.name}: no frame for {age:.1f} s"
            return self._error

    def latest(self, after: int = 0) -> Frame | None:
        """The newest frame if its counter is above ``after``, else None. Never blocks."""
        with self._cond:
            f = self._frame
            return f if f is not None and f.counter > after else None

    def wait_newer(self, after: int = 0, timeout: float = 1.0) -> Frame | None:
        """Wait up to ``timeout`` s for a frame newer than ``after``; the newest one, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None or self._frame.counter <= after:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or self.ended:
                    return None
                self._cond.wait(left)
            return self._frame

    def _run(self) -> None:
        src = self.source
        failures_in_row = 0
        opened = False
        try:
            while not self._stop.is_set():
                try:
                    if not opened:
                        src.open()
                        opened = True
                        self.opens += 1
                    img = src.read()
                    if not isinstance(img, np.ndarray) or img.size == 0:
                        raise CameraError(f"{src.name}: empty frame")
                except EndOfStream as e:
                    self._set_error(str(e))
                    self.ended = True
                    return
                except Exception as e:   # noqa: BLE001 - any driver failure means: reopen later
                    msg = str(e) if isinstance(e, CameraError) else f"{src.name}: {type(e).__name__}: {e}"
                    self._set_error(msg)
                    self.failures += 1
                    failures_in_row += 1
                    if opened:
                        self._close_quietly()
                        opened = False
                    self._stop.wait(backoff_delay(failures_in_row - 1, base=self._backoff_min,
                                                  cap=self._backoff_max, floor=0.5))
                    continue
                failures_in_row = 0
                ts = time.monotonic()
                with self._cond:
                    self._counter += 1
                    self._frame = Frame(img, self._counter, ts)
                    self._error = None
                    self._cond.notify_all()
        finally:
            if opened:
                self._close_quietly()
            with self._cond:
                self._cond.notify_all()

    def _set_error(self, msg: str) -> None:
        with self._cond:
            self._error = msg
            self._cond.notify_all()

    def _close_quietly(self) -> None:
        try:
            self.source.close()
        except Exception:   # noqa: BLE001 - closing a vanished device may fail; it is gone anyway
            pass
