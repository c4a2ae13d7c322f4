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
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from drivers.cards import CardError, CardRead, CardReader, ReaderError
from drivers.serial_link import LinkDown
from terminal import diskguard, retention
from terminal.cardstatus import NoHub, StatusSource
from terminal.cmd_status import WRITE_EVERY, StatusFile
from terminal.diskguard import DiskGuard
from terminal.metrics import Metrics
from terminal.config import Config
from terminal.policy import ALLOW
from terminal.presentation import QrPresentations
from terminal.screen import texts
from terminal.sdnotify import Notifier, Watchdog
from terminal.verifier import Result, SetupError, Verifier

if TYPE_CHECKING:
    from terminal.hub.updates import DataKey

log = logging.getLogger(__name__)

LABELS = {"camera": "摄像头", "id_card": "身份证读卡器", "ss_card": "社保卡读卡器", "relay": "闸机继电器"}


@dataclass(frozen=True)
class Presentation:
    method: str                 # "qr" | "id_card" | "ss_card"
    started_ns: int             # monotonic ns of the frame, or of the card read's completion
    text: str | None = None
    card: CardRead | None = None
    health: object = None       # a card's status, asked on the reader's thread (see _card_loop)


class _Asked:
    """The answer a card's reader thread already got: the decision thread never waits on the hub."""

    def __init__(self, health):
        self.health = health

    def lookup(self, method, id_number, name, now):
        return self.health


class DeviceStatus:
    """Which devices are out of order: logged and counted on every change, shown as alarms."""

    def __init__(self, metrics=None):
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._metrics = metrics

    def ok(self, name: str) -> None:
        with self._lock:
            was = self._errors.pop(name, None)
        if was is not None:
            log.warning("device %s is back", name)
            if self._metrics:
                self._metrics.device_up(name)

    def fail(self, name: str, why: str) -> None:
        with self._lock:
            was = self._errors.get(name)
            self._errors[name] = why
        if was is None:
            log.error("device %s out of order: %s", name, why)
            if self._metrics:
                self._metrics.device_error(name)

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    def alarms(self) -> list[str]:
        return [f"{LABELS.get(n, n)}故障" for n in sorted(self.errors())]


class Daemon:
    def __init__(self, cfg: Config, *, state_dir: Path | None = None, camera=None,
                 id_reader: CardReader | None = None, ss_reader: CardReader | None = None,
                 relay=None, screen=None, status_source: StatusSource | None = None,
                 on_result: Callable[[Presentation, Result], None] | None = None,
                 notifier: Notifier | None = None):
        """Devices not passed in are opened from ``cfg``; tests and the simulator pass their own.
        ``notifier`` talks to systemd (a no-op outside it)."""
        self.cfg = cfg
        self._state_dir = state_dir
        self.camera = camera
        self.readers = {"id_card": id_reader, "ss_card": ss_reader}
        self.relay = relay
        self.screen = screen
        self.status_source = status_source or NoHub()
        self.on_result = on_result
        self.notifier = notifier or Notifier(env={})
        self.watchdog = Watchdog(self.notifier)
        self.metrics = Metrics()
        self.devices = DeviceStatus(self.metrics)
        self.verifier: Verifier | None = None
        self.hub = None  # terminal.hub.HubLink when [hub] broker is set
        self._metrics_server = None
        # Updates from the hub (trust list, policy, data keys, time) are applied by the decide
        # thread between two presentations, never under a presentation being decided.
        self._updates: queue.SimpleQueue = queue.SimpleQueue()
        self._reconnects_seen = 0
        self._rejected_seen: dict[str, int] = {}
        self._queue: queue.Queue[Presentation] = queue.Queue(maxsize=64)
        self._stop_inputs = threading.Event()
        self._ready = threading.Event()
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
        self._file_keys = dict(self.verifier.data_keys)
        self._hub_keys: dict[int, DataKey] = {}
        store = self.verifier.store
        self.disk = DiskGuard(store.state_dir)
        self.disk.ensure_reserve()
        self.status_file = StatusFile(store.state_dir, self.cfg.terminal_id)
        self.metrics.watch_outbox(store.outbox_depth, store.oldest_unsynced_at)
        dev = self.cfg.devices
        try:
            if self.cfg.hub.get("broker"):
                self._open_hub()
            if self.camera is None and dev["camera"]["source"]:
                self.camera = _open_camera(dev["camera"])
            for kind in ("id_card", "ss_card"):
                if self.readers[kind] is None and dev[kind]["port"]:
                    self.readers[kind] = _open_reader(kind, dev[kind]["port"], dev[kind]["baud"])
            if self.relay is None:
                self.relay = open_relay(dev["relay"]["kind"], dev["relay"]["port"])
            self.screen_loop = ScreenLoop(self.cfg, self.screen, self.alarms)
            if self.cfg.metrics_listen:
                self._metrics_server = self.metrics.serve(self.cfg.metrics_listen)
        except (CameraError, FontError, FramebufferError, ValueError, OSError) as e:
            self.verifier.close()
            raise SetupError(f"{self.cfg.path}: {e}") from None

    def _open_hub(self) -> None:
        from terminal.hub import HubLink, HubStatusSource, load_persisted
        from terminal.hub.link import SWITCH_INTERVAL
        from terminal.keyfiles import KeyFileError, load_private_key
        from terminal.statuscache import StatusCache, cache_key

        # With the pump and paho's threads beside it, a verification that released the GIL for
        # its fsync would wait up to the default 5 ms to get it back (benchmarks/bench_drain.py).
        sys.setswitchinterval(SWITCH_INTERVAL)
        v = self.verifier
        try:
            device_key = load_private_key(self.cfg.device_key)
        except KeyFileError as e:
            raise SetupError(str(e)) from None
        kept = load_persisted(v.store, self.cfg, device_key)
        if kept.policy:
            v.hub_policy = kept.policy
        if kept.data_keys:
            self._hub_keys = kept.data_keys
            self._apply_data_keys()

        def later(fn):
            return lambda value: self._updates.put(lambda: fn(value))

        def keys(hub_keys: dict[int, DataKey]) -> None:
            self._hub_keys = hub_keys
            self._apply_data_keys()

        def beacon(t: float) -> None:
            # A beacon older than the highest time already trusted is a stale retained copy.
            if v.clock.state == "untrusted" and t >= v.clock.floor:
                log.warning("clock: restored from the hub's time beacon")
                v.clock.restore(t)

        self.hub = HubLink(self.cfg, v.store, device_key,
                           on_trust=later(lambda tl: setattr(v, "trust", tl)),
                           on_policy=later(lambda venues: setattr(v, "hub_policy", venues)),
                           on_data_keys=later(keys), on_time=later(beacon),
                           clock_state=lambda: v.clock.state,
                           on_alive=lambda: self.watchdog.progress("hub-net"))
        self.status_source = HubStatusSource(self.hub, StatusCache(v.store, cache_key(device_key)), self.cfg,
                                             policy=v.policy)

    def _apply_data_keys(self) -> None:
        """The data-key file's keys and the hub's, on the decision thread (or before it starts).
        The hub's word wins for a dkid it names, its ``not_after`` included: past it the verifier
        refuses that dkid (``unknown_data_key``), whichever source also holds a key for it."""
        v = self.verifier
        v.data_keys = {**self._file_keys, **{dkid: k.key for dkid, k in self._hub_keys.items()}}
        v.data_key_not_after = {dkid: k.not_after for dkid, k in self._hub_keys.items()}

    def reload(self, cfg: Config) -> None:
        """SIGHUP: a new configuration's policy, venue, trust list and data keys, applied between
        two presentations; the devices (and the camera's stream) stay as they are."""
        def apply() -> None:
            from terminal.keyfiles import KeyFileError, load_data_keys
            from terminal.verifier import load_trust
            v = self.verifier
            try:
                trust = load_trust(v.store, cfg)
                file_keys = load_data_keys(cfg.data_keys)
            except (SetupError, KeyFileError) as e:
                log.error("reload refused, keeping the running configuration: %s", e)
                return
            for issuer in trust.issuers.values():
                issuer.public_key.precompute()
            if cfg.devices != self.cfg.devices or cfg.hub != self.cfg.hub:
                log.warning("reload: device and hub settings take effect at the next restart")
                cfg.devices, cfg.hub = self.cfg.devices, self.cfg.hub
            self._file_keys = file_keys
            v.cfg, v.trust = cfg, trust
            self._apply_data_keys()
            self.cfg = cfg
            self.screen_loop.configure(cfg)
            log.warning("reload: configuration %s applied (venue %s, trust list seq %d)", cfg.path, cfg.venue,
                        trust.seq)
        self._updates.put(apply)

    def alarms(self) -> list[str]:
        """What the screen's alarm banner says: devices out of order, a full disk."""
        return self.devices.alarms() + ([diskguard.ALARM] if self.disk.alarm else [])

    def summary(self) -> str:
        """One line for systemd's STATUS= and the log."""
        down = ", ".join(sorted(self.devices.errors())) or "none"
        return (f"{self.decided} decided; outbox {self.verifier.store.outbox_depth()}; "
                f"clock {self.verifier.clock.state}; devices down: {down}")

    # --- running ----------------------------------------------------------------
    def start(self) -> None:
        if self.verifier is None:
            self.open()
        self.screen_loop.start()
        for name in ["decide", "store"] + (["camera"] if self.camera else []) + \
                [k for k, r in self.readers.items() if r] + (["hub-net"] if self.hub is not None else []):
            self.watchdog.watch(name)
        if self.camera is not None:
            self.camera.start()
            self._spawn("camera", self._camera_loop)
        for kind, reader in self.readers.items():
            if reader is not None:
                self._spawn(kind, self._card_loop, kind, reader)
        self._decider = threading.Thread(target=self._decide_loop, name="decide", daemon=True)
        self._decider.start()
        if self.hub is not None:
            self.hub.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        self._housekeeper.start()
        if self.camera is not None:  # the camera opens on its grabber thread: let it try first
            end = time.monotonic() + 5
            while time.monotonic() < end and self.camera.latest() is None and not self.camera.error:
                time.sleep(0.05)
        # READY only now: store, trust state and every configured device are open (or known
        # absent and being retried); the watchdog pings only from here on.
        self.notifier.ready(self.summary())
        self._ready.set()
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
            self.watchdog.unwatch(t.name)
        self._inputs_done.set()
        if self._decider is not None:
            self._decider.join(timeout)
        self._housekeeper.join(timeout)
        if self.hub is not None:
            self.watchdog.unwatch("hub-net")
            self.hub.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
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
                if err:  # a failure its driver is retrying: not a hang
                    self.devices.fail("camera", err)
                    self.watchdog.progress("camera")
                continue
            self.watchdog.progress("camera")
            self.devices.ok("camera")
            last = frame.counter
            for text in tracker.observe(decode(frame.image).texts, frame.ts):
                self.metrics.presented("qr")
                self._put(Presentation("qr", int(frame.ts * 1e9), text=text))

    def _card_loop(self, kind: str, reader: CardReader) -> None:
        while not self._stop_inputs.is_set():
            try:
                card = reader.poll(0.5)
            except (LinkDown, ReaderError) as e:
                self.watchdog.progress(kind)
                self.devices.fail(kind, str(e))
                self._stop_inputs.wait(0.5)
                continue
            except CardError as e:
                self.watchdog.progress(kind)
                self.devices.ok(kind)
                log.warning("%s: card not read: %s", kind, e)
                self.screen_loop.notice(texts.CARD_UNREAD)
                continue
            self.watchdog.progress(kind)
            self.devices.ok(kind)
            if card is not None:
                started = time.monotonic_ns()
                self.metrics.presented(kind)
                # Ask the hub here, on this reader's thread: a slow hub (up to query_timeout) must
                # not hold up the camera's presentations queued behind this one.
                now = self.verifier.clock.now()
                health = None
                if now:
                    try:
                        health = self.status_source.lookup(kind, card.id_number, card.name, now)
                    except Exception:  # costs this card its answer (offline_unknown), not the reader
                        log.exception("%s: card status lookup failed; deciding without an answer", kind)
                self._put(Presentation(kind, started, card=card, health=health))

    def _decide_loop(self) -> None:
        while True:
            # The watchdog pings from here: a wedged decision loop stops the pings.
            self.watchdog.progress("decide")
            if self._ready.is_set():
                self.watchdog.tick()
            while not self._updates.empty():
                self._updates.get()()
            try:
                p = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._inputs_done.is_set():
                    self.watchdog.unwatch("decide")
                    return
                continue
            try:
                self._decide(p)
            except Exception:  # a bug must cost one presentation, not the terminal
                log.exception("presentation by %s could not be decided", p.method)
                self.screen_loop.notice(texts.SYSTEM_ERROR)

    def _verify(self, p: Presentation) -> Result:
        if p.method == "qr":
            return self.verifier.verify(p.text, started_ns=p.started_ns)
        return self.verifier.verify_card(p.card, _Asked(p.health), started_ns=p.started_ns)

    def _decide(self, p: Presentation) -> None:
        try:
            r = self._verify(p)
        except sqlite3.OperationalError as e:
            # A failed commit rolled back whole; with a full disk the reserve makes room once.
            if not self.disk.on_write_error(e):
                raise
            try:
                r = self._verify(p)
            except sqlite3.OperationalError:
                log.error("presentation by %s not committed: disk full; gate stays shut", p.method)
                self.screen_loop.notice(texts.SYSTEM_ERROR)
                return
        # The event is committed: only now may the gate open.
        if r.decision == ALLOW:
            self.relay.pulse(self.cfg.devices["relay"]["pulse_ms"])
        if self.hub is not None:
            self.hub.notify()
        self.decided += 1
        self.screen_loop.show_result(r)
        self.metrics.decided(r.method, r.decision, r.reason, r.latency_ms)
        self.status_file.record(r, time.time())
        if self.on_result is not None:
            self.on_result(p, r)

    def _housekeeping(self) -> None:
        """Every few seconds: store health (for the watchdog), disk, status file and STATUS=;
        hourly: retention of synced events and expired nonces."""
        next_purge = 0.0
        while not self._inputs_done.wait(WRITE_EVERY):
            try:
                store = self.verifier.store
                store.checkpoint()
                if diskguard.probe(store):
                    self.watchdog.progress("store")
                self.metrics.storage_alarm(self.disk.check())
                self.metrics.clock(self.verifier.clock.state)
                if time.monotonic() >= next_purge:
                    retention.purge(store, self.cfg.retention_days, self.verifier.clock.now())
                    next_purge = time.monotonic() + retention.PURGE_EVERY
                self.status_file.write(
                    devices={**{n: None for n in self._device_names()}, **self.devices.errors()},
                    hub=self._hub_status(), clock=self.verifier.clock.state,
                    storage={"alarm": self.disk.alarm, "free_bytes": diskguard.free_bytes(store.state_dir)})
                self.notifier.status(self.summary())
            except Exception:  # housekeeping must never take the terminal down
                log.exception("housekeeping failed")
        self.watchdog.unwatch("store")

    def _hub_status(self) -> dict:
        if self.hub is None:
            return {"state": "off"}
        st = self.hub.status()
        self.metrics.hub_connected(st["connected"])
        # the link counts since start; the metrics take the increments since the last look
        self.metrics.reconnected(st["reconnects"] - self._reconnects_seen)
        self._reconnects_seen = st["reconnects"]
        for kind, n in st["rejected"].items():
            self.metrics.rejected_update(kind, n - self._rejected_seen.get(kind, 0))
            self._rejected_seen[kind] = n
        return {"state": "connected" if st["connected"] else "disconnected", "last_sync_at": st["last_sync_at"],
                "reconnects": st["reconnects"], "in_flight_batches": st["in_flight_batches"],
                "rejected": st["rejected"], "down_for": st["down_for"], "alarms": st["alarms"]}

    def _device_names(self) -> list[str]:
        return (["camera"] if self.camera else []) + [k for k, r in self.readers.items() if r] + \
            (["relay"] if self.cfg.devices["relay"]["kind"] != "none" else [])


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
