"""The main job: `sim demo` runs the daemon against the simulated hardware with a crowd."""
from __future__ import annotations

import json

from PIL import Image

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
