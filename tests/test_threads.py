"""Objects that several daemon threads use are locked: one call is one step (the thread table
at the top of terminal/daemon.py). Each test holds one thread inside a call and checks that a
second thread's call waits for it instead of running through the half-done state."""
from __future__ import annotations

import json
import threading

from terminal.state.clock import ClockGuard
from terminal.state.statusfile import StatusFile
from terminal.state.store import Store

T0 = 1_800_000_000.0
HELD = 0.3  # how long the second call must stay blocked while the first is held


class Gate:
    """A callable that parks its caller until released."""

    def __init__(self, value):
        self.value = value
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.entered.set()
        assert self.release.wait(10)
        return self.value


def run(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def test_clock_guard_calls_do_not_interleave(tmp_path):
    store = Store(tmp_path)
    try:
        wall = Gate(T0 - 3600)  # an hour behind the floor: now() latches untrusted
        mono = [100.0]
        walls = [lambda: T0]
        g = ClockGuard(store, 5.0, wall=lambda: walls[0](), mono=lambda: mono[0], synchronised=lambda: False)
        assert g.now() == T0
        walls[0] = wall
        got = []
        a = run(lambda: got.append(g.now()))
        assert wall.entered.wait(5)
        b = run(g.beacon, T0 + 10)  # the hub's beacon on the decide thread, meanwhile
        b.join(HELD)
        assert b.is_alive(), "the beacon ran while now() was half-way"
        wall.release.set()
        a.join(5), b.join(5)
        # now() latched untrusted first; the beacon, after it, restored the clock
        assert got == [None] and g.state == "trusted" and g.floor == T0 + 10
        mono[0] += 5
        assert g.now() == T0 + 15  # on the beacon's time from here
    finally:
        store.close()


class SlowResult:
    """A verifier Result whose first field is read slowly."""

    def __init__(self, gate: Gate):
        self._gate = gate
        self.method, self.decision, self.reason = "qr", "allow", "ok"
        self.name, self.id, self.latency_ms = "张*", "370102********1234", 3.0
        self.gate = "opened"

    @property
    def seq(self):
        return self._gate()


def test_status_file_writes_whole_records(tmp_path):
    sf = StatusFile(tmp_path, "t1")
    gate = Gate(7)
    a = run(sf.record, SlowResult(gate), T0)
    assert gate.entered.wait(5)
    b = run(lambda: sf.write(devices={}, hub={"state": "off"}, clock="trusted", storage={},
                                alarms={}))
    b.join(HELD)
    assert b.is_alive(), "the status file was written while a decision was half-recorded"
    gate.release.set()
    a.join(5), b.join(5)
    doc = json.loads(sf.path.read_text(encoding="utf-8"))
    assert doc["decided"] == 1 and [d["seq"] for d in doc["last_decisions"]] == [7]
