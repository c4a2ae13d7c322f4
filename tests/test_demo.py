"""The main job: `sim demo` runs the daemon against the simulated hardware with a crowd."""
from __future__ import annotations

import json

from PIL import Image

from mqtt_fixtures import broker, share_group  # noqa: F401  (fixture)
from sim.demo import MARKER, OWN, claim_out
from terminal.cli import main


def test_demo_agrees_with_ground_truth(tmp_path, capsys):
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--duration", "15", "--rate", "40", "--seed", "11", "--venue", "mall",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    assert res["agreement"] == 1.0 and res["missed"] == [] and res["wrongly_admitted"] == []
    assert res["visitors"] >= 8 and res["decided"] == res["visitors"]
    assert res["gate_pulses"] == res["allowed"]
    assert 0 < res["p50_ms"] <= res["p99_ms"] < 150
    assert sum(res["counts"]["decision"].values()) == res["visitors"]
    # one line per person as it happens, then the summary
    assert len([line for line in out.splitlines() if line.rstrip().endswith(" ok")]) == res["visitors"]
    assert "agreement 1.000" in out
    screens = sorted((tmp_path / "out" / "screens").glob("0*.png"))
    colours = {Image.open(p).convert("RGB").getpixel((2, 240)) for p in screens}
    assert len(colours) >= 3  # idle and at least two kinds of decision were on the panel
    for line in out.splitlines():
        assert "Traceback" not in line


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


def test_demo_reports_every_prompt_with_its_latency(tmp_path, capsys):
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--duration", "10", "--rate", "40", "--seed", "5", "--venue", "hospital",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    # one prompt per decision (latest wins only within milliseconds: the crowd is seconds apart)
    assert sorted(p["seq"] for p in res["prompts"]) == list(range(1, res["decided"] + 1))
    assert all(0 <= p["latency_ms"] <= 100 for p in res["prompts"])
    assert res["audio_p99_ms"] == max(p["latency_ms"] for p in res["prompts"]) <= 100
    modes = {(p["mode"], p["text"]) for p in res["prompts"]}
    assert ("tone", None) in modes and ("speech", "请人工核验") in modes   # allow beeps; review speaks
    recorded = sorted((tmp_path / "out" / "prompts").glob("*.wav"))
    assert len(recorded) == len(res["prompts"])
    assert f"prompts {len(res['prompts'])}, decision to first sample p99" in out
