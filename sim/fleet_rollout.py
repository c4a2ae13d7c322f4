"""Rollouts in ``gate-terminal sim fleet --rollout GOOD_DIR,BAD_DIR``.

Hub side (the fleet's parent process): the two release bundles (``gate-terminal-<V>.tar``, as
``gate-terminal release build`` writes them) go into a TUF repository (sim/tufrepo.py) served over
HTTPS with the broker's server certificate; the hub simulator rolls the good one out in two
stages — ``pilot`` (a named tenth of the fleet) then ``all`` — and, once that is over, the bad
one the same way; its rollout controller (sim/rollout.py) halts a stage whose failure rate
reaches its threshold. :class:`RolloutWatch` times each stage from the hub's side.

Terminal side (each worker): a simulated terminal follows the hub-signed rollout message
(``wire.open_rollout``, the seq rule and ``Rollout.includes`` as the updater applies them),
fetches and verifies the release through TUF with the terminal's own fetcher
(terminal/update/fetch.py: its own metadata directory, the pinned root, the hub CA), and reports
through the real link (``publish_update``, device-signed). Installing and restarting are not
simulated past a pause: a simulated terminal cannot run a release, so whether the new release
passes its health window is the simulation's input — the version from BAD_DIR fails it (the
terminal reports ``rolled_back`` and stays on its release), any other passes (``good``).
"""
from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from terminal.core.trust import EnvelopeError
from terminal.crypto.sm2 import PublicKey
from terminal.hub import wire

log = logging.getLogger("sim.fleet")

BASE_VERSION = "0.0.1"   # what every simulated terminal runs before the rollouts
POOL = 4                 # rollout threads a worker (TUF fetches run in parallel this wide)
FETCH_TRIES = 3          # a repository that does not answer is asked again a second later


@dataclass(frozen=True)
class RolloutSpec:
    """What a worker's terminals need to follow rollouts (picklable)."""
    repository: str          # https://host:port of the TUF repository
    root: Path               # the repository's 1.root.json: the terminals' trust anchor
    ca: Path                 # the CA of the repository's certificate
    bad_versions: tuple[str, ...]
    restart_s: tuple[float, float] = (1.0, 3.0)   # a restart and health window, simulated


class TerminalUpdates:
    """One simulated terminal's software: the running version and the last rollout followed."""

    def __init__(self, term, spec: RolloutSpec, hub_key) -> None:
        from terminal.update.fetch import ReleaseFetcher
        self.term = term
        self.version = BASE_VERSION
        self.seq = 0
        self.fetcher = ReleaseFetcher(spec.repository, spec.root, term.dir / "state" / "tuf", spec.ca)
        self.hub_keys = {hub_key.kid(): hub_key}
        self.rolled_back: set[str] = set()
        self.busy = False


class WorkerRollouts:
    """The worker's rollout threads: rollout messages from every terminal's link, one queue."""

    def __init__(self, terminals: list, spec: RolloutSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        # The repository's role keys, built into the shared verification cache once (as for the
        # hub's keys, sim/fleet_worker.py): not by every pool thread on its first fetch at once.
        for key in json.loads(spec.root.read_bytes())["signed"]["keys"].values():
            PublicKey.from_hex(key["keyval"]["public"]).precompute()
        self.updates = {}
        for t in terminals:
            self.updates[t.tid] = TerminalUpdates(t, spec, t.link.cfg.hub_key)
        self._threads = [threading.Thread(target=self._loop, name=f"rollout-{i}", daemon=True) for i in range(POOL)]
        for th in self._threads:
            th.start()

    def on_rollout(self, tid: str):
        """The link's on_rollout for terminal ``tid``: queues, never blocks the pump."""
        return lambda raw: self._queue.put((tid, raw))

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for th in self._threads:
            th.join(30)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._follow(*item)
            except Exception:  # a bug costs that terminal's rollout, never the thread
                log.exception("rollout on %s", item[0])

    def _follow(self, tid: str, raw: bytes) -> None:
        from terminal.update.fetch import Refused, Unreachable
        u = self.updates[tid]
        try:
            r = wire.open_rollout(raw, u.hub_keys)
        except EnvelopeError as e:
            log.warning("%s: rollout ignored: %s", tid, e)
            return
        if r.seq <= u.seq or u.busy:
            return
        u.seq = r.seq
        if not r.includes(tid) or wire.version_key(r.version) <= wire.version_key(u.version):
            return
        if r.version in u.rolled_back:
            self._report(u, r.version, "refused", "rolled back on this terminal before")
            return
        u.busy = True
        try:
            for attempt in range(FETCH_TRIES):  # the real updater tries again minutes later
                try:
                    u.fetcher.fetch(r.version)
                    break
                except Refused as e:
                    self._report(u, r.version, "refused", str(e))
                    return
                except Unreachable as e:
                    log.warning("%s: %s not fetched (try %d): %s", tid, r.version, attempt + 1, e)
                    if self._stop.wait(1.0):
                        return
            else:
                u.seq = 0  # the next copy of this rollout is followed again
                return
            self._report(u, r.version, "installed", f"switched from {u.version}; restarting")
            time.sleep(self.rng.uniform(*self.spec.restart_s))
            if r.version in self.spec.bad_versions:
                u.rolled_back.add(r.version)
                self._report(u, r.version, "rolled_back", f"no health within the window; back on {u.version}")
            else:
                u.version = r.version
                self._report(u, r.version, "good", "health window passed")
        finally:
            u.busy = False

    def _report(self, u: TerminalUpdates, version: str, state: str, reason: str) -> None:
        payload = wire.update_report(wire.UpdateReport(version, state, reason), u.term.device_key)
        for _ in range(60):  # offline: try again each second, as the updater's queue would
            if u.term.link.publish_update(payload) or self._stop.is_set():
                return
            time.sleep(1.0)


class RolloutWatch:
    """Times a rollout from the hub's side: each stage from its publication until every member
    has a final result (good, rolled_back, refused) or the stage is halted."""

    def __init__(self, hub, version: str, started: float) -> None:
        self.hub = hub
        self.version = version
        self.stages: list[dict] = []
        self._stage_started = started
        self._stage = 0

    def poll(self, now: float) -> bool:
        """Look at the controller; True once the rollout is over (its last stage done, or halted)."""
        from sim.rollout import FAILED, FINAL
        ctl = self.hub.rollouts
        r, results = ctl.snapshot()
        if r is None or r.version != self.version:
            return False
        while True:
            i, last = self._stage, len(r.stages) - 1
            members = ctl.members(r, i)
            final = [t for t in members if t in results and results[t].state in FINAL]
            halted = r.halt and i == r.stage
            if not (halted or i < r.stage or (i == last and len(final) == len(members))):
                return False
            self.stages.append({
                "version": self.version, "name": r.stages[i].name, "terminals": len(members),
                "good": sum(1 for t in final if results[t].state == "good"),
                "failed": sum(1 for t in final if results[t].state in FAILED),
                "seconds": round(now - self._stage_started, 2), "outcome": "halted" if halted else "passed"})
            self._stage_started = now
            if halted or i == last:
                return True
            self._stage += 1
