"""`gate-terminal sim fleet`: simulated terminals (the real store, outbox and hub link) against
a Mosquitto and the hub simulator; the report accounts for every event exactly once."""
from __future__ import annotations

import json
import sqlite3

import pytest

from sim import fleet
from sim.hub import SCHEMA
from terminal.cli import main

E1, E2 = "0123456789abcdef", "fedcba9876543210"
A, B = "370102-F00001-01", "370102-F00002-01"


def test_a_small_fleet_through_a_broker_restart_loses_and_doubles_nothing(tmp_path, capsys):
    report = tmp_path / "report.json"
    # --ack-timeout 3: a batch the broker dropped at the restart (sent before the hub had subscribed
    # again) is sent again 3 s after, not 15 s: the drain waits on it.
    rc = main(["sim", "fleet", "--terminals", "10", "--duration", "6", "--rate", "60", "--workers", "2",
               "--restart-broker-at", "3", "--seed", "3", "--ack-timeout", "3", "--report", str(report)])
    out = capsys.readouterr().out
    rep = json.loads(report.read_text())
    assert rc == 0, out
    assert rep["terminals"] == 10 and rep["workers"] == 2 and rep["ok"] is True
    ev = rep["events"]
    assert ev["sent"] >= 20  # ~60 expected: 10 lanes at one a second for 6 s
    assert ev["at_hub"] == ev["sent"] and ev["missing"] == ev["unexpected"] == 0 and ev["exactly_once"]
    assert ev["terminals_not_drained"] == 0
    con = rep["connects"]
    assert con["terminals_connected"] == 10 and con["total"] >= 20  # each: at start, after the restart
    (restart,) = con["broker_restarts"]
    assert restart["reconnected"] == 10 and restart["all_reconnected_s"] is not None
    assert sum(restart["connects_per_second"]) == 10 == sum(con["per_second_from_start"])
    assert restart["peak_connects_per_s"] == max(restart["connects_per_second"])
    assert rep["hub"]["stored"] == ev["sent"] and rep["hub"]["forged"] == 0
    assert rep["broker"]["rss_connected_kib"] > 0
    assert f"{ev['sent']} events sent, {ev['sent']} at the hub" in out and "OK" in out


def _hub_db(path, rows):
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO events (tid, epoch, seq, event, stored_at) VALUES (?, ?, ?, '{}', 0)", rows)
    db.commit()
    db.close()
    return path


def test_accounting_exactly_once(tmp_path):
    db = _hub_db(tmp_path / "hub.db", [(A, E1, s) for s in (1, 2, 3)] + [(B, E2, 1)])
    acc, stored = fleet.account(db, [{"tid": A, "epoch": E1, "last_seq": 3}, {"tid": B, "epoch": E2, "last_seq": 1}])
    assert acc == {"sent": 4, "at_hub": 4, "missing": 0, "unexpected": 0, "exactly_once": True}
    assert stored == [0, 0, 0, 0]


@pytest.mark.parametrize("rows, results, missing, unexpected", [
    # the hub lacks seq 2 of A
    ([(A, E1, 1), (A, E1, 3)], [(A, E1, 3)], 1, 0),
    # the hub holds a seq A never committed
    ([(A, E1, 1), (A, E1, 2)], [(A, E1, 1)], 0, 1),
    # ... or events of an epoch A does not have
    ([(A, E1, 1), (A, E2, 1)], [(A, E1, 1)], 0, 1),
    # ... and nothing of B
    ([(A, E1, 1)], [(A, E1, 1), (B, E2, 2)], 2, 0),
])
def test_accounting_finds_every_loss_and_every_stray(tmp_path, rows, results, missing, unexpected):
    db = _hub_db(tmp_path / "hub.db", rows)
    acc, _ = fleet.account(db, [{"tid": t, "epoch": e, "last_seq": n} for t, e, n in results])
    assert (acc["missing"], acc["unexpected"], acc["exactly_once"]) == (missing, unexpected, False)


def test_per_second_histogram():
    assert fleet.per_second([10.2, 10.9, 11.0, 13.5, 9.0], 10.0) == [2, 1, 0, 1]
    assert fleet.per_second([], 10.0) == []


@pytest.mark.parametrize("argv, message", [
    (["--terminals", "0"], "--terminals must be 1-5000"),
    (["--terminals", "5001"], "--terminals must be 1-5000"),
    (["--duration", "0"], "--duration"),
    (["--rate", "61"], "--rate"),
    (["--restart-broker-at", "5"], "--restart-broker-at must fall inside"),
    (["--restart-broker-at", "0"], "--restart-broker-at must fall inside"),
    (["--broker-down", "-1", "--restart-broker-at", "1"], "--broker-down"),
    (["--workers", "0"], "--workers must be 1-64"),
    (["--workers", "65"], "--workers must be 1-64"),
    (["--terminals", "161", "--workers", "2"], "at least one per 80 terminals"),
    (["--ramp", "6"], "--ramp must be 0 to --duration"),
    (["--rollout-timeout", "0"], "--rollout-timeout must be above 0"),
    (["--drain-timeout", "3601"], "--rollout-timeout must be above 0"),
    (["--ack-timeout", "0"], "--ack-timeout must be above 0"),
    (["--ack-timeout", "3601"], "--ack-timeout must be above 0"),
])
def test_bad_arguments_are_refused_before_anything_starts(argv, message, tmp_path, capsys, mocker):
    run = mocker.patch("sim.fleet.run_fleet")
    base = {"--terminals": "5", "--duration": "5", "--report": str(tmp_path / "r.json")}
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1]
    rc = main(["sim", "fleet", *[x for kv in base.items() for x in kv]])
    assert rc == 2 and message in capsys.readouterr().err
    run.assert_not_called()


@pytest.mark.parametrize("argv", [["--terminals", "1"], ["--terminals", "5000"], ["--workers", "1"],
                                  ["--terminals", "160", "--workers", "2"],
                                  ["--workers", "64"], ["--restart-broker-at", "4.9"], ["--ramp", "5"],
                                  ["--rate", "60"], ["--rate", "0"], ["--rollout-timeout", "3600"],
                                  ["--drain-timeout", "0.1"], ["--ack-timeout", "0.1"], ["--ack-timeout", "3600"]])
def test_arguments_at_their_limits_are_taken(argv, tmp_path, mocker):
    rep = {"terminals": 1, "ok": True, "events": {"sent": 0, "at_hub": 0, "missing": 0, "unexpected": 0,
                                                   "duplicates_dropped": 0},
           "connects": {"total": 0}, "hub": {"events_per_s_mean": 0}}
    run = mocker.patch("sim.fleet.run_fleet", return_value=rep)
    base = {"--terminals": "5", "--duration": "5", "--report": str(tmp_path / "r.json")}
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1]
    assert main(["sim", "fleet", *[x for kv in base.items() for x in kv]]) == 0
    run.assert_called_once()


def test_out_must_be_new_or_empty(tmp_path, capsys, mocker):
    run = mocker.patch("sim.fleet.run_fleet")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    rc = main(["sim", "fleet", "--terminals", "1", "--duration", "1", "--report", str(tmp_path / "r.json"),
               "--out", str(tmp_path / "used")])
    assert rc == 2 and "not a new or empty directory" in capsys.readouterr().err
    run.assert_not_called()


def test_a_relative_out_is_taken_from_where_the_command_runs(tmp_path, monkeypatch):
    # every terminal resolves its paths (the broker's CA among them) from its own directory: a
    # relative --out left each link failing until the drain timed out
    monkeypatch.chdir(tmp_path)
    f = fleet.Fleet("rel/out", 1)
    assert f.out == tmp_path / "rel" / "out" and f.out.is_absolute()


def test_a_fleet_takes_the_good_release_and_halts_the_bad_one_in_its_pilot(tmp_path, capsys):
    """Two stages (a named pilot tenth, then all): the good release reaches every terminal through
    TUF; the bad one fails its (simulated) health window in the pilot, which the hub halts."""
    from release_helpers import fake_bundle
    good, bad = tmp_path / "good", tmp_path / "bad"
    fake_bundle(good, "1.1.0")
    fake_bundle(bad, "1.2.0", broken=True)
    report = tmp_path / "report.json"
    rc = main(["sim", "fleet", "--terminals", "10", "--duration", "3", "--rate", "30", "--seed", "5",
               "--rollout", f"{good},{bad}", "--rollout-timeout", "90", "--report", str(report)])
    out = capsys.readouterr().out
    rep = json.loads(report.read_text())
    assert rc == 0, out
    ro = rep["rollout"]
    assert ro["as_expected"] and ro["running"] == {"1.1.0": 10}
    stages = [(s["version"], s["name"], s["outcome"], s["terminals"], s["good"], s["failed"]) for s in ro["stages"]]
    assert stages[:2] == [("1.1.0", "pilot", "passed", 1, 1, 0), ("1.1.0", "all", "passed", 9, 9, 0)]
    assert stages[2] == ("1.2.0", "pilot", "halted", 1, 0, 1)
    assert len(stages) == 3  # the bad release's "all" stage never began
    assert all(s["seconds"] > 0 for s in ro["stages"])
    assert rep["events"]["exactly_once"]
    assert "rollout 1.2.0 stage pilot: halted" in out


def test_a_rollout_directory_without_one_bundle_is_refused(tmp_path, capsys):
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    rc = main(["sim", "fleet", "--terminals", "1", "--duration", "1", "--rollout",
               f"{tmp_path / 'good'},{tmp_path / 'bad'}", "--report", str(tmp_path / "r.json")])
    assert rc == 1
    assert f"--rollout {tmp_path / 'good'}: expected one gate-terminal-<version>.tar" in capsys.readouterr().out
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("value, message", [("onlyone", "GOOD_DIR,BAD_DIR"), ("a,b,c", "GOOD_DIR,BAD_DIR"),
                                            (",b", "GOOD_DIR,BAD_DIR"), ("nodir,nodir2", "not a directory")])
def test_bad_rollout_arguments(value, message, tmp_path, capsys, mocker):
    run = mocker.patch("sim.fleet.run_fleet")
    rc = main(["sim", "fleet", "--terminals", "1", "--duration", "1", "--rollout", value,
               "--report", str(tmp_path / "r.json")])
    assert rc == 2 and message in capsys.readouterr().err
    run.assert_not_called()
