"""The terminal's side of software updates: rollouts, the ``update`` command, results.

Threads: ``updater`` (its own) takes rollouts from the hub-pump (:meth:`Updater.on_rollout`
only queues), installs what they ask for and sends queued results; :meth:`Updater.check_now`
— the entry point of the hub's ``update`` command — runs on the caller's thread. One lock
makes every check run alone.

One check (docs/protocol/updates.md): the version must be newer than the running one (an
older one is refused and reported; the same one is nothing to do); TUF fetches and verifies
its bundle (metadata that does not verify: refused and reported; no answer: tried again
later); it is installed as releases/<version>/, the pending marker is written, ``current``
switched, ``installed`` reported and the daemon asked to restart (exit for systemd's
Restart=). From there the launcher and the new release's health window decide.
"""
from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from terminal.config import Config
from terminal.core.trust import EnvelopeError
from terminal.crypto.sm2 import PrivateKey
from terminal.hub import wire
from terminal.update import boot
from terminal.update.fetch import Refused, ReleaseFetcher, Unreachable
from terminal.update.install import InstallError, install, switch_to
from terminal.update.version import running_version

log = logging.getLogger(__name__)

ALARM = "update_failed"   # the last release was rolled back (spec: alarms)
RETRY_SECONDS = 300.0      # a repository that did not answer is asked again this much later
MAX_REPORTS = 100          # queued results kept; the oldest beyond are dropped


@dataclass(frozen=True)
class Outcome:
    """What a check did: ``installed`` (restarting), ``refused``, ``current`` (nothing newer),
    ``unreachable`` (try later), ``busy`` (another check runs)."""
    state: str
    version: str | None
    reason: str


class Updater:
    def __init__(self, cfg: Config, device_key: PrivateKey, *, publish: Callable[[bytes], bool],
                 restart: Callable[[], None], version: str | None = None, python: str = sys.executable,
                 clock: Callable[[], float] = time.time):
        sec = cfg.update
        if sec.prefix is None:
            raise ValueError(f"{cfg.path}: no update.prefix: software updates are off")
        self.prefix: Path = sec.prefix
        self.tid = cfg.terminal_id
        self.health_seconds = sec.health_seconds
        self.version = version or running_version()
        self.fetcher = ReleaseFetcher(sec.repository, sec.root, cfg.state_dir / "tuf", sec.ca)
        self._device_key = device_key
        self._hub_keys = {cfg.hub_key.kid(): cfg.hub_key}
        self._publish = publish
        self._restart = restart
        self._python = python
        self._clock = clock
        self._lock = threading.Lock()
        self._inbox: queue.Queue[bytes] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rollout: wire.Rollout | None = None   # the newest verified rollout (updater thread)
        self._retry_at: float | None = None
        self.rejected = 0
        self.restarting = False
        self._said_good: set[str] = set()  # versions reported good as already running (updater thread)

    # --- entry points ----------------------------------------------------------------
    def on_rollout(self, raw: bytes) -> None:
        """A message on {prefix}/rollout (hub-pump thread): queued, never blocks."""
        try:
            self._inbox.put_nowait(raw)
        except queue.Full:
            self.rejected += 1  # retained: the newest comes again on the next connect

    def check_now(self, version: str | None = None) -> Outcome:
        """Check the repository now (the hub's ``update`` command): install ``version``, or the
        newest release it holds if None. Blocks for the download and install."""
        if not self._lock.acquire(timeout=1.0):
            return Outcome("busy", version, "another update check is running")
        try:
            if version is None:
                try:
                    versions = self.fetcher.versions()
                except Refused as e:
                    return self._refuse(None, str(e))
                except Unreachable as e:
                    return Outcome("unreachable", None, str(e))
                if not versions:
                    return Outcome("current", None, "the repository holds no release")
                version = versions[-1]
            return self._apply(version)
        finally:
            self._lock.release()

    def alarm(self) -> dict[str, str]:
        """``{"update_failed": why}`` while the last release is rolled back and none was marked good
        since: a source of terminal.alarms.Alarms."""
        try:
            version = (self.prefix / boot.FAILED).read_text()[:32]
        except OSError:
            return {}
        return {ALARM: f"release {version} was rolled back; running {self.version}"}

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="updater", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self._inbox.get(timeout=1.0)
            except queue.Empty:
                raw = None
            try:
                if raw is not None:
                    self._on_rollout(raw)
                elif self._retry_at is not None and self._clock() >= self._retry_at and self.rollout:
                    self._retry_at = None
                    self._follow(self.rollout)
                self.send_reports()
            except Exception:  # a bug costs one round, not the updater
                log.exception("update: round failed")

    # --- rollouts --------------------------------------------------------------------
    def _on_rollout(self, raw: bytes) -> None:
        try:
            r = wire.open_rollout(raw, self._hub_keys)
        except EnvelopeError as e:
            self.rejected += 1
            log.warning("update: rollout ignored: %s", e)
            return
        if self.rollout is not None and r.seq <= self.rollout.seq:
            return  # the retained copy again, or an older one
        self.rollout = r
        self._retry_at = None
        self._follow(r)

    def _follow(self, r: wire.Rollout) -> None:
        if not r.includes(self.tid):
            log.info("update: rollout %d of %s: %s", r.seq, r.version,
                     "halted" if r.halt else "not this terminal's stage yet")
            return
        with self._lock:
            out = self._apply(r.version)
        if out.state == "unreachable":
            self._retry_at = self._clock() + RETRY_SECONDS
        elif out.state == "current" and r.version not in self._said_good and boot.read_pending(self.prefix) is None:
            # Already running it (updated earlier, or by the `update` command): the hub's judge
            # waits for a result from every terminal of the stage. Not while it is on trial:
            # then the health window says good, or the launcher rolls it back.
            self._said_good.add(r.version)
            boot.add_report(self.prefix, r.version, "good", "already running it")
            self.send_reports()

    # --- one check (under the lock) ----------------------------------------------------
    def _apply(self, version: str) -> Outcome:
        try:
            new, running = wire.version_key(version), wire.version_key(self.version)
        except ValueError as e:
            return self._refuse(version, str(e))
        if new == running:
            return Outcome("current", version, "already running it")
        if new < running:
            return self._refuse(version, f"older than the running {self.version}")
        if self.restarting:
            return Outcome("busy", version, "already switched; restarting")
        if (self.prefix / boot.ROLLED_BACK / version).exists():
            return self._refuse(version, "rolled back on this terminal before")
        try:
            bundle = self.fetcher.fetch(version)
        except Refused as e:
            return self._refuse(version, str(e))
        except Unreachable as e:
            log.warning("update: %s not fetched, trying again later: %s", version, e)
            return Outcome("unreachable", version, str(e))
        try:
            install(bundle, self.prefix, version, python=self._python)
            switch_to(self.prefix, version, self.health_seconds, now=self._clock())
        except (InstallError, OSError) as e:
            return self._refuse(version, f"install failed: {e}")
        boot.add_report(self.prefix, version, "installed", f"switched from {self.version}; restarting")
        log.warning("update: release %s installed and current; restarting into it", version)
        self.restarting = True
        self.send_reports()
        self._restart()
        return Outcome("installed", version, "restarting into it")

    def _refuse(self, version: str | None, reason: str) -> Outcome:
        log.warning("update: %s refused: %s", version or "release", reason)
        boot.add_report(self.prefix, version or "?", "refused", reason)
        self.send_reports()
        return Outcome("refused", version, reason)

    # --- results ---------------------------------------------------------------------
    def send_reports(self) -> int:
        """Publish queued results, oldest first, each removed once the broker has it; how many."""
        d = self.prefix / boot.REPORTS
        try:
            names = sorted(p for p in d.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return 0
        for old in names[:-MAX_REPORTS]:
            old.unlink(missing_ok=True)
        sent = 0
        for path in names[-MAX_REPORTS:]:
            try:
                doc = json.loads(path.read_bytes()[:4096])
                report = wire.UpdateReport(str(doc["version"])[:32], doc["state"], str(doc["reason"]))
                if report.state not in wire.UPDATE_STATES:
                    raise ValueError
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("update: unreadable result %s dropped", path.name)
                path.unlink(missing_ok=True)
                continue
            if not self._publish(wire.update_report(report, self._device_key)):
                break  # offline: kept for the next round
            path.unlink(missing_ok=True)
            sent += 1
        return sent
