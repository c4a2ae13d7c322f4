"""Time to gate at the door: `sim demo` at each camera level, camera only (and with a scan engine
when the simulator has one), three seeds each.

Every visitor holds the phone up or leaves the card down until the terminal answers and does
what a hint on the screen says; time to gate is from the moment they present (phone raised, card
placed, code scanned) to the gate command or the panel. Per level and mode: visitors, decided,
never decided, agreement with ground truth, and time to gate p50 / p95 per method (all seeds'
visitors pooled).

Targets: never decided 0 at every level; camera p95 ≤ 0.6 s at mild and ≤ 1.5 s at hard; scan
engine p95 ≤ 0.3 s beyond the engine's own (simulated) decode time — its time to gate starts
when the engine sends the code (the code scanned), which is after that decode time; agreement
1.000.

The demo runs in real time against real threads: on a loaded machine time to gate grows with the
load (frames wait for the CPU), so note the machine's load beside the numbers.

    .venv/bin/python benchmarks/bench_door.py [--quick] [--seeds N] [--duration S] [--rate R]
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.demo import pct, run_demo  # noqa: E402

LEVELS = ("clean", "mild", "moderate", "hard")
CAMERA_P95 = {"mild": 0.6, "hard": 1.5}   # s, the targets
SCANNER_P95 = 0.3                         # s from the engine sending the code, i.e. beyond its decode time


def modes() -> list[str]:
    """Camera only, and with a scan engine once the demo can run one."""
    return ["camera"] + (["scanner"] if "scanner" in inspect.signature(run_demo).parameters else [])


def one_run(level: str, mode: str, seed: int, duration: float, rate: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-door-") as tmp:
        kwargs = {"scanner": True} if mode == "scanner" else {}
        return run_demo(out=Path(tmp) / "out", duration=duration, venue="mall", rate=rate, level=level,
                        seed=seed, echo=lambda line: None, **kwargs)


def pooled(reports: list[dict]) -> dict:
    visits = [v for r in reports for v in r["per_visitor"]]
    n = len(visits)
    decided = [v for v in visits if v["got"] is not None]
    agree = sum(r["agreement"] * r["visitors"] for r in reports)
    by_method: dict[str, list[float]] = {}
    for v in decided:
        by_method.setdefault(v["method"], []).append(v["time_to_gate_s"])
    return {"visitors": n, "decided": len(decided), "never_decided": n - len(decided),
            "agreement": agree / n if n else 1.0,
            "ttg": {m: (pct(t, 50), pct(t, 95), max(t)) for m, t in sorted(by_method.items())},
            "hints": sum(sum(r.get("guidance", {}).values()) for r in reports)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: clean and hard, one seed, 10 s each")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per level and mode (default 3)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per run (default 30)")
    ap.add_argument("--rate", type=float, default=40.0, help="arrivals per minute (default 40: a busy lane)")
    args = ap.parse_args()
    levels, seeds, duration = (("clean", "hard"), 1, 10.0) if args.quick else (LEVELS, args.seeds, args.duration)

    t_start = time.monotonic()
    load = os.getloadavg()
    rows, ok, notes = [], True, []
    for level in levels:
        for mode in modes():
            res = pooled([one_run(level, mode, 1000 + s, duration, args.rate) for s in range(seeds)])
            ttg = "; ".join(f"{m} {p50:.2f} / {p95:.2f}" for m, (p50, p95, _) in res["ttg"].items())
            rows.append([level, mode, str(res["visitors"]), str(res["decided"]), str(res["never_decided"]),
                         f"{res['agreement']:.3f}", ttg, str(res["hints"])])
            if res["never_decided"] or res["agreement"] < 1.0:
                ok = False
                notes.append(f"{level}/{mode}: {res['never_decided']} never decided, agreement {res['agreement']:.3f}")
            if mode == "camera" and level in CAMERA_P95 and "qr" in res["ttg"] \
                    and res["ttg"]["qr"][1] > CAMERA_P95[level]:
                ok = False
                notes.append(f"{level}: camera p95 {res['ttg']['qr'][1]:.2f} s > {CAMERA_P95[level]} s")
            if "scanner" in res["ttg"] and res["ttg"]["scanner"][1] > SCANNER_P95:
                ok = False
                notes.append(f"{level}: scanner p95 {res['ttg']['scanner'][1]:.2f} s > {SCANNER_P95} s")

    head = ["camera", "mode", "visitors", "decided", "never decided", "agreement",
            "time to gate p50 / p95 s, per method", "hints"]
    print(f"sim demo, {seeds} seed(s) × {duration:.0f} s of arrivals at {args.rate:.0f}/min per level and mode; "
          f"load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs\n")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if "scanner" not in modes():
        print("\n(camera only: this simulator has no scan engine for the demo yet)")
    print(f"\nTargets (never decided 0, agreement 1.000, camera p95 ≤ 0.6 s mild / ≤ 1.5 s hard, scan engine "
          f"p95 ≤ {SCANNER_P95} s from its send): {'met' if ok else 'NOT met'}; "
          f"{time.monotonic() - t_start:.0f} s")
    for note in notes:
        print("  " + note)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
