"""Remote operations (docs/protocol/hub.md, Remote commands): what the terminal does for a
command the hub link has admitted (terminal/hub/commands.py: signed, for this tid, in time, new).

The link calls ``RemoteOps(command, reply)`` on its pump thread; ``reply(ok, detail)`` answers
on ``cmd/result``, once, from whichever thread finishes the op:

    ping           here: the ``status --json`` object
    set_log_level  here: ``args.level`` for ``args.minutes``, then the level before
    reload         decide thread (as SIGHUP): answers whether the new configuration was applied
    gate_test      decide thread, so between two presentations: a ``maintenance`` event committed,
                   then one relay pulse; answered once the relay worker switched it (or dropped it)
    open_gate      decide thread: the staff override's entry point (``Daemon.open_gate``)
    diagnostics    a thread of its own: the bundle to ``diag``, then the answer with its SM3 digest
    update         a thread of its own: ``Daemon.updater.check_now(args.version)`` (the release
                   updater's), answered with its outcome
    restart        answers, waits for the broker to have the answer, then asks for the restart
                   (``Daemon.restart_requested``: commands/run.py exits 75, which systemd's
                   ``Restart=on-failure`` starts again)

It sits beside the daemon, like housekeeping: it drives the daemon's parts.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from terminal import config as cfgmod
from terminal.core import reasons as R
from terminal.crypto.sm2 import PublicKey
from terminal.hub import wire
from terminal.state.snapshot import SnapshotError, status_snapshot

log = logging.getLogger(__name__)

# An update check's outcomes that are a success: a release installed (restarting), or none newer
UPDATE_DONE = ("installed", "current")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_LOG_MINUTES = 1440
PULSE_GRACE = 2.0  # seconds beyond the pulse for the relay worker to say it switched


def _reason(reason: str, words: str) -> str:
    return f"{reason}: {words}"


class RemoteOps:
    def __init__(self, daemon, recent_log):
        self._d = daemon
        self._recent_log = recent_log
        self._lock = threading.Lock()  # the log level's timer; the one diagnostics at a time
        self._timer: threading.Timer | None = None
        self._level_before: int | None = None
        self._diagnosing = False

    def __call__(self, cmd: wire.Command, reply: Callable[..., bool]) -> None:
        getattr(self, f"_{cmd.op}")(cmd, reply)

    # --- answered at once ----------------------------------------------------------
    def _ping(self, cmd, reply) -> None:
        try:
            reply(True, self.status())
        except SnapshotError as e:
            reply(False, _reason("failed", str(e)))

    def status(self) -> dict:
        return status_snapshot(self._d.verifier.store.state_dir, terminal_id=self._d.cfg.terminal_id)

    def _set_log_level(self, cmd, reply) -> None:
        level, minutes = cmd.args.get("level"), cmd.args.get("minutes")
        if level not in LOG_LEVELS:
            reply(False, _reason("bad_args", f"level must be one of {', '.join(LOG_LEVELS)}"))
            return
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) \
                or not 0 < minutes <= MAX_LOG_MINUTES:
            reply(False, _reason("bad_args", f"minutes must be a number above 0 and up to {MAX_LOG_MINUTES}"))
            return
        root = logging.getLogger()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()  # a new level replaces the last; "back" is still the one before both
            else:
                self._level_before = root.level
            before = self._level_before
            root.setLevel(level)
            timer = threading.Timer(minutes * 60, lambda: self._restore_level(timer))
            timer.daemon = True
            self._timer = timer
            timer.start()
        log.warning("log level %s for %g min (remote command %s), then %s", level, minutes, cmd.id,
                    logging.getLevelName(before))
        reply(True, f"log level {level} for {minutes:g} min, then {logging.getLevelName(before)}")

    def _restore_level(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._timer is not timer:  # a timer replaced (cancelled too late to stop it): not its turn
                return
            self._timer, before = None, self._level_before
            logging.getLogger().setLevel(before)
        log.warning("log level back to %s", logging.getLevelName(before))

    def close(self) -> None:
        """The daemon stops: the level goes back now rather than after a timer that will never fire."""
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
            self._restore_level(timer)

    def _restart(self, cmd, reply) -> None:
        if not reply(True, "restarting", wait=5.0):
            log.warning("restart (command %s): the answer did not reach the broker; restarting anyway", cmd.id)
        log.warning("restart asked by the hub (command %s)", cmd.id)
        self._d.restart_requested.set()

    # --- on the decide thread --------------------------------------------------------
    def _reload(self, cmd, reply) -> None:
        try:
            cfg = cfgmod.load(self._d.cfg.path)
        except cfgmod.ConfigError as e:
            reply(False, _reason("refused", f"{e}; the running configuration stays"))
            return

        def task():
            error = self._d.apply_config(cfg)
            reply(error is None, "reloaded" if error is None else _reason("refused", error))
        self._on_decide(task, reply)

    def _on_decide(self, task: Callable[[], None], reply) -> None:
        def guarded():
            try:
                task()
            except Exception as e:  # answered, and logged by the decide loop
                reply(False, _reason("failed", type(e).__name__))
                raise
        self._d.on_decide(guarded)

    def _gate_test(self, cmd, reply) -> None:
        d = self._d
        if not d.relay.wired:
            reply(False, _reason("not_available", "no relay is configured"))
            return

        def task():
            if not d.relay_up():
                reply(False, _reason("relay_down", d.relay.error or "the relay cannot be reached"))
                return
            r = d.verifier.record_maintenance(R.GATE_TEST)
            d.event_committed()
            outcome = d.relay.pulse(d.cfg.relay.pulse_ms)
            threading.Thread(target=self._await_pulse, args=(reply, r, outcome), name="gate-test",
                             daemon=True).start()
        self._on_decide(task, reply)

    def _await_pulse(self, reply, r, outcome) -> None:
        """The pulse's fate, off the decide thread: the relay worker settles it within the pulse."""
        if outcome.wait(self._d.cfg.relay.pulse_ms / 1000 + PULSE_GRACE):
            reply(True, {"seq": r.seq, "event_id": r.event_id, "pulse": "sent"})
            return
        why = self._d.relay.error or "pulse not sent"
        self._d.devices.fail("relay", why)
        log.error("gate test (event seq %d): the pulse did not go out: %s", r.seq, why)
        reply(False, _reason("relay_down", f"{why} (event seq {r.seq} recorded)"))

    def _open_gate(self, cmd, reply) -> None:
        entry = self._d.open_gate
        if entry is None:
            reply(False, _reason("not_available", "this version has no staff override"))
            return
        self._on_decide(lambda: reply(*entry(cmd)), reply)

    # --- on a thread of their own ------------------------------------------------------
    def _update(self, cmd, reply) -> None:
        updater, version = self._d.updater, cmd.args.get("version")
        if updater is None:
            reply(False, _reason("not_configured", "no release repository is configured"))
            return
        if version is not None and not (isinstance(version, str) and 0 < len(version) <= 64):
            reply(False, _reason("bad_args", "version must be a string of up to 64 characters, or absent"))
            return

        def check():
            try:
                o = updater.check_now(version)  # blocks for the download and install
            except Exception as e:
                log.exception("update check (command %s) failed", cmd.id)
                reply(False, _reason("failed", type(e).__name__))
                return
            reply(o.state in UPDATE_DONE, {"state": o.state, "version": o.version, "reason": o.reason})
        threading.Thread(target=check, name="update-check", daemon=True).start()

    def _diagnostics(self, cmd, reply) -> None:
        with self._lock:
            if self._diagnosing:
                reply(False, _reason("busy", "a diagnostics upload is under way"))
                return
            self._diagnosing = True
        threading.Thread(target=self._upload, args=(cmd, reply), name="diagnostics", daemon=True).start()

    def _upload(self, cmd, reply) -> None:
        try:
            bundle = self.bundle()
            chunks = wire.diag_chunks(cmd.id, bundle)
            if self._d.hub.send_diag(chunks):
                reply(True, {"parts": len(chunks), "bytes": len(bundle), "sm3": wire.diag_digest(bundle)})
            else:
                reply(False, _reason("failed", "the bundle did not reach the broker"))
        except Exception as e:
            log.exception("diagnostics (command %s) failed", cmd.id)
            reply(False, _reason("failed", type(e).__name__))
        finally:
            with self._lock:
                self._diagnosing = False

    def bundle(self) -> bytes:
        """Status, the recent log lines (masked), the configuration (which holds no secret: key
        material lives in the files it names) and the device counters, as JSON of at most
        ``wire.DIAG_MAX_BUNDLE`` bytes: the oldest log lines go first if it is larger."""
        try:
            status = self.status()
        except SnapshotError as e:
            status = {"error": str(e)}
        doc = {"terminal_id": self._d.cfg.terminal_id, "at": time.time(), "status": status,
               "config": config_doc(self._d.cfg), "devices": self._d.device_counters(),
               "log": self._recent_log.lines()}
        raw = json.dumps(doc, ensure_ascii=False).encode()
        while len(raw) > wire.DIAG_MAX_BUNDLE and doc["log"]:
            doc["log"] = doc["log"][max(1, len(doc["log"]) // 10):]
            raw = json.dumps(doc, ensure_ascii=False).encode()
        return raw


def config_doc(cfg: cfgmod.Config) -> dict:
    """The configuration as JSON values: keys as hex, paths as strings."""
    def value(v):
        if isinstance(v, PublicKey):
            return v.hex()
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v
    doc = {section: {f.name: value(getattr(getattr(cfg, section), f.name)) for f in fields(cls)}
           for section, cls in cfgmod.SECTIONS.items()}
    doc["policy"] = dict(cfg.policy_overrides)
    return doc
