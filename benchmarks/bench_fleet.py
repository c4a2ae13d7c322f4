"""A fleet against one broker: reconnect storms, hub ingest, the broker's memory (and rollouts).

    .venv/bin/python benchmarks/bench_fleet.py [--terminals 500] [--quick] [--rollout GOOD,BAD] [--json FILE]

Runs ``gate-terminal sim fleet`` (sim/fleet.py) once: N simulated terminals — each the real
store, outbox and hub link (terminal/hub/link.py) with its own TLS certificate and SM2 device
key — in worker processes, against one Mosquitto (TLS, client certificates, the ACL) and the hub
simulator. Decisions at ``--rate`` a minute per lane throughout, and:

- a broker restart (SIGTERM, saves its sessions; start again at once) once all are connected:
  the time until every terminal is reconnected, counted from the moment the broker listens
  again, and the connects in each second after it — the link's full-jitter backoff
  (drivers/backoff.py: attempt n waits uniform [0, min(60, 2^n)] s) is what spreads them;
- a broker outage (down ``--outage`` s): the terminals' backoff has grown meanwhile, so the
  returning fleet is spread wider;
- hub ingest: events stored per second by the hub simulator while everyone sends, and the hub's
  CPU per batch (a terminal sending a decision every few seconds sends batches of ~1 event: the
  batch's SM2 verification and the signed ack are the cost, not the rows);
- the broker's resident memory idle and with every terminal connected (per connection);
- a two-stage rollout (a named pilot tenth, then all) of a good release, then of a bad one (its
  health window fails, simulated): time per stage, the bad one halted in its pilot. Without
  ``--rollout`` the releases are the tests' small fake bundles (tests/release_helpers.py): the
  stages then time the control plane — rollout message, TUF refresh and verification per
  terminal, results, the hub's stage judge — not the download of a full bundle.

Every event is accounted for exactly once by (tid, epoch, seq) at the end, or the run fails.
``--quick`` is 50 terminals and shorter phases (a smoke run); tests/test_fleet_sim.py runs the
same code with 10.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.fleet import run_fleet  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--terminals", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="50 terminals, short phases")
    ap.add_argument("--rate", type=float, default=2.0,
                    help="decisions per minute per terminal (default 2: on the 2-core development machine "
                         "500 lanes at 12 a minute overload the terminals' own signing, hub and all)")
    ap.add_argument("--outage", type=float, default=20.0, help="seconds the broker stays down (default 20)")
    ap.add_argument("--rollout", metavar="GOOD_DIR,BAD_DIR",
                    help="release bundles to roll out (default: small fake ones, 1.1.0 good and 1.2.0 bad)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the whole report here")
    args = ap.parse_args()
    n = 50 if args.quick else args.terminals
    phase = 15.0 if args.quick else 45.0   # seconds between the phases
    restarts = [(phase, 0.0), (2 * phase, args.outage)]
    duration = 3 * phase + args.outage
    report = args.json or Path(tempfile.mkstemp(suffix=".json", prefix="bench-fleet-")[1])
    with tempfile.TemporaryDirectory(prefix="bench-fleet-releases-") as tmp:
        if args.rollout:
            good, _, bad = args.rollout.partition(",")
            rollout = (Path(good), Path(bad))
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from release_helpers import fake_bundle
            rollout = (Path(tmp) / "good", Path(tmp) / "bad")
            fake_bundle(rollout[0], "1.1.0")
            fake_bundle(rollout[1], "1.2.0", broken=True)
        rep = run_fleet(terminals=n, duration=duration, report=report, rate=args.rate / 60.0, restarts=restarts,
                        rollout=rollout, line=lambda s: print(f"  {s}", flush=True))
    print(table(rep))
    if not args.json:
        Path(report).unlink()
    return 0 if rep["ok"] else 1


def table(rep: dict) -> str:
    ev, con, hub, br, cpu = rep["events"], rep["connects"], rep["hub"], rep["broker"], rep["cpu"]
    restart, outage = con["broker_restarts"]
    rows = [
        ("terminals / worker processes", f"{rep['terminals']} / {rep['workers']}"),
        ("setup (keys, certificates, stores)", f"{rep['setup_s']} s"),
        ("initial connect, all (links started over)", f"{con['all_connected_after_s']} s ({rep['ramp_s']} s)"),
    ]
    for name, r in (("restart", restart), (f"outage {r_down(outage)} s", outage)):
        rows += [
            (f"{name}: all reconnected after", f"{r['all_reconnected_s']} s (p50 {r['reconnect_s']['p50']}, "
                                             f"p90 {r['reconnect_s']['p90']})"),
            (f"{name}: peak connects/s", f"{r['peak_connects_per_s']}"),
            (f"{name}: connects per second", " ".join(map(str, r["connects_per_second"]))),
        ]
    rows += [
        ("events sent / at hub / missing / unexpected", f"{ev['sent']} / {ev['at_hub']} / {ev['missing']} / "
                                                        f"{ev['unexpected']}"),
        ("duplicate deliveries dropped by the hub", f"{ev['duplicates_dropped']}"),
        ("offered load", f"{rep['terminals'] * rep['rate_per_terminal_per_s']:.0f} events/s"),
        ("hub ingest while sending: mean / peak", f"{hub['events_per_s_mean']} / {hub['events_per_s_peak']} events/s"),
        ("events per batch", f"{hub['events_per_batch']}"),
        ("hub CPU per batch", f"{cpu['hub_ms_per_batch']} ms"),
        ("CPU s: hub / broker / workers (elapsed)", f"{cpu['hub_s']} / {cpu['broker_s']} / {cpu['workers_s']} "
                                                    f"({cpu['elapsed_s']} s on {cpu['cores']} cores, "
                                                    f"load {cpu['loadavg_1m_end']})"),
        ("broker RSS idle / all connected", f"{br['rss_idle_kib']} / {br['rss_connected_kib']} KiB"),
        ("broker RSS per connection", f"{br['rss_per_connection_kib']} KiB"),
    ]
    for st in rep["rollout"]["stages"]:
        rows.append((f"rollout {st['version']} stage {st.get('name', '-')} ({st.get('terminals', '?')} terminals)",
                     f"{st['seconds']} s, {st['outcome']} ({st.get('good', 0)} good, {st.get('failed', 0)} failed)"))
    rows.append(("rollouts as expected (good everywhere, bad halted)", str(rep["rollout"]["as_expected"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def r_down(r: dict) -> str:
    return f"{r['down_s']:g}"


if __name__ == "__main__":
    sys.exit(main())
