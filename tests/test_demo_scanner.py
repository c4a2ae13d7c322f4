"""`sim demo --scanner`: a door with a camera and a scan engine; the crowd uses both."""
from __future__ import annotations

import json
import random
import time

import pytest

from sim.crowd import Lane, ScenarioCamera, Visitor, use_scanner
from sim.demo import scan_engine
from terminal.cli import main


def test_demo_with_a_scan_engine_agrees_with_ground_truth(tmp_path, capsys):
    report = tmp_path / "report.json"
    rc = main(["sim", "demo", "--scanner", "--duration", "20", "--rate", "40", "--seed", "5", "--venue", "mall",
               "--out", str(tmp_path / "out"), "--report", str(report)])
    out = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert rc == 0, out
    assert res["agreement"] == 1.0 and res["missed"] == [] and res["wrongly_admitted"] == []
    assert res["decided"] == res["visitors"] >= 8
    used = res["counts"]["input"]
    assert used.get("scanner", 0) >= 2 and used.get("camera", 0) >= 2, used
    assert res["counts"]["method"]["qr"] == used["scanner"] + used["camera"]  # scanned codes are method qr
    assert res["gate_pulses"] == res["allowed"]
    assert "Traceback" not in out


def test_about_half_of_the_code_holders_use_the_scanner():
    people = [Visitor(i, "green", "qr", "张三", "x", ("allow", "ok")) for i in range(400)]
    cards = [Visitor(i, "id_card", "id_card", "张三", "x", ("allow", "ok")) for i in range(20)]
    use_scanner(people + cards, random.Random(3))
    assert 160 <= sum(v.scanner for v in people) <= 240
    assert not any(v.scanner for v in cards)


def test_a_scanner_visitor_is_timed_from_the_code_sent():
    engine = scan_engine().start()
    try:
        lane = Lane(ScenarioCamera(level="clean"), sam=None, ss=None, engine=engine, scan_s=0.3, leave_s=0)
        v = Visitor(1, "green", "qr", "张三", "x", ("allow", "ok"), text="SDHC1:PRESENTED", scanner=True)
        held = time.monotonic()
        lane.present(v)
        # sent after the engine's own decode time, while the phone was held there
        assert held + engine.decode_delay <= v.presented_at <= time.monotonic()
        # presented_at is on the run's clock (Lane.clock, here monotonic): the same instant, re-based
        text, sent = engine.sent[0]
        assert text == "SDHC1:PRESENTED" and sent == pytest.approx(v.presented_at, abs=1e-3)
    finally:
        engine.stop()
