"""Hub ingest end to end: synthetic terminals → TLS Mosquitto → two shared-subscription
HubSim consumers (one SQLite file) → signed acks back to the terminals.

    .venv/bin/python benchmarks/bench_hub.py [--events 50000] [--terminals 5] [--batch 200]
        [--consumers 2] [--json]

Each terminal publishes all its batches at QoS 1 as fast as paho lets it (20 in flight);
the clock runs from the first publish until every terminal has an ack covering its last seq.
Target: ≥ 5,000 events/s stored and acked. Subjects are real SM2 ciphertexts (a pool reused,
since encrypting 50,000 would take longer than the run); the hub never decrypts on ingest.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from sim.broker import HUB_IDENTITIES, Broker  # noqa: E402
from sim.hub import HubSim  # noqa: E402
from terminal.hub import wire  # noqa: E402
from terminal.crypto.sm2 import PrivateKey  # noqa: E402

PREFIX = wire.DEFAULT_PREFIX
EPOCH = secrets.token_hex(8)  # every synthetic terminal's database is new


class SyntheticTerminal:
    def __init__(self, broker: Broker, tid: str, hub_pub, batches: list[bytes], last_seq: int) -> None:
        self.tid, self.batches, self.last_seq = tid, batches, last_seq
        self.pin = {hub_pub.kid(): hub_pub}
        self.acked = 0
        self.done = threading.Event()
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{tid}",
                                  protocol=mqtt.MQTTv5)
        cert, key = broker.client_cert(tid)
        self.client.tls_set(ca_certs=str(broker.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/t/{tid}/ack", 1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_ack
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_ack(self, client, userdata, msg) -> None:
        # checking the hub's signature is part of the terminal's cost, not the hub's; done here anyway
        ack = wire.open_ack(msg.payload, self.pin)
        if (ack.tid, ack.epoch) == (self.tid, EPOCH):
            self.acked = max(self.acked, ack.acked_seq)
        if self.acked >= self.last_seq:
            self.done.set()

    def send_all(self) -> None:
        for raw in self.batches:
            self.client.publish(f"{PREFIX}/t/{self.tid}/events", raw, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_batches(tid: str, device: PrivateKey, n_events: int, size: int, subjects: list[str]) -> list[bytes]:
    out = []
    for lo in range(1, n_events + 1, size):
        events = [{"id": str(uuid.uuid4()), "seq": s, "at": 1764001234.5 + s, "boot_id": "bench",
                   "mono_ns": s, "clock": "trusted", "method": "qr", "decision": "allow", "reason": "ok",
                   "status": 0, "flags": 0, "latency_ms": 12.5, "subject": subjects[s % len(subjects)]}
                  for s in range(lo, min(lo + size, n_events + 1))]
        out.append(wire.batch(tid, EPOCH, events, device))
    return out


def run(n_events: int, n_terminals: int, size: int, n_consumers: int) -> dict:
    hub_key = PrivateKey.generate()
    subjects = [hub_key.public_key.encrypt(json.dumps(
        {"id_number": f"370102199001{i:06d}", "name": "张三"}, ensure_ascii=False).encode()).hex()
        for i in range(64)]
    per_terminal = n_events // n_terminals
    devices = {f"370102-B{i:04d}-01": PrivateKey.generate() for i in range(n_terminals)}
    t0 = time.perf_counter()
    batches = {tid: make_batches(tid, k, per_terminal, size, subjects) for tid, k in devices.items()}
    prep_s = time.perf_counter() - t0
    group = secrets.token_hex(12)
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        hubs = [HubSim(broker.url, broker.ca, *broker.client_cert(HUB_IDENTITIES[i]), hub_key=hub_key,
                       db_path=Path(tmp) / "hub.db", terminals={t: k.public_key for t, k in devices.items()},
                       group=group, time_interval=0, on_line=lambda line: None).start()
                for i in range(n_consumers)]
        for h in hubs:
            if not h.wait_connected(10):
                raise SystemExit("hub did not connect")
        terms = [SyntheticTerminal(broker, tid, hub_key.public_key, batches[tid], per_terminal) for tid in devices]
        for t in terms:
            t.ready.wait(10)
        t0 = time.perf_counter()
        senders = [threading.Thread(target=t.send_all) for t in terms]
        for s in senders:
            s.start()
        for s in senders:
            s.join()
        ok = all(t.done.wait(120) for t in terms)
        elapsed = time.perf_counter() - t0
        for t in terms:
            t.close()
        stats = [dict(h.stats) for h in hubs]
        stored = sum(len(hubs[0].stored_seqs(tid)) for tid in devices)
        for h in hubs:
            h.stop()
    total = per_terminal * n_terminals
    return {"events": total, "terminals": n_terminals, "batch": size, "consumers": n_consumers,
            "complete": ok, "stored": stored, "seconds": round(elapsed, 3),
            "events_per_s": round(total / elapsed), "prep_s": round(prep_s, 1),
            "per_consumer_batches": [s.get("batches", 0) for s in stats],
            "duplicates": sum(s.get("duplicates", 0) for s in stats),
            "forged": sum(s.get("forged", 0) for s in stats), "cpus": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--terminals", type=int, default=5)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--consumers", type=int, default=2, choices=range(1, len(HUB_IDENTITIES) + 1),
                    metavar=f"1-{len(HUB_IDENTITIES)}", help="each consumer has a hub identity of its own")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.events, a.terminals, a.batch, a.consumers)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"hub ingest, {r['cpus']} CPUs (terminals, broker and consumers share them)")
        for k in ("events", "terminals", "batch", "consumers", "stored", "duplicates", "forged",
                  "per_consumer_batches", "seconds", "events_per_s", "complete"):
            print(f"  {k:22} {r[k]}")
        met = r["complete"] and r["events_per_s"] >= 5000
        print(f"  {'target':22} >= 5000 events/s: {'met' if met else 'NOT met'}")
    return 0 if r["complete"] and r["stored"] == r["events"] else 1


if __name__ == "__main__":
    sys.exit(main())
