"""The daemon at the door: inputs → presentations → decision → event → gate and screen.

Threads, and why each exists:

    camera   newest frame from the grabber → QR decode → new presentations   (CPU: never on
             the decision path, never blocking a card read)
    id_card  ID-card reader poll → one presentation per card placed          (serial I/O)
    ss_card  social-security reader poll → likewise
    decide   the one place that decides and writes: verify → event committed → gate pulse
             (only on allow, only after the commit) → screen
    screen   renders and shows panels (result, then idle with a clock) so a slow panel
             never delays the next person

Inputs hand presentations to ``decide`` through a bounded queue. A device that fails or
disappears is marked out of order (log once, alarm on the screen), retried by its own
driver, and the other inputs keep working. Stopping (SIGTERM): the inputs stop first, the
presentations already taken are decided, then the relay is switched off and ports closed.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drivers.cards import CardError, CardRead, CardReader, ReaderError
from drivers.serial_link import LinkDown
from terminal.cardstatus import NoHub, StatusSource
from terminal.config import Config
from terminal.policy import ALLOW
from terminal.presentation import QrPresentations
from terminal.screen import texts
from terminal.verifier import Result, SetupError, Verifier

log = logging.getLogger(__name__)

LABELS = {"camera": "摄像头", "id_card": "身份证读卡器", "ss_card": "社保卡读卡器", "relay": "闸机继电器"}


@dataclass(frozen=True)
class Presentation:
    method: str                 # "qr" | "id_card" | "ss_card"
    started_ns: int             # monotonic ns of the frame, or of the card read's completion
    text: str | None = None
    card: CardRead | None = None


class DeviceStatus:
    """Which devices are out of order: logged on every change, shown as alarms on the screen."""

    def __init__(self):
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}

    def ok(self, name: str) -> None:
        with self._lock:
            was = self._errors.pop(name, None)
        if was is not None:
            log.warning("device %s is back", name)

    def fail(self, name: str, why: str) -> None:
        with self._lock:
            was = self._errors.get(name)
            self._errors[name] = why
        if was is None:
            log.error("device %s out of order: %s", name, why)

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    def alarms(self) -> list[str]:
        return [f"{LABELS.get(n, n)}故障" for n in sorted(self.errors())]


class Daemon:
    def __init__(self, cfg: Config, *, state_dir: Path | None = None, camera=None,
                 id_reader: CardReader | None = None, ss_reader: CardReader | None = None,
                 relay=None, screen=None, status_source: StatusSource | None = None,
                 on_result: Callable[[Presentation, Result], None] | None = None):
        """Devices not passed in are opened from ``cfg``; tests and the simulator pass their own."""
        self.cfg = cfg
        self._state_dir = state_dir
        self.camera = camera
        self.readers = {"id_card": id_reader, "ss_card": ss_reader}
        self.relay = relay
        self.screen = screen
        self.status_source = status_source or NoHub()
        self.on_result = on_result
        self.devices = DeviceStatus()
        self.verifier: Verifier | None = None
        self._queue: queue.Queue[Presentation] = queue.Queue(maxsize=64)
        self._stop_inputs = threading.Event()
        self._inputs_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._decider: threading.Thread | None = None
        self.decided = 0

    # --- setup ------------------------------------------------------------------
    def open(self) -> None:
        """Open store, trust state and every configured device; SetupError names what is wrong.

        A device that is merely absent (a reader unplugged, no camera yet) is not a setup
        error: its driver retries with backoff and the others start deciding.
        """
        from drivers.camera import CameraError
        from drivers.relay import open_relay
        from terminal.screen import FontError, FramebufferError
        from terminal.screen_loop import ScreenLoop

        self.verifier = Verifier.open(self.cfg, self._state_dir)
        dev = self.cfg.devices
        try:
            if self.camera is None and dev["camera"]["source"]:
                self.camera = _open_camera(dev["camera"])
            for kind in ("id_card", "ss_card"):
                if self.readers[kind] is None and dev[kind]["port"]:
                    self.readers[kind] = _open_reader(kind, dev[kind]["port"], dev[kind]["baud"])
            if self.relay is None:
                self.relay = open_relay(dev["relay"]["kind"], dev["relay"]["port"])
            self.screen_loop = ScreenLoop(self.cfg, self.screen, self.devices)
        except (CameraError, FontError, FramebufferError, ValueError, OSError) as e:
            self.verifier.close()
            raise SetupError(f"{self.cfg.path}: {e}") from None

    # --- running ----------------------------------------------------------------
    def start(self) -> None:
        if self.verifier is None:
            self.open()
        self.screen_loop.start()
        if self.camera is not None:
            self.camera.start()
            self._spawn("camera", self._camera_loop)
        for kind, reader in self.readers.items():
            if reader is not None:
                self._spawn(kind, self._card_loop, kind, reader)
        self._decider = threading.Thread(target=self._decide_loop, name="decide", daemon=True)
        self._decider.start()
        log.info("terminal %s at a %s is deciding (camera: %s, readers: %s, relay: %s)",
                 self.cfg.terminal_id, self.cfg.venue, "yes" if self.camera else "no",
                 ", ".join(k for k, r in self.readers.items() if r) or "none",
                 self.cfg.devices["relay"]["kind"])

    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking presentations, decide those already taken, then close everything."""
        self._stop_inputs.set()
        for t in self._threads:
            t.join(timeout)
        self._inputs_done.set()
        if self._decider is not None:
            self._decider.join(timeout)
        if self.camera is not None:
            self.camera.stop()
        for reader in self.readers.values():
            if reader is not None:
                reader.close()
        if self.relay is not None:
            self.relay.close()
        self.screen_loop.stop()
        if self.verifier is not None:
            self.verifier.close()
        log.info("terminal stopped after %d presentations", self.decided)

    def _put(self, p: Presentation) -> None:
        try:
            self._queue.put(p, timeout=5)
        except queue.Full:  # the decider is wedged: say so rather than block a reader forever
            log.error("presentation dropped: the decision queue is full")

    def _camera_loop(self) -> None:
        from drivers.qrdecode import decode
        tracker = QrPresentations(self.cfg.devices["camera"]["gap"])
        last = 0
        while not self._stop_inputs.is_set():
            frame = self.camera.wait_newer(last, timeout=0.5)
            if frame is None:
                err = self.camera.error
                if err:
                    self.devices.fail("camera", err)
                continue
            self.devices.ok("camera")
            last = frame.counter
            texts = decode(frame.image).texts
            for text in tracker.observe(texts, frame.ts):
                self._put(Presentation("qr", int(frame.ts * 1e9), text=text))

    def _card_loop(self, kind: str, reader: CardReader) -> None:
        while not self._stop_inputs.is_set():
            try:
                card = reader.poll(0.5)
            except (LinkDown, ReaderError) as e:
                self.devices.fail(kind, str(e))
                self._stop_inputs.wait(0.5)
                continue
            except CardError as e:
                self.devices.ok(kind)
                log.warning("%s: card not read: %s", kind, e)
                self.screen_loop.notice(texts.CARD_UNREAD)
                continue
            self.devices.ok(kind)
            if card is not None:
                self._put(Presentation(kind, time.monotonic_ns(), card=card))

    def _decide_loop(self) -> None:
        while True:
            try:
                p = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._inputs_done.is_set():
                    return
                continue
            try:
                self._decide(p)
            except Exception:  # a bug must cost one presentation, not the terminal
                log.exception("presentation by %s could not be decided", p.method)
                self.screen_loop.notice(texts.SYSTEM_ERROR)

    def _decide(self, p: Presentation) -> None:
        if p.method == "qr":
            r = self.verifier.verify(p.text, started_ns=p.started_ns)
        else:
            r = self.verifier.verify_card(p.card, self.status_source, started_ns=p.started_ns)
        # The event is committed: only now may the gate open.
        if r.decision == ALLOW:
            self.relay.pulse(self.cfg.devices["relay"]["pulse_ms"])
        self.decided += 1
        self.screen_loop.show_result(r)
        if self.on_result is not None:
            self.on_result(p, r)


def _open_camera(cam: dict):
    from drivers.camera import FrameGrabber, open_source
    if cam["source"] == "sim" or cam["source"].startswith("sim:"):
        from sim.camera import open_source as open_sim
        return FrameGrabber(open_sim(cam["source"]))
    return FrameGrabber(open_source(cam["source"], width=cam["width"], height=cam["height"], fps=cam["fps"]))


def _open_reader(kind: str, port: str, baud: int) -> CardReader:
    if kind == "id_card":
        from drivers.idcard.reader import IdCardReader
        return IdCardReader(port, baudrate=baud)
    from drivers.sscard.reader import SsCardReader
    return SsCardReader(port, baudrate=baud)
