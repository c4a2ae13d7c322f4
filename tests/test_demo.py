"""The main job: `sim demo` runs the daemon against the simulated hardware with a crowd."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from mqtt_fixtures import broker, share_group  # noqa: F401  (fixture)
from sim.crowd import Visitor
from sim.demo import MARKER, OWN, arrivals_per_min, claim_out, served_per_min, summarize, time_to_gate
from terminal.cli import main


def test_demo_agrees_with_ground_truth(tmp_path, capsys):
    report = tmp_path / "report.json"
    # --rate above the lane's pace (once silently capped at 40): arrivals queue, the summary says
    rc = main(["sim", "demo", "--duration", "10", "--rate", "60", "--seed", "11", "--venue", "mall",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    assert res["agreement"] == 1.0 and res["missed"] == [] and res["wrongly_admitted"] == []
    assert res["visitors"] >= 8 and res["decided"] == res["visitors"] and res["never_decided"] == 0
    ttg = res["time_to_gate"]
    assert set(ttg) <= {"qr", "id_card", "ss_card"} and sum(t["n"] for t in ttg.values()) == res["visitors"]
    for t in ttg.values():
        assert set(t) == {"n", "p50_s", "p95_s", "max_s"} and 0 < t["p50_s"] <= t["p95_s"] <= t["max_s"] < 10
    assert 0 < res["served_per_min"] < 60
    header = out.splitlines()[0]
    assert f"{res['visitors']} visitors at a mall" in header and "(one lane: who comes while it is busy waits)" in header
    assert f"served {res['served_per_min']}/min" in out and "time to gate, from presenting: qr n " in out
    assert res["gate_pulses"] == res["allowed"]
    assert 0 < res["p50_ms"] <= res["p99_ms"]   # the latency target is bench_verify's, not a unit test's
    assert sum(res["counts"]["decision"].values()) == res["visitors"]
    # one line per person as it happens, then the summary
    assert len([line for line in out.splitlines() if line.rstrip().endswith(" ok")]) == res["visitors"]
    assert "agreement 1.000" in out
    screens = sorted((tmp_path / "out" / "screens").glob("0*.png"))
    colours = {Image.open(p).convert("RGB").getpixel((2, 240)) for p in screens}
    assert len(colours) >= 3  # idle and at least two kinds of decision were on the panel
    for line in out.splitlines():
        assert "Traceback" not in line


@pytest.mark.parametrize("args, message", [
    (["--rate", "600.5"], "--rate must be above 0 and at most 600 arrivals per minute"),
    (["--rate", "0"], "--rate must be above 0 and at most 600 arrivals per minute"),
    (["--duration", "0"], "--duration must be positive"),
])
def test_demo_usage_errors(tmp_path, capsys, args, message):
    assert main(["sim", "demo", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def visitor(n, method, arrive, presented=None, decided=None):
    result = SimpleNamespace(decision="allow", reason="ok", latency_ms=5.0) if decided is not None else None
    return Visitor(n, "green", method, "张三", "", ("allow", "ok"), arrive_at=arrive, presented_at=presented,
                   decided_at=decided, result=result)


def test_time_to_gate_per_method_and_never_decided():
    people = [visitor(1, "qr", 1.0, 1.0, 1.4), visitor(2, "qr", 2.0, 2.1, 2.3), visitor(3, "qr", 3.0, 3.0, 13.0),
              visitor(4, "id_card", 4.0, 4.0, 4.25), visitor(5, "qr", 5.0, 14.0, None),
              visitor(6, "ss_card", 6.0, None, None)]
    ttg = time_to_gate(people)
    assert ttg == {"qr": {"n": 3, "p50_s": 0.4, "p95_s": 10.0, "max_s": 10.0},
                   "id_card": {"n": 1, "p50_s": 0.25, "p95_s": 0.25, "max_s": 0.25},
                   "ss_card": {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}}
    # any way a visitor presented gets its key
    at_engine = visitor(7, "qr", 0.0, 0.0, 0.2)
    at_engine.scanner = True                       # a code read by the scan engine: its own key
    assert time_to_gate([at_engine]) == {"scanner": {"n": 1, "p50_s": 0.2, "p95_s": 0.2, "max_s": 0.2}}
    res = summarize(people, SimpleNamespace(pulses=[]), Path("out"), lambda line: None, 20.0)
    assert res["never_decided"] == 2 and res["time_to_gate"] == ttg


def test_arrivals_and_served_rates():
    """The header once said ~42/min where the lane served ~26: arrivals and service are two numbers."""
    people = [visitor(i + 1, "qr", arrive=i * 1.5, presented=i * 3.0, decided=i * 3.0 + 2.0) for i in range(11)]
    assert arrivals_per_min(people) == pytest.approx(40.0)          # 10 gaps of 1.5 s
    assert served_per_min(people) == pytest.approx(60 * 11 / 32.0, abs=0.05)   # 0 s → 32 s, queueing
    assert arrivals_per_min(people[:1]) == 0.0 and served_per_min(people[:1]) is None


def test_demo_with_its_own_hub(tmp_path, capsys):
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--hub", "--duration", "12", "--rate", "40", "--seed", "4", "--venue", "bus",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    assert res["agreement"] == 1.0 and res["decided"] == res["visitors"]
    assert res["sync"] == {"outbox_depth": 0, "hub_events": res["visitors"]}


def test_demo_against_an_outside_hub(keyset, broker, tmp_path, capsys):  # noqa: F811
    """`sim demo --config FILE`: the simulated terminal uses the broker and hub the file names."""
    from sim.hub import HubSim
    from terminal.crypto.keyfiles import load_private_key

    tid = "370102-H0001-01"
    cert, key = broker.client_cert(tid)
    config = keyset / "outside.toml"
    config.write_text((keyset / "config.toml").read_text().replace(
        "[hub]", f'[hub]\nbroker = "{broker.url}"\nca = "{broker.ca}"\ncert = "{cert}"\nkey = "{key}"'))
    hub_cert, hub_key = broker.client_cert("hub")
    hub = HubSim(broker.url, broker.ca, hub_cert, hub_key, hub_key=load_private_key(keyset / "hub.pem"),
                 db_path=tmp_path / "hub.db", terminals={tid: load_private_key(keyset / "device.pem").public_key},
                 group=share_group(), start_seq=1, time_interval=0).start()
    try:
        assert hub.wait_connected(30)
        report = tmp_path / "report.json"
        rc = main(["sim", "demo", "--config", str(config), "--duration", "10", "--rate", "40", "--seed", "2",
                   "--out", str(tmp_path / "out"), "--report", str(report)])
        out = capsys.readouterr().out
        res = json.loads(report.read_text())
        assert rc == 0, out
        assert broker.url in out
        # the outside hub knows nobody: card holders are status_unavailable, QR codes unaffected
        assert res["agreement"] == 1.0
        assert res["sync"]["outbox_depth"] == 0
        assert sorted(hub.stored_seqs(tid)) == list(range(1, res["visitors"] + 1))
    finally:
        hub.stop()


def test_demo_refuses_a_directory_it_did_not_make(tmp_path, capsys):
    """`--out .` in a checkout must not wipe it: a non-empty DIR without the marker is left alone."""
    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "keys").mkdir()                        # even a name the demo uses is not the demo's here
    (out / "keys" / "real.pem").write_text("not a demo key")
    assert main(["sim", "demo", "--duration", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"gate-terminal: error: --out {out}: not empty and not made by a demo "
                                        f"(no {MARKER}); name a new or empty directory"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["keys", "keys/real.pem", "notes.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["sim", "demo", "--duration", "5", "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err and (tmp_path / "file").read_text() == "x"


def test_claim_out_replaces_only_an_earlier_demos_own_files(tmp_path):
    new, empty, earlier = tmp_path / "new", tmp_path / "empty", tmp_path / "earlier"
    empty.mkdir()
    for d in (new, empty, earlier):
        claim_out(d)
        assert [p.name for p in d.iterdir()] == [MARKER]
    for name in OWN:
        (earlier / name).mkdir() if "." not in name else (earlier / name).write_text("old")
    (earlier / "keys" / "root.pem").write_text("old")
    (earlier / "report.json").write_text("{}")  # the user's, beside the demo's
    claim_out(earlier)
    assert sorted(p.name for p in earlier.iterdir()) == sorted([MARKER, "report.json"])


def test_demo_config_puts_the_simulated_devices_in_place_of_the_files(keyset, tmp_path):
    """`sim demo --config FILE` once crashed (exit 70) when FILE had a [camera] or [screen] section:
    the simulated devices were appended, and two [camera] tables are no TOML."""
    from sim.demo import demo_config
    config = keyset / "real.toml"
    config.write_text((keyset / "config.toml").read_text() + '\n[camera]\nsource = "/dev/video0"\ngap = 2.5\n'
                      '\n[screen]\nkind = "framebuffer"\n\n[relay]\nkind = "none"\n\n[retention]\ndays = 9\n')
    ports = {"id_card": "socket://127.0.0.1:1", "ss_card": "socket://127.0.0.1:2", "relay": "socket://127.0.0.1:3"}
    cfg = demo_config(config, "school", tmp_path / "screens", ports)
    assert cfg.camera.source is None and cfg.camera.gap == 1.5        # the file's camera is not the demo's
    assert (cfg.screen.kind, cfg.screen.path) == ("png", str(tmp_path / "screens"))
    assert (cfg.relay.kind, cfg.relay.port) == ("lcus", "socket://127.0.0.1:3")
    assert cfg.id_card.port == "socket://127.0.0.1:1" and cfg.ss_card.port == "socket://127.0.0.1:2"
    assert cfg.venue == "school" and cfg.retention.days == 9 and cfg.path == config   # the rest is the file's
    assert cfg.state_dir == keyset / "state"
    plain = demo_config(keyset / "config.toml", "mall", tmp_path / "screens", ports)
    assert plain.camera.source is None and plain.retention.days == 21 and plain.relay.kind == "lcus"


def test_demo_at_a_hospital_staff_override_some_reviews(tmp_path, capsys):
    """Every other person sent to review is let in by staff with a staff QR code: the report's
    overrides name the review events, and each opened the gate once more."""
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--duration", "15", "--rate", "40", "--seed", "0", "--venue", "hospital",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    assert res["agreement"] == 1.0 and res["wrongly_admitted"] == []
    ov = res["overrides"]
    assert ov["meant"] == 2 and ov["count"] == 2 and ov["right_person"], out  # seed 0: 3 reviews, 2 let in
    assert [(e["decision"], e["reason"]) for e in ov["each"]] == [("allow", "staff_override")] * 2
    assert all(e["ref"] and e["visitor"] for e in ov["each"])
    assert res["gate_pulses"] == res["allowed"] + ov["count"]
    assert "staff overrides 2 of 2 meant" in out


def test_demo_reports_every_prompt_with_its_latency(tmp_path, capsys):
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--duration", "10", "--rate", "40", "--seed", "5", "--venue", "hospital",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    # one prompt per decision (latest wins only within milliseconds: the crowd is seconds apart),
    # the visitors' and the staff's (seed 5: one person sent to review is let in by staff)
    staff = len(res["overrides"]["each"])
    assert staff == 1
    assert sorted(p["seq"] for p in res["prompts"]) == list(range(1, res["decided"] + staff + 1))
    # the ≤ 100 ms target is measured by benchmarks (bench_audio, the demo's report), not asserted here
    assert all(p["latency_ms"] >= 0 for p in res["prompts"])
    assert res["audio_p99_ms"] == max(p["latency_ms"] for p in res["prompts"])
    modes = {(p["mode"], p["text"]) for p in res["prompts"]}
    assert ("tone", None) in modes and ("speech", "请人工核验") in modes   # allow beeps; review speaks
    assert ("speech", "工作人员已放行") in modes                             # an override speaks as a review
    recorded = sorted((tmp_path / "out" / "prompts").glob("*.wav"))
    assert len(recorded) == len(res["prompts"])
    assert f"prompts {len(res['prompts'])}, decision to first sample p99" in out
