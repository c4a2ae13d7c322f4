"""The daemon at the door: inputs → presentations → decision → event → gate and screen.

This module opens the terminal, starts and stops it, and runs the decide loop; each input,
the housekeeping and the hub link have a class of their own (terminal/inputs/,
terminal/housekeeping.py, terminal/hub/bridge.py) that the daemon wires together.

Threads — every object used by more than one thread is confined to one or locked:

    thread         module                     owns (only this thread touches it)
    main           commands/run.py, here      open/start/stop; signals; SIGHUP → reload() queues
                                              the new config for decide; restart_requested (a
                                              remote restart) ends its loop
    decide         here (_decide_loop)        the Verifier: its trust list, policies, data keys
                                              (changed only by Verifier.apply, here, between two
                                              presentations), the store's write transactions,
                                              relay.pulse, StatusFile.record, the update queue;
                                              the pending review (Verifier.pending) staff may confirm;
                                              remote ops' tasks (reload, gate_test, open_gate)
    camera         inputs/camera.py           QrPresentations, CodeWatch, the QR decoders and qrview
    scanner        inputs/scanner.py          the scan engine: its port or input device, its
                                              line decoder and repeat folding
    grabber …      drivers/camera.py          the frame source; hands the newest frame over under
                                              its Condition
    id_card        inputs/cards.py            its reader and serial link; asks the hub's status
    ss_card        inputs/cards.py            source (HubStatusSource: locked counters, the store's
                                              lock for its cache) before queueing the presentation
    screen         screen/loop.py             renderer, panel and the screen backend (opened again
                                              while screen_down); requests under its Condition;
                                              waits on an allow's PulseOutcome before drawing it
    audio          audio/output.py            the audio sink (aplay's process); the newest request
                                              under its Condition (latest wins)
    housekeeping   housekeeping.py            checkpoints, retention, StatusFile.write, STATUS=,
                                              HubBridge.report (metric deltas)
    hub-pump       hub/link.py                the outbox pump, acks, signed updates (queued for
                                              decide as update values); admits remote commands
                                              (hub/commands.py) and runs the quick ops (remote.py)
    diagnostics,   remote.py                  one short-lived thread per upload, update check or
    update-check,                             gate test's wait for its pulse; they answer
    gate-test                                 through the link (paho's publish is thread-safe)
    hub-net, paho  hub/link.py                the MQTT connection; callbacks only queue and assign
    metrics        ops/metrics.py (prometheus) reads collectors; outbox depth on the store's own
                                              read connection
    relay …        drivers/relay.py           the relay's port; pulses under its Condition; settles
                                              each PulseOutcome (a failed one calls
                                              Daemon._pulse_failed: DeviceStatus, the log; the
                                              spoken outcome is requested from here too)
    updater        update/updater.py          rollouts (queued by hub-pump), fetch, install, switch,
                                              result reports; check_now on its caller's thread, locked
    health         update/health.py           a release on trial: health_problems() until good
                                              (the self-test decision is queued for decide)

    shared by several threads, and what guards it:
    presentation queue (inputs → decide)      queue.Queue, bounded
    update queue (hub-pump, main → decide)    queue.SimpleQueue
    ClockGuard (decide, cards, housekeeping,  its lock (now() moves the floor)
      hub-pump)
    StatusFile (decide records, housekeeping  its lock
      writes)
    Store (decide, housekeeping, hub-pump,    its RLock; the outbox reader its own lock
      cards' status cache, metrics)
    DeviceStatus, DiskGuard, Watchdog,        their locks
      Notifier, Alarms, RemoteOps
    Daemon.cfg, Verifier.cfg / trust / policy replaced whole on decide, never changed in place:
      / staff / keys (read by cards,          a reader sees the old object or the new one
      housekeeping)

Inputs hand presentations to ``decide`` through a bounded queue. A device that fails or
disappears is marked out of order (log once, alarm ``<device>_down``: terminal/alarms.py),
retried by its own driver, and the other inputs keep working. The relay is watched by its
driver (every command, and its idle line); decide reads what the driver knows before each
commit: an allow at a relay known down is recorded as ``gate: "fault"`` and shown as
请联系工作人员开门, never 请通行. Stopping (SIGTERM): the inputs stop first, the
presentations already taken are decided, then the relay is switched off and ports closed.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from drivers.cards import CardReader
from terminal import alarms as alarm_names
from terminal.alarms import Alarms, age_text
from terminal.audio.prompts import NOTICE_PROMPTS
from terminal.config import Config
from terminal.core.cardstatus import NoHub, StatusSource
from terminal.core.policy import ALLOW, DENY
from terminal.core.presentation import Presentation
from terminal.core.staff import Staff, is_staff_qr
from terminal.housekeeping import Housekeeping
from terminal.inputs.camera import CameraInput
from terminal.inputs.cards import CardInput
from terminal.inputs.devices import DeviceStatus
from terminal.inputs.scanner import ScannerInput
from terminal.ops.metrics import Metrics
from terminal.ops.recentlog import RecentLog
from terminal.ops.sdnotify import Notifier, Watchdog
from terminal.screen import texts
from terminal.state import diskguard
from terminal.state.diskguard import DiskGuard
from terminal.state.statusfile import WRITE_EVERY, StatusFile
from terminal.remote import RemoteOps
from terminal.verifier import Reconfigure, Result, SetupError, Update, Verifier

log = logging.getLogger(__name__)

SELF_TEST = object()  # queued for the decide thread: decide SELF_TEST_TEXT once
SELF_TEST_TEXT = "HC1:SELF-TEST"  # not a token: must be denied


class _Task:
    """Work for the decide thread, queued with the updates (a remote command's op)."""

    def __init__(self, run: Callable[[], None]):
        self.run = run


class Daemon:
    def __init__(self, cfg: Config, *, state_dir: Path | None = None, camera=None,
                 id_reader: CardReader | None = None, ss_reader: CardReader | None = None,
                 scanner=None, relay=None, screen=None, audio_sink=None,
                 status_source: StatusSource | None = None,
                 on_result: Callable[[Presentation, Result], None] | None = None,
                 on_guidance: Callable[[str], None] | None = None, notifier: Notifier | None = None):
        """Devices not passed in are opened from ``cfg`` through the backend registries
        (terminal/inputs/registry.py); tests and the simulator pass their own.
        ``notifier`` talks to systemd (a no-op outside it); ``on_result`` and ``on_guidance`` (a
        hint's key, on the camera's thread: must not block) let the simulator watch."""
        self.cfg = cfg
        self._state_dir = state_dir
        self.camera = camera
        self.readers = {"id_card": id_reader, "ss_card": ss_reader}
        self.scanner = scanner
        self.relay = relay
        self.screen = screen
        self._audio_sink = audio_sink
        self.audio = None   # terminal.audio.output.AudioOut unless [audio] kind is "none"
        self.status_source = status_source or NoHub()
        self.on_result = on_result
        self.on_guidance = on_guidance
        self.notifier = notifier or Notifier(env={})
        self.watchdog = Watchdog(self.notifier)
        self.metrics = Metrics()
        self.devices = DeviceStatus(self.metrics)
        self.alarms = Alarms()  # every alarm's one source (fleet.md "Alarms")
        self.housekeeping_every = WRITE_EVERY  # tests shorten it
        # Remote commands (terminal/remote.py). open_gate(command) -> (ok, detail), run on the
        # decide thread, is the staff override's entry point (None: answered "not_available");
        # `update` asks self.updater (below) to check_now.
        self.recent_log = RecentLog()
        self.remote = RemoteOps(self, self.recent_log)
        self.open_gate: Callable[[object], tuple[bool, object]] | None = self._remote_override
        self.verifier: Verifier | None = None
        self.bridge = None  # terminal.hub.bridge.HubBridge when [hub] broker is set
        self.hub = None     # ... and its HubLink
        self._metrics_server = None
        # Updates to the verifier (from the hub; a reloaded config from SIGHUP) are applied by
        # the decide thread between two presentations, never under a presentation being decided.
        self._updates: queue.SimpleQueue[Update | Config | _Task] = queue.SimpleQueue()
        self._queue: queue.Queue[Presentation] = queue.Queue(maxsize=64)
        self._stop_inputs = threading.Event()
        self._ready = threading.Event()
        self._inputs_done = threading.Event()
        self._inputs: list[CameraInput | CardInput | ScannerInput] = []
        self._decider: threading.Thread | None = None
        self._housekeeping: Housekeeping | None = None
        self.decided = 0
        self.updater = None   # terminal.update.updater.Updater when [update] prefix is set
        self._health = None   # ... and the new release's health window
        self.self_tested = False  # the decide loop has decided the self-test presentation
        # An update or a remote restart asks for a restart: commands/run.py stops the daemon and
        # exits with EXIT_RESTART, which systemd's Restart=on-failure starts again.
        self.restart_requested = threading.Event()

    # --- setup ------------------------------------------------------------------
    def open(self) -> None:
        """Open store, trust state and every configured device; SetupError names what is wrong.

        A device that is merely absent (a reader unplugged, no camera yet, no framebuffer yet, a
        relay unplugged) is not a setup error: its alarm is raised, it is retried with backoff
        and the others start deciding.
        """
        from drivers.camera import CameraError
        from terminal.crypto.keyfiles import KeyFileError
        from terminal.inputs import registry
        from terminal.screen import FontError
        from terminal.screen.loop import ScreenLoop

        self.verifier = Verifier.open(self.cfg, self._state_dir)
        store = self.verifier.store
        self.disk = DiskGuard(store.state_dir)
        self.disk.ensure_reserve()
        self.status_file = StatusFile(store.state_dir, self.cfg.terminal_id)
        self.metrics.watch_outbox(store.outbox_depth, store.oldest_unsynced_at)
        cfg = self.cfg
        try:
            if self.cfg.hub.broker:
                from terminal.hub.bridge import HubBridge
                try:
                    if cfg.update.prefix is not None:
                        self.updater = self._open_updater()
                    self.bridge = HubBridge.open(self.cfg, self.verifier, self._updates.put,
                                                 on_alive=lambda: self.watchdog.progress("hub-net"),
                                                 alarms=self.alarm_names, on_command=self.remote,
                                                 on_rollout=self.updater.on_rollout if self.updater else None)
                except KeyFileError as e:
                    raise SetupError(str(e)) from None
                self.hub, self.status_source = self.bridge.link, self.bridge.status_source
            if self.camera is None and cfg.camera.source:
                self.camera = registry.open_camera(cfg.camera)
            for kind, reader in (("id_card", cfg.id_card), ("ss_card", cfg.ss_card)):
                if self.readers[kind] is None and reader.port:
                    self.readers[kind] = registry.open_reader(kind, reader.port, reader.baud)
            if self.scanner is None and cfg.scanner.where:
                self.scanner = registry.open_scanner(cfg.scanner)
            if self.relay is None:
                self.relay = registry.open_relay(cfg.relay)
            self._add_alarm_sources()
            self.screen_loop = ScreenLoop(self.cfg, self.screen,
                                          lambda: texts.alarm_banner(self.alarms.active()), self.devices,
                                          self._idle_prompt)
            if self._audio_sink is not None or cfg.audio.kind != "none":
                from terminal.audio.output import open_audio
                sink = self._audio_sink or registry.open_audio_sink(cfg.audio)
                self.audio = open_audio(cfg.audio, store.state_dir / "audio", sink, self.devices)
            if self.cfg.metrics.listen:
                self._metrics_server = self.metrics.serve(self.cfg.metrics.listen)
        except (CameraError, FontError, ValueError, OSError) as e:
            self.verifier.close()
            raise SetupError(f"{self.cfg.path}: {e}") from None
        except SetupError:
            self.verifier.close()
            raise

    def _open_updater(self):
        from terminal.crypto.keyfiles import load_private_key
        from terminal.update.updater import Updater
        return Updater(self.cfg, load_private_key(self.cfg.device_key), restart=self.restart_requested.set,
                       publish=lambda payload: self.hub is not None and self.hub.publish_update(payload))

    def health_problems(self) -> list[str]:
        """What keeps a new release from being marked good (empty: healthy): READY sent, the
        watchdog fed, every configured device open, a self-test decision made."""
        problems = [] if self._ready.is_set() else ["READY not sent"]
        if not self.watchdog.fed:
            problems.append("watchdog not fed")
        problems += [f"{name} not open: {why}" for name, why in sorted(self.devices.errors().items())]
        if self.camera is not None and getattr(self.camera, "error", None):
            problems.append(f"camera not open: {self.camera.error}")
        if not self.self_tested:
            self._updates.put(SELF_TEST)  # decided on the decide thread, between two presentations
            problems.append("no self-test decision yet")
        return problems

    def _self_test(self) -> None:
        """Decide a presentation that must be refused, recording nothing: the decision path of
        this code works (parse, policy, decision)."""
        v = self.verifier
        a = v.assess(SELF_TEST_TEXT, v.clock.now(), v.policy())
        self.self_tested = a.decision == DENY
        if not self.self_tested:
            log.error("self-test: a malformed code was decided %s (%s), not deny", a.decision, a.reason)

    def reload(self, cfg: Config) -> None:
        """SIGHUP: a new configuration's policy, venue, trust list and data keys, applied between
        two presentations; the devices (and the camera's stream) stay as they are."""
        self._updates.put(cfg)

    def on_decide(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the decide thread between two presentations (remote commands)."""
        self._updates.put(_Task(task))

    def event_committed(self) -> None:
        """An event is in the outbox: wake the hub pump."""
        if self.bridge is not None:
            self.bridge.notify()

    def device_counters(self) -> dict:
        """For the diagnostics bundle: what is down and why, the devices' and hub's counters."""
        counts = {}
        for family in self.metrics.registry.collect():
            if family.name.startswith(("gate_device", "gate_presentations", "gate_decisions", "gate_hub",
                                       "gate_rejected", "gate_alarm")):
                for sample in family.samples:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    counts[f"{sample.name}{{{labels}}}"] = sample.value
        relay = {k: getattr(self.relay, k, None) for k in ("pulses", "failed_pulses", "error")}
        return {"down": self.devices.errors(), "metrics": counts, "relay": relay,
                "hub": self.hub.status() if self.hub is not None else None}

    def _reload(self, cfg: Config) -> None:
        self.apply_config(cfg)

    def apply_config(self, cfg: Config) -> str | None:
        """On the decide thread: the trust list is checked (and kept) through the store. Returns
        why the configuration was refused, or None once it is applied."""
        from terminal.crypto.keyfiles import KeyFileError, load_data_keys
        from terminal.verifier import load_trust
        v = self.verifier
        try:
            trust = load_trust(v.store, cfg)
            file_keys = load_data_keys(cfg.data_keys)
        except (SetupError, KeyFileError) as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            return str(e)
        for issuer in trust.issuers.values():
            issuer.public_key.precompute()
        kept = cfg.keeping_restart_settings(self.cfg)
        if kept is not cfg:
            log.warning("reload: device and hub settings take effect at the next restart")
            cfg = kept
        v.apply(Reconfigure(cfg, trust, file_keys))
        self.cfg = cfg
        self.screen_loop.configure(cfg)
        log.warning("reload: configuration %s applied (venue %s, trust list seq %d)", cfg.path, cfg.venue,
                    trust.seq)
        return None

    def _add_alarm_sources(self) -> None:
        """Each part that can go wrong, as a source of ``self.alarms`` (terminal/alarms.py)."""
        disk, clock, hub = self.disk, self.verifier.clock, self.hub
        self.alarms.add(self.devices.alarms)
        self.alarms.add(lambda: {alarm_names.DISK_LOW: f"disk (nearly) full: {diskguard.free_bytes(disk.state_dir) >> 20} "
                                 f"MiB free for {disk.state_dir}"} if disk.alarm else {})
        self.alarms.add(lambda: {alarm_names.CLOCK_UNTRUSTED: "the wall clock is not trusted; decisions that "
                                 "need the time say clock_untrusted"} if clock.state != "trusted" else {})
        if hub is not None:
            self.alarms.add(lambda: {name: f"no connection for {age_text(hub.down_for() or 0)}"
                                     for name in hub.alarms()})
        if self.updater is not None:
            self.alarms.add(self.updater.alarm)
        v, store = self.verifier, self.verifier.store
        self.alarms.add(lambda: alarm_names.outbox_backlog(store.oldest_unsynced_at(),
                                                           self.cfg.hub.alarm_outbox_minutes, time.time()))
        self.alarms.add(lambda: alarm_names.trust_stale(v.trust.next_update, self.cfg.trust.stale_grace_hours,
                                                        v.clock.now()))
        self.metrics.watch_alarms(alarm_names.NAMES, self.alarms.active)

    def relay_up(self) -> bool | None:
        """(decide thread) :meth:`_relay_up`, for a remote gate test."""
        return self._relay_up()

    def _idle_prompt(self) -> str:
        """The idle screen asks only for what the inputs working now can take."""
        down = self.devices.errors()

        def works(name: str, device) -> bool:
            return device is not None and name not in down
        # A code comes in through the camera or the scan engine: either working is enough to ask for one.
        return texts.idle_prompt(works("camera", self.camera) or works("scanner", self.scanner),
                                 works("id_card", self.readers["id_card"]), works("ss_card", self.readers["ss_card"]))

    def _relay_up(self) -> bool | None:
        """The relay as its driver last found it (None: no gate wired), kept in DeviceStatus."""
        if not self.relay.wired:
            return None
        error = self.relay.error
        if error is None:
            self.devices.ok("relay")
        else:
            self.devices.fail("relay", error)
        return error is None

    def alarm_names(self) -> list[str]:
        """The alarms by their fleet.md names, for the hub's ``state`` topic."""
        return list(self.alarms.active())

    def summary(self) -> str:
        """One line for systemd's STATUS= and the log."""
        down = ", ".join(sorted(self.devices.errors())) or "none"
        return (f"{self.decided} decided; outbox {self.verifier.store.outbox_depth()}; "
                f"clock {self.verifier.clock.state}; devices down: {down}")

    # --- running ----------------------------------------------------------------
    def start(self) -> None:
        if self.verifier is None:
            self.open()
        logging.getLogger().addHandler(self.recent_log)
        self.screen_loop.start()
        if self.audio is not None:
            self.audio.start()
        if self.camera is not None:
            self._inputs.append(CameraInput(self.camera, self.cfg.camera.gap, self._put, self._guide,
                                            self.devices, self.watchdog, self.metrics))
        if self.scanner is not None:
            self._inputs.append(ScannerInput(self.scanner, self._put, self.devices, self.watchdog, self.metrics))
        for kind, reader in self.readers.items():
            if reader is not None:
                self._inputs.append(CardInput(kind, reader, self._put, now=self.verifier.clock.now,
                                              status_source=self.status_source,
                                              unread=lambda: self._notice(texts.CARD_UNREAD),
                                              devices=self.devices, watchdog=self.watchdog, metrics=self.metrics,
                                              is_staff=lambda id_number: id_number in self.verifier.staff))
        for name in ["decide", "store"] + [i.name for i in self._inputs] + (["hub-net"] if self.bridge else []):
            self.watchdog.watch(name)
        for i in self._inputs:
            i.start(self._stop_inputs)
        self._decider = threading.Thread(target=self._decide_loop, name="decide", daemon=True)
        self._decider.start()
        if self.bridge is not None:
            self.bridge.start()
        self._housekeeping = Housekeeping(
            store=self.verifier.store, clock=self.verifier.clock, disk=self.disk, status_file=self.status_file,
            devices=self.devices, device_names=self._device_names(), hub=self.bridge, alarms=self.alarms,
            metrics=self.metrics,
            watchdog=self.watchdog, notifier=self.notifier, retention_days=lambda: self.cfg.retention.days,
            summary=self.summary, every=self.housekeeping_every)
        self._housekeeping.start(self._inputs_done)
        if self.camera is not None:  # the camera opens on its grabber thread: let it try first
            end = time.monotonic() + 5
            while time.monotonic() < end and self.camera.latest() is None and not self.camera.error:
                time.sleep(0.05)
        # READY only now: store, trust state and every configured device are open (or known
        # absent and being retried); the watchdog pings only from here on.
        self.notifier.ready(self.summary())
        self._ready.set()
        if self.updater is not None:
            from terminal.update.health import HealthWindow
            self.updater.start()
            self._health = HealthWindow(self.updater.prefix, self.updater.version, self.health_problems)
            if self._health.start():
                log.warning("update: release %s is on trial; health window running", self.updater.version)
        log.info("terminal %s at a %s is deciding (camera: %s, scan engine: %s, readers: %s, relay: %s)",
                 self.cfg.terminal_id, self.cfg.venue, "yes" if self.camera else "no",
                 "yes" if self.scanner else "no",
                 ", ".join(k for k, r in self.readers.items() if r) or "none",
                 self.cfg.relay.kind)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking presentations, decide those already taken, then close everything."""
        if self._health is not None:
            self._health.stop()
        if self.updater is not None:
            self.updater.stop()
        self._stop_inputs.set()
        for i in self._inputs:
            i.thread.join(timeout)
            self.watchdog.unwatch(i.name)
        self._inputs_done.set()
        if self._decider is not None:
            self._decider.join(timeout)
        self._housekeeping.join(timeout)
        if self.bridge is not None:
            self.watchdog.unwatch("hub-net")
            self.bridge.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
        for i in self._inputs:
            i.close()
        if self.relay is not None:
            self.relay.close()
        self.screen_loop.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.verifier is not None:
            # While the store still holds the state directory's lock: a clean stop is never
            # taken for a crash (lock free, file still saying "running").
            try:
                self.status_file.write_stopped(clock=self.verifier.clock.state)
            except OSError as e:
                log.error("status file %s not written at stop: %s", self.status_file.path, e)
            self.verifier.close()
        self.remote.close()
        log.info("terminal stopped after %d presentations", self.decided)
        logging.getLogger().removeHandler(self.recent_log)

    def _remote_override(self, cmd) -> tuple[bool, object]:
        """The hub's ``open_gate`` (on the decide thread, from terminal/remote.py): a staff override
        by the command, decided like a staff card's. ``ok`` only if it was allowed and the relay
        was up at the commit; the pulse itself then goes out as for any allow."""
        r = self._decide(Presentation("staff", time.monotonic_ns(), staff=Staff("remote", sid=f"cmd:{cmd.id}")))
        if r is None:
            return False, {"reason": "not_committed", "detail": "the event could not be committed (disk full)"}
        return r.decision == ALLOW and r.gate != "fault", {"seq": r.seq, "event_id": r.event_id, "reason": r.reason,
                                                           "ref": r.ref, "gate": r.gate}

    def _guide(self, key: str) -> None:
        """A hint for the person at the camera (camera thread): the panel, and whoever listens."""
        self.screen_loop.guide(key)
        if self.audio is not None:
            self.audio.guide(key)
        if self.on_guidance is not None:
            self.on_guidance(key)

    def _put(self, p: Presentation) -> None:
        try:
            self._queue.put(p, timeout=5)
        except queue.Full:  # the decider is wedged: say so rather than block a reader forever
            log.error("presentation dropped: the decision queue is full")

    def _decide_loop(self) -> None:
        while True:
            # The watchdog pings from here: a wedged decision loop stops the pings.
            self.watchdog.progress("decide")
            self._relay_up()
            if self._ready.is_set():
                self.watchdog.tick()
            while not self._updates.empty():
                update = self._updates.get()
                if isinstance(update, Config):
                    self._reload(update)
                elif update is SELF_TEST:
                    self._self_test()
                elif isinstance(update, _Task):
                    try:
                        update.run()
                    except Exception:  # a bug costs this task (its command is answered), not decide
                        log.exception("a remote operation failed on the decide thread")
                else:
                    self.verifier.apply(update)
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
                self._notice(texts.SYSTEM_ERROR)

    def _verify(self, p: Presentation) -> Result:
        v, relay_up = self.verifier, self._relay_up()
        if p.unreadable:
            return v.unreadable(p.method, started_ns=p.started_ns, relay_up=relay_up)
        if p.method == "qr":
            if is_staff_qr(p.text):
                return v.verify_staff_qr(p.text, started_ns=p.started_ns, relay_up=relay_up)
            return v.verify(p.text, started_ns=p.started_ns, relay_up=relay_up)
        if p.method == "staff":
            return v.override(p.staff, started_ns=p.started_ns, relay_up=relay_up)
        # A staff card confirms a review (or is refused as one): never decided as a visitor's.
        staff = v.staff_card(p.card)
        if staff is not None:
            return v.override(staff, started_ns=p.started_ns, relay_up=relay_up)
        return v.verify_card(p.card, p.health, started_ns=p.started_ns, relay_up=relay_up)

    def _open_gate(self, r: Result):
        """After the commit: the pulse for an allow, never for one recorded as gate "fault".
        Its outcome goes to the screen, which shows 请通行 only once the pulse went out; decide
        does not wait for it."""
        if r.gate == "fault":
            log.error("seq=%d allowed, but the relay is down: the gate stays shut, staff must open it", r.seq)
            return None
        if r.decision != ALLOW:
            return None
        outcome = self.relay.pulse(self.cfg.relay.pulse_ms)
        if self.relay.wired:
            outcome.then(lambda sent: None if sent else self._pulse_failed(r))
        return outcome

    def _pulse_failed(self, r: Result) -> None:
        """On the relay's thread: the relay answered before the commit and failed since. The event
        says "opened" (committed first: store before gate); the screen says 请联系工作人员开门."""
        why = self.relay.error or "pulse not sent"
        self.devices.fail("relay", why)
        log.error("seq=%d event %s recorded gate opened, but the pulse did not go out (%s): the gate "
                  "stays shut, staff must open it", r.seq, r.event_id, why)

    def _decide(self, p: Presentation) -> Result | None:
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
                self._notice(texts.SYSTEM_ERROR)
                return None
        decided_ns = time.monotonic_ns()
        # The event is committed: only now may the gate open.
        pulse = self._open_gate(r)
        if self.audio is not None:
            self._announce(r, pulse, decided_ns)
        if self.bridge is not None:
            self.bridge.notify()
        self.decided += 1
        self.screen_loop.show_result(r, pulse)
        self.metrics.decided(r.method, r.decision, r.reason, r.latency_ms)
        self.status_file.record(r, time.time())
        if self.on_result is not None:
            self.on_result(p, r)
        return r

    def _announce(self, r: Result, pulse, decided_ns: int) -> None:
        """The spoken outcome, once the gate is known: now, or when the pulse has gone out (or
        not) — then on the relay's thread; ``announce`` returns at once either way."""
        def say(gate_ok: bool) -> None:
            self.audio.announce(r.decision, r.reason, seq=r.seq, decided_ns=decided_ns, gate_ok=gate_ok,
                                method=r.method)
        if pulse is None:
            say(r.gate != "fault")
        else:
            pulse.then(say)

    def _notice(self, key: str) -> None:
        """A screen-only notice (texts.CARD_UNREAD, texts.SYSTEM_ERROR), said too where it has a prompt."""
        self.screen_loop.notice(key)
        if self.audio is not None and key in NOTICE_PROMPTS:
            self.audio.say(NOTICE_PROMPTS[key])

    def _device_names(self) -> list[str]:
        return (["camera"] if self.camera else []) + (["scanner"] if self.scanner else []) + \
            [k for k, r in self.readers.items() if r] + (["relay"] if self.relay.wired else []) + \
            (["screen"] if self.cfg.screen.kind != "none" else []) + \
            (["audio"] if self.audio else [])
