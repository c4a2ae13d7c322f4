"""Drain of an outbox backlog to the hub while the terminal keeps verifying.

    .venv/bin/python benchmarks/bench_drain.py [--events 100000] [--rate 50] [--idle 40] [--json]

A real Mosquitto on loopback (TLS, client certificates, ACL: sim.broker), the hub simulator
in its own process with its database in memory (the hub is another machine with its own
disk: its writes must not queue in front of the terminal's fsyncs), the outbox pre-filled
with ``--events`` events by direct inserts. Measured: events/s from link start to an empty outbox (target
≥ 2,000/s), and the latency of ``Verifier.verify`` on fresh tokens at ``--rate``/s, first with
the link idle, then while the backlog drains (target: drain p99 ≤ 1.5 × idle p99). At 50/s
each phase has 1,500+ samples, so its p99 is not three unlucky fsyncs of a shared disk.

The terminal process runs with the GIL switch interval the daemon is meant to set
(terminal.hub.link.SWITCH_INTERVAL, 1 ms): with Python's default 5 ms a verification that
gives up the GIL for its fsync can wait up to 5 ms to get it back from the pump or paho
threads. ``--switch-interval 0.005`` measures that default.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import multiprocessing as mp
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.broker import Broker  # noqa: E402
from sim.devkeys import write_key_set  # noqa: E402
from sim.issuer import Issuer, Person  # noqa: E402
from terminal.config import load  # noqa: E402
from terminal.hub import HubLink  # noqa: E402
from terminal.hub.link import SWITCH_INTERVAL  # noqa: E402
from terminal.crypto.keyfiles import load_private_key  # noqa: E402
from terminal.state.store import EVENT_FIELDS  # noqa: E402
from terminal.verifier import BOOT_ID, Verifier  # noqa: E402


def run_hub(url, ca, cert, key, keys_dir, db, tid, ready, stop) -> None:
    from sim.hub import HubSim
    keys_dir = Path(keys_dir)
    hub = HubSim(url, ca, cert, key, hub_key=load_private_key(keys_dir / "hub.pem"), db_path=Path(db),
                 terminals={tid: load_private_key(keys_dir / "device.pem").public_key},
                 group=secrets.token_hex(12), start_seq=1, time_interval=0, on_line=lambda line: None).start()
    if hub.wait_connected(30):
        ready.set()
    stop.wait()
    hub.stop()


def prefill(store, n: int) -> None:
    """``n`` events as the verifier writes them (subject: ciphertext-sized hex), one transaction."""
    cols = [f for f in EVENT_FIELDS if f != "seq"]
    now = time.time()
    rows = ([str(uuid.uuid4()), now, BOOT_ID, time.monotonic_ns(), "trusted", "qr", "allow", "ok", 0, 0, 12.5,
             secrets.token_hex(150), "opened"] for _ in range(n))
    with store.write():
        store.db.conn.executemany(f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                  rows)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Load(threading.Thread):
    """Verify a freshly issued token every 1/rate s; latencies in ms."""

    def __init__(self, v: Verifier, issuer: Issuer, rate: float):
        super().__init__(name="verify-load", daemon=True)
        self.v, self.issuer, self.period = v, issuer, 1.0 / rate
        self.lat: list[float] = []
        self.stop_ev = threading.Event()

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            code = self.issuer.issue(Person())
            t0 = time.perf_counter_ns()
            r = self.v.verify(code)
            self.lat.append((time.perf_counter_ns() - t0) / 1e6)
            assert r.reason == "ok" or r.decision != "allow", r
            nxt += self.period
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))


def measure(v, issuer, rate, until) -> list[float]:
    load = Load(v, issuer, rate)
    load.start()
    until()
    load.stop_ev.set()
    load.join()
    return load.lat


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=50.0, help="verifications per second")
    ap.add_argument("--switch-interval", type=float, default=SWITCH_INTERVAL,
                    help="sys.setswitchinterval for the terminal process (the daemon's: %(default)s s)")
    ap.add_argument("--idle", type=float, default=40.0, help="seconds of idle measurement")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--batch", type=int, default=200, help="events per batch")
    ap.add_argument("--max-rate", type=float, default=None, help="the link's pacing, events/s (default: its own)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.setswitchinterval(args.switch_interval)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        broker = stack.enter_context(Broker(max_queued_messages=100_000))
        keys = tmp / "keys"
        write_key_set(keys)
        cfg = load(keys / "config.toml")
        cert, key = broker.client_cert(cfg.terminal_id)
        cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key)
        # The hub is another machine with its own disk: its database goes to memory where there
        # is some, so its writes and checkpoints do not queue in front of the terminal's fsyncs.
        hub_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)))
        ctx = mp.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        hub_cert, hub_key = broker.client_cert("hub")
        hub = ctx.Process(target=run_hub, args=(broker.url, str(broker.ca), str(hub_cert), str(hub_key), str(keys),
                                                str(hub_dir / "hub.db"), cfg.terminal_id, ready, stop), daemon=True)
        hub.start()
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            # On a kiosk the broker and the hub are other machines: here they get their own core,
            # so what is measured is the terminal's pump against its own verification.
            for pid in (broker.pid, hub.pid):
                os.sched_setaffinity(pid, set(cpus[1:]))
            os.sched_setaffinity(0, {cpus[0]})
        try:
            if not ready.wait(60):
                raise SystemExit("hub simulator did not connect")
            v = Verifier.open(cfg, tmp / "state")
            issuer = Issuer.from_dir(keys)
            for _ in range(20):  # warm up: tables, caches
                v.verify(issuer.issue(Person()))
            t0 = time.monotonic()
            prefill(v.store, args.events)
            fill_s = time.monotonic() - t0
            backlog_end = v.store.last_seq()

            idle = measure(v, issuer, args.rate, lambda: time.sleep(args.idle))

            pace = {"max_rate": args.max_rate} if args.max_rate else {}
            link = HubLink(cfg, v.store, load_private_key(keys / "device.pem"), window=args.window, **pace)
            link.pump.batch_size = args.batch
            t0 = time.monotonic()
            link.start()

            def until_drained():  # the load adds events too: wait for the backlog's last one
                while link.pump.acked_seq < backlog_end:
                    time.sleep(0.05)

            busy = measure(v, issuer, args.rate, until_drained)
            drain_s = time.monotonic() - t0
            sent = args.events
            status = link.status()
            link.stop()
            v.close()
        finally:
            stop.set()
            hub.join(30)
    res = {
        "events": args.events, "prefill_s": round(fill_s, 2), "drain_s": round(drain_s, 2),
        "events_per_s": round(sent / drain_s), "resends": status["resends"], "window": args.window,
        "idle": {"n": len(idle), "p50_ms": round(statistics.median(idle), 2), "p99_ms": round(pct(idle, 99), 2),
                 "max_ms": round(max(idle), 2)},
        "drain": {"n": len(busy), "p50_ms": round(statistics.median(busy), 2), "p99_ms": round(pct(busy, 99), 2),
                  "max_ms": round(max(busy), 2)},
    }
    res["p99_ratio"] = round(res["drain"]["p99_ms"] / res["idle"]["p99_ms"], 2)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"drain of {args.events} events to loopback Mosquitto (TLS) + hub simulator (own process; "
          f"terminal on one core, broker and hub on the others), "
          f"window {args.window} x 200, verify at {args.rate:g}/s alongside, "
          f"switch interval {args.switch_interval * 1000:g} ms")
    print(f"prefill {res['prefill_s']} s; drain {res['drain_s']} s; {res['events_per_s']} events/s; "
          f"resends {res['resends']}")
    print("| verify latency | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name in ("idle", "drain"):
        r = res[name]
        print(f"| {name} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    print(f"drain >= 2000 events/s: {'met' if res['events_per_s'] >= 2000 else 'NOT met'}; "
          f"verify p99 during drain / idle = {res['p99_ratio']} (target <= 1.5: "
          f"{'met' if res['p99_ratio'] <= 1.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
