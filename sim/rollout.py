"""The hub's staged rollouts: one release at a time, stage by stage, halted on failures.

A plan is a list of stages, each a named list of tids or a percentage of the known terminals
(their hash bucket, :func:`terminal.hub.wire.bucket`), and each with ``max_failure``, the
failure rate that halts it. The controller publishes the rollout (retained, hub-signed) and
reads the terminals' results (``{prefix}/t/{tid}/update``, device-signed, checked by the hub
simulator before they get here). A result is final when it is ``good``, ``rolled_back`` or
``refused``; the last two are failures. The current stage is

- halted (``halt: true``, published) as soon as failures / members ≥ its ``max_failure``;
- else advanced to the next stage (published) once every member has a final result.

Members of a stage are the terminals whose first matching stage it is (the pilot's terminals
are not counted again in "all"). A stage with no members is passed at once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from terminal.hub import wire

FINAL = ("good", "rolled_back", "refused")
FAILED = ("rolled_back", "refused")


@dataclass(frozen=True)
class StagePlan:
    name: str
    tids: tuple[str, ...] | None = None
    percent: int | None = None
    max_failure: float = 0.1   # halt once this share of the stage's terminals failed

    def stage(self) -> wire.Stage:
        return wire.Stage(self.name, self.tids, self.percent)


class RolloutController:
    def __init__(self, publish: Callable[[wire.Rollout], None], terminals: Iterable[str],
                 line: Callable[[str], None] = lambda s: None):
        self._publish = publish      # signs and publishes (retained)
        self.terminals = set(terminals)
        self.line = line
        self._lock = threading.RLock()
        self.current: wire.Rollout | None = None
        self.plan: tuple[StagePlan, ...] = ()
        self.results: dict[str, wire.UpdateReport] = {}  # tid → its latest result for this version

    def start(self, version: str, plan: list[StagePlan], seq: int) -> wire.Rollout:
        """Roll ``version`` out from its first stage; ``seq`` at least (above the last one published)."""
        wire.version_key(version)
        if not plan:
            raise ValueError("a rollout needs at least one stage")
        with self._lock:  # held while publishing: every rollout goes out in seq order
            if self.current is not None:
                seq = max(seq, self.current.seq + 1)
            self.plan = tuple(plan)
            self.results = {}
            self.current = r = self._advance_empty(wire.Rollout(seq, version, tuple(p.stage() for p in plan), 0,
                                                                False))
            self._publish(r)
        self.line(f"rollout {version}: stage {r.stages[r.stage].name}")
        return r

    def snapshot(self) -> tuple[wire.Rollout | None, dict[str, wire.UpdateReport]]:
        """The current rollout and the results it was judged on, read together (sim/fleet_rollout.py)."""
        with self._lock:
            return self.current, dict(self.results)

    def members(self, r: wire.Rollout, stage: int) -> set[str]:
        return {t for t in self.terminals | set(r.stages[stage].tids or ()) if r.stage_of(t) == stage}

    def failure_rate(self, stage: int | None = None) -> float:
        r = self.current
        if r is None:
            return 0.0
        members = self.members(r, r.stage if stage is None else stage)
        failed = sum(1 for t in members if t in self.results and self.results[t].state in FAILED)
        return failed / len(members) if members else 0.0

    def report(self, tid: str, rep: wire.UpdateReport) -> None:
        """A verified result from ``tid``: recorded, and the stage judged again."""
        with self._lock:
            r = self.current
            if r is None or rep.version != r.version:
                return
            self.results[tid] = rep
            if r.halt:
                return
            nxt = self._judge(r)
            if nxt is r:
                return
            self._publish(nxt)
            self.current = nxt
            rate = self.failure_rate()
        name = nxt.stages[nxt.stage].name
        if nxt.halt:
            self.line(f"rollout {nxt.version}: HALTED at stage {name} (failure rate {rate:.0%})")
        else:
            self.line(f"rollout {nxt.version}: stage {name}")

    def _judge(self, r: wire.Rollout) -> wire.Rollout:
        """Halt, advance (as far as the results already allow) or keep ``r``."""
        start = r
        while True:
            members = self.members(r, r.stage)
            final = [t for t in members if t in self.results and self.results[t].state in FINAL]
            failed = sum(1 for t in final if self.results[t].state in FAILED)
            if members and failed / len(members) >= self.plan[r.stage].max_failure:
                return replace(r, seq=start.seq + 1, halt=True)
            if len(final) < len(members) or r.stage + 1 == len(r.stages):
                return r if r is start else replace(r, seq=start.seq + 1)
            r = replace(r, stage=r.stage + 1)

    def _advance_empty(self, r: wire.Rollout) -> wire.Rollout:
        while not self.members(r, r.stage) and r.stage + 1 < len(r.stages):
            r = replace(r, stage=r.stage + 1)
        return r
