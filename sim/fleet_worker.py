"""One worker process of ``gate-terminal sim fleet``: a slice of the fleet as threads.

Each simulated terminal is the terminal's own hub side, unchanged — its state directory and
SQLite store (terminal/state/store.py), the outbox pump and :class:`terminal.hub.link.HubLink`
with its TLS client certificate, device key and jittered reconnects — fed by synthetic
decisions instead of a camera: one generator thread per worker commits each terminal's events
at Poisson times, as the decide thread would (``Store.write`` + ``insert_event``, then
``notify``). No personal data: a synthetic event carries no subject.

The parent drives the worker over a pipe (:func:`main`); every answer is one tuple:

    ("ready", {tid: device public key hex})   the terminals are made (keys, certificates, stores)
    ("go", start_at, until, rate, ramp)     → links start over ``ramp`` s; events until ``until``
    ("status",)                             → ("status", {...counts...})
    ("drain", timeout)                      → events stop; ("drained", terminals not yet acked)
    ("stop",)                               → ("result", [per-terminal dict], CPU seconds); the worker exits

Times are ``time.monotonic()``: one clock for every process on the machine (CLOCK_MONOTONIC).
"""
from __future__ import annotations

import faulthandler
import heapq
import logging
import os
import random
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from terminal import config as cfgmod
from terminal.crypto.keyfiles import load_private_key, private_key_pem, write_secret
from terminal.crypto.sm2 import PrivateKey
from terminal.hub import wire
from terminal.hub.link import HubLink
from terminal.state.store import Store
from terminal.verifier import BOOT_ID, uuid7

log = logging.getLogger("sim.fleet")

SAMPLE_EVERY = 0.1    # the monitor's look at each link's connect count (the histogram's resolution)
# A lane's outcomes, roughly as a day at a mall entrance goes (the hub does not care which).
OUTCOMES = ((0.90, "allow", "ok", "opened"), (0.05, "deny", "yellow_code", None),
            (0.03, "deny", "expired", None), (0.02, "review", "status_unavailable", None))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to make and run its terminals (picklable: sent to a spawned process)."""
    index: int
    tids: tuple[str, ...]
    root: Path                 # the fleet's directory: terminals under root/t/<tid>
    broker_url: str
    broker_ca: Path
    ca_key: Path               # the broker CA's key: each worker issues its terminals' certificates
    root_key_hex: str
    hub_key_hex: str
    trust_list: Path
    data_keys: Path
    seed: int | None = None
    rollout: object | None = None   # sim.fleet_rollout.RolloutSpec: follow rollouts
    ack_timeout: float = 15.0       # a batch sent again after this long without its ack (the link's)


class SimTerminal:
    """One terminal's store and hub link, and what the fleet report needs of it."""

    def __init__(self, spec: WorkerSpec, tid: str, ca) -> None:
        self.tid = tid
        self.dir = spec.root / "t" / tid
        self.dir.mkdir(parents=True, exist_ok=True)
        key_path = self.dir / "device.pem"
        if key_path.exists():
            self.device_key = load_private_key(key_path)
        else:
            self.device_key = PrivateKey.generate()
            write_secret(key_path, private_key_pem(self.device_key))
        if not (self.dir / "client.crt").exists():
            ca.issue(tid, self.dir)
        cfg = cfgmod.from_dict({
            "terminal": {"id": tid, "venue": "mall", "state_dir": "state", "device_key": "device.pem"},
            "trust": {"root_keys": [spec.root_key_hex], "trust_list": str(spec.trust_list),
                      "data_keys": str(spec.data_keys)},
            "hub": {"public_key": spec.hub_key_hex, "broker": spec.broker_url, "ca": str(spec.broker_ca),
                    "cert": "client.crt", "key": "client.key"},
        }, self.dir / "config.toml")
        self.store = Store(cfg.state_dir)
        # Rollout messages go to the worker's rollout threads (sim/fleet_rollout.py), set later.
        self.rollout_sink = None
        follow = {"on_rollout": self._on_rollout} if spec.rollout is not None else {}
        self.link = HubLink(cfg, self.store, self.device_key, ack_timeout=spec.ack_timeout, **follow)
        self.generated = 0            # events committed (seq 1..generated: a fresh state directory)
        self.connect_times: list[float] = []   # monotonic, each time link.connects went up
        self._seen_connects = 0
        self.started = False

    def _on_rollout(self, raw: bytes) -> None:
        if self.rollout_sink is not None:
            self.rollout_sink(raw)

    def commit_event(self, rng: random.Random) -> None:
        """One synthetic decision, committed as the decide thread commits one; the pump woken."""
        roll, acc = rng.random(), 0.0
        for share, decision, reason, gate in OUTCOMES:
            acc += share
            if roll < acc:
                break
        started = time.monotonic_ns()
        event = {"id": uuid7(), "at": time.time(), "boot_id": BOOT_ID, "mono_ns": started, "clock": "trusted",
                 "method": "qr", "decision": decision, "reason": reason, "status": 0, "flags": 0,
                 "latency_ms": round(rng.uniform(15, 60), 3), "subject": None, "gate": gate}
        with self.store.write():
            self.store.insert_event(event)
        self.generated += 1
        self.link.notify()

    def sample(self, now: float) -> None:
        """Called by the monitor: record when the link's connect count went up."""
        n = self.link.connects
        if n > self._seen_connects:
            self.connect_times.extend([now] * (n - self._seen_connects))
            self._seen_connects = n

    def drained(self) -> bool:
        return self.store.acked_seq() >= self.store.last_seq()

    def result(self) -> dict:
        return {"tid": self.tid, "epoch": self.store.epoch,
                "last_seq": self.store.last_seq(), "generated": self.generated,
                "acked_through": self.store.acked_seq(), "connects": self.link.connects,
                "connect_times": self.connect_times, "resends": self.link.pump.resends,
                "dropped_messages": self.link.dropped_messages,
                "rejected_acks": self.link.pump.rejected_acks}

    def close(self) -> None:
        if self.started:
            self.link.stop(timeout=2.0)
        self.store.close()


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        from sim.fleetpki import FleetCA
        self.spec = spec
        ca = FleetCA(spec.broker_ca, spec.ca_key)
        self.terminals = [SimTerminal(spec, tid, ca) for tid in spec.tids]
        # The verification tables of the root, hub and issuer keys, built once now as the daemon
        # builds its keys' at start: otherwise every link's pump misses the shared cache at the
        # same moment (trust list, acks and beacons arriving with the first connects; the trust
        # list's issuers precomputed on receipt) and each builds its own — ~0.1 s of CPU apiece,
        # 80 terminals, three keys: tens of seconds in which paho's threads starve and the broker
        # times the clients out.
        cfg = self.terminals[0].link.cfg
        trust = wire.open_trust_list(spec.trust_list.read_bytes(), {k.kid(): k for k in cfg.root_keys})
        for key in (*cfg.root_keys, cfg.hub_key, *(i.public_key for i in trust.issuers.values())):
            key.precompute()
        self.rng = random.Random(None if spec.seed is None else spec.seed * 1000 + spec.index)
        self.rollouts = None
        if spec.rollout is not None:
            from sim.fleet_rollout import WorkerRollouts
            self.rollouts = WorkerRollouts(self.terminals, spec.rollout, random.Random(self.rng.random()))
            for t in self.terminals:
                t.rollout_sink = self.rollouts.on_rollout(t.tid)
        self._stop_events = threading.Event()
        self._stop_monitor = threading.Event()
        self._threads: list[threading.Thread] = []

    def public_keys(self) -> dict[str, str]:
        return {t.tid: t.device_key.public_key.hex() for t in self.terminals}

    def go(self, start_at: float, until: float, rate: float, ramp: float) -> None:
        """Start each link at its slot of the ramp and the events, ``rate`` per terminal per second."""
        self._threads = [threading.Thread(target=self._monitor, name="monitor", daemon=True),
                         threading.Thread(target=self._generate, args=(start_at, until, rate, ramp),
                                          name="events", daemon=True)]
        for t in self._threads:
            t.start()

    def _monitor(self) -> None:
        while not self._stop_monitor.wait(SAMPLE_EVERY):
            now = time.monotonic()
            for t in self.terminals:
                t.sample(now)

    def _generate(self, start_at: float, until: float, rate: float, ramp: float) -> None:
        n = len(self.terminals)
        # (when, index, is_start): each terminal's link starts at its place in the ramp, then
        # its events come at exponential intervals (a Poisson stream per lane).
        heap = [(start_at + ramp * self.rng.random(), i, True) for i in range(n)]
        heapq.heapify(heap)
        while heap and not self._stop_events.is_set():
            when, i, is_start = heap[0]
            if self._stop_events.wait(max(0.0, when - time.monotonic())):
                break
            heapq.heappop(heap)
            t = self.terminals[i]
            try:
                if is_start:
                    t.link.start()
                    t.started = True
                else:
                    t.commit_event(self.rng)
            except Exception:  # a store error costs that event, counted by its absence
                log.exception("terminal %s", t.tid)
            nxt = when + (self.rng.expovariate(rate) if rate > 0 else float("inf"))
            if nxt < until:
                heapq.heappush(heap, (nxt, i, False))
        # links whose slot came after the stop still start: the drain needs them
        for t in self.terminals:
            if not t.started:
                t.link.start()
                t.started = True

    def status(self) -> dict:
        return {"connected": sum(t.link.connected for t in self.terminals),
                "started": sum(t.started for t in self.terminals),
                "generated": sum(t.generated for t in self.terminals),
                "drained": sum(t.drained() for t in self.terminals),
                "connects": sum(t.link.connects for t in self.terminals)}

    def drain(self, timeout: float) -> int:
        """Stop the events; wait until every terminal's outbox is acked (or ``timeout``)."""
        self._stop_events.set()
        for t in self._threads[1:]:
            t.join()
        deadline = time.monotonic() + timeout
        while True:
            left = sum(not t.drained() for t in self.terminals)
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def stop(self) -> list[dict]:
        self._stop_events.set()
        self._stop_monitor.set()
        for t in self._threads:
            t.join()
        if self.rollouts is not None:
            self.rollouts.stop()
        now = time.monotonic()
        for t in self.terminals:
            t.sample(now)
        results = [t.result() for t in self.terminals]
        if self.rollouts is not None:
            for r in results:
                r["version"] = self.rollouts.updates[r["tid"]].version
        for t in self.terminals:
            t.close()
        return results


def main(conn, spec: WorkerSpec) -> None:
    """The worker process: make the terminals, then answer the parent until ("stop",)."""
    logging.basicConfig(filename=str(spec.root / f"worker-{spec.index}.log"), level=logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    # The simulated terminals stand for hardware of their own: the broker and the hub, measured
    # here, come first (the kernel shares the CPU by thread, and a worker has ~3 per terminal).
    os.nice(10)
    # A thread waiting for the GIL wakes every switch interval to ask for it: with ~200 threads
    # a process and 5 ms, that is tens of thousands of wake-ups a second spent in the kernel.
    sys.setswitchinterval(0.05)
    # kill -USR1 <worker pid>: every thread's stack into the log (a stuck or busy worker)
    faulthandler.register(signal.SIGUSR1, file=logging.getLogger().handlers[0].stream, all_threads=True)
    try:
        worker = Worker(spec)
    except Exception as e:
        log.exception("worker %d could not make its terminals", spec.index)
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", worker.public_keys()))
    while True:
        msg = conn.recv()
        if msg[0] == "go":
            worker.go(*msg[1:])
        elif msg[0] == "status":
            conn.send(("status", worker.status()))
        elif msg[0] == "drain":
            conn.send(("drained", worker.drain(msg[1])))
        elif msg[0] == "stop":
            results = worker.stop()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(("result", results, usage.ru_utime + usage.ru_stime))
            return
