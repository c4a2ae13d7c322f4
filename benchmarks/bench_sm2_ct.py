"""Does SM2's time with a secret scalar depend on the scalar? (issue #12, finding 22)

    .venv/bin/python benchmarks/bench_sm2_ct.py [--n 2000] [--clock cpu|wall] [--json]

Signs and encrypts with forced nonces, and decrypts with private keys, from three classes:
``dense`` (all 64 nibbles non-zero), ``sparse`` (32 of 64 nibbles zero) and ``short`` (the high
128 bits zero). The classes are interleaved round by round so that load on the machine falls on
all of them alike. A variable-time multiplication shows as medians that differ by class
(dense slowest); the regular ladder's medians should agree within noise. Also prints ops/s,
and public-key verification (public scalars, fast path) for comparison.

The default clock is this thread's CPU time: on a shared machine wall time mostly measures the
scheduler (medians of one class swing 2× with load); on a kiosk's idle core the two agree.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terminal.crypto import sm2  # noqa: E402

CLASSES = ("dense", "sparse", "short")


def scalar(kind: str, rng: random.Random) -> int:
    """A scalar in [1, n) of the given nibble class."""
    while True:
        nibbles = [rng.randrange(1, 16) for _ in range(64)]
        if kind == "sparse":
            for i in rng.sample(range(64), 32):
                nibbles[i] = 0
        elif kind == "short":
            nibbles[:32] = [0] * 32
        k = int("".join(f"{v:x}" for v in nibbles), 16)
        if 1 <= k < sm2.N:
            return k


class ForcedNonce:
    """Stands in for the ``secrets`` module inside terminal.crypto.sm2: the next nonce draw
    (``randbelow(N - 1)``) returns the scalar set in ``k``; everything else is the real thing."""

    def __init__(self):
        self.k = 1

    def randbelow(self, bound: int) -> int:
        return self.k - 1 if bound == sm2.N - 1 else secrets.randbelow(bound)

    def __getattr__(self, name):
        return getattr(secrets, name)


CLOCK = time.thread_time_ns


def timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return (CLOCK() - t0) / 1000


def summary(samples: dict[str, list[float]]) -> dict:
    med = {c: statistics.median(v) for c, v in samples.items()}
    allv = [x for v in samples.values() for x in v]
    return {
        "median_us": {c: round(m, 1) for c, m in med.items()},
        "p10_p90_us": {c: [round(q, 1) for q in statistics.quantiles(v, n=10)[::8]] for c, v in samples.items()},
        "dense_minus_sparse_us": round(med["dense"] - med["sparse"], 1),
        "dense_minus_short_us": round(med["dense"] - med["short"], 1),
        "ops_per_s": round(1e6 / statistics.median(allv), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="samples per class (decryption: n/4)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(22)
    forced = ForcedNonce()
    sm2.secrets = forced
    key = sm2.PrivateKey.generate()
    hub = sm2.PrivateKey.generate().public_key
    hub.precompute()
    msg = b"batch " * 40
    subject = '{"id_number": "110101199003074477", "name": "张三"}'.encode()

    sign = {c: [] for c in CLASSES}
    enc = {c: [] for c in CLASSES}
    for _ in range(args.n):
        for c in rng.sample(CLASSES, 3):
            forced.k = scalar(c, rng)
            sign[c].append(timed(lambda: key.sign(msg)))
            forced.k = scalar(c, rng)
            enc[c].append(timed(lambda: hub.encrypt(subject)))

    dec = {c: [] for c in CLASSES}
    keys = {c: sm2.PrivateKey(scalar(c, rng)) for c in CLASSES}
    cts = {c: k.public_key.encrypt(subject) for c, k in keys.items()}
    for _ in range(max(1, args.n // 4)):
        for c in rng.sample(CLASSES, 3):
            dec[c].append(timed(lambda: keys[c].decrypt(cts[c])))

    sig = key.sign(msg)
    ver = [timed(lambda: key.public_key.verify(msg, sig)) for _ in range(args.n)]

    res = {"n": args.n, "clock": args.clock, "sign": summary(sign), "encrypt": summary(enc), "decrypt": summary(dec),
           "verify": {"median_us": round(statistics.median(ver), 1),
                      "ops_per_s": round(1e6 / statistics.median(ver), 1)}}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"SM2 with secret scalars by nibble class, one core, {args.clock} time, {args.n} samples "
          f"per class (decrypt {max(1, args.n // 4)})")
    print("| op | dense µs | sparse µs | short µs | dense − sparse µs | dense − short µs | ops/s |")
    print("|---|---|---|---|---|---|---|")
    for op in ("sign", "encrypt", "decrypt"):
        r = res[op]
        m = r["median_us"]
        print(f"| {op} | {m['dense']} | {m['sparse']} | {m['short']} | {r['dense_minus_sparse_us']} "
              f"| {r['dense_minus_short_us']} | {r['ops_per_s']} |")
    print(f"| verify (public scalars) | {res['verify']['median_us']} | | | | | {res['verify']['ops_per_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
