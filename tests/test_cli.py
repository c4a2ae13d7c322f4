"""`sim keys` → `sim issue` → `verify`, as an operator or a script uses them."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sim.issuer import random_id_number
from terminal.cli import main

from conftest import ROOT


def issue(keyset, capsys, *args) -> str:
    assert main(["sim", "issue", "--keys", str(keyset), *args]) == 0
    return capsys.readouterr().out.strip()


def verify(keyset, capsys, *args) -> tuple[int, list[dict]]:
    rc = main(["verify", "--config", str(keyset / "config.toml"), "--json", *args])
    return rc, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("venue, issue_args, expected", [
    ("mall", [], ("allow", "ok")),
    ("mall", ["--status", "yellow"], ("deny", "yellow_code")),
    ("mall", ["--status", "red"], ("deny", "red_code")),
    ("hospital", ["--status", "red"], ("review", "red_code")),
    ("mall", ["--star"], ("deny", "star_code")),
    ("hospital", ["--star"], ("allow", "ok")),
    ("school", ["--close-contact"], ("deny", "close_contact")),
    ("bus", ["--nat", "none"], ("deny", "nat_missing")),
    ("bus", ["--nat", "pending"], ("deny", "nat_missing")),
    ("mall", ["--nat", "positive"], ("deny", "nat_positive")),
    ("bus", ["--nat-hours-ago", "49"], ("deny", "nat_expired")),
    ("mall", ["--nat-hours-ago", "49"], ("allow", "ok")),
    ("mall", ["--iat", str(int(time.time()) - 600)], ("deny", "expired")),
    ("mall", ["--iat", str(int(time.time()) + 600)], ("deny", "not_yet_valid")),
    ("mall", ["--dkid", "1", "--ttl", "0"], ("deny", "expired")),
])
def test_issue_then_verify(keyset, capsys, venue, issue_args, expected):
    code = issue(keyset, capsys, *issue_args)
    assert code.startswith("SDHC1:")
    rc, [out] = verify(keyset, capsys, "--venue", venue, code)
    assert (out["decision"], out["reason"]) == expected
    assert rc == (0 if expected[0] == "allow" else 1)


def test_masked_output_and_replay_across_runs(keyset, capsys):
    id_number = random_id_number()
    code = issue(keyset, capsys, "--name", "张三丰", "--id", id_number)
    rc, [out] = verify(keyset, capsys, code)
    assert rc == 0 and out["status"] == "green"
    assert out["name"] == "张**" and out["id"] == id_number[:6] + "********" + id_number[-4:]
    rc, [again] = verify(keyset, capsys, code)  # a second run: the nonce is remembered on disk
    assert (rc, again["decision"], again["reason"]) == (1, "deny", "replayed")
    assert again["seq"] == out["seq"] + 1


def test_several_codes_one_run_exit_status(keyset, capsys):
    good, red = issue(keyset, capsys), issue(keyset, capsys, "--status", "red")
    rc, outs = verify(keyset, capsys, good, red, good)
    assert [o["reason"] for o in outs] == ["ok", "red_code", "replayed"]
    assert rc == 1
    rc, outs = verify(keyset, capsys, issue(keyset, capsys), issue(keyset, capsys))
    assert rc == 0 and [o["decision"] for o in outs] == ["allow", "allow"]


def test_human_output(keyset, capsys):
    code = issue(keyset, capsys, "--name", "李四", "--status", "yellow")
    assert main(["verify", "--config", str(keyset / "config.toml"), code]) == 1
    line = capsys.readouterr().out
    assert line.split()[:3] == ["deny", "yellow_code", "李*"]
    assert "李四" not in line


@pytest.mark.parametrize("args, message", [
    (["--id", "370102199001011230"], "--id"),
    (["--ttl", "70000"], "--ttl"),
    (["--dkid", "9"], "--dkid"),
])
def test_issue_usage_errors(keyset, capsys, args, message):
    assert main(["sim", "issue", "--keys", str(keyset), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_sim_keys_refuses_to_overwrite(keyset, capsys):
    before = (keyset / "root.pem").read_bytes()
    assert main(["sim", "keys", str(keyset)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (keyset / "root.pem").read_bytes() == before
    assert main(["sim", "keys", "--force", str(keyset)]) == 0
    assert (keyset / "root.pem").read_bytes() != before
    for name in ("root.pem", "issuer.pem", "hub.pem", "device.pem", "data_keys.json"):
        assert (keyset / name).stat().st_mode & 0o077 == 0


def test_verify_subprocess_no_traceback_on_bad_config(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[terminal]\nid = 'x'\nvenue = 'mall'\nfoo = 1\n")
    proc = subprocess.run([sys.executable, "-m", "terminal", "verify", "--config", str(bad), "x"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"gate-terminal: error: {bad}: unknown key terminal.foo "
                                                "(known: id, venue, state_dir, device_key, venue_name)"]


def test_check_config(keyset, capsys):
    assert main(["check-config", "--config", str(keyset / "config.toml")]) == 0
    assert "ok" in capsys.readouterr().out
    (keyset / "trust.envelope.json").write_text('{"payload": "e30=", "signer": "00000000", "sig": "00"}')
    assert main(["check-config", "--config", str(keyset / "config.toml")]) == 2
    assert "not a pinned key" in capsys.readouterr().err
    (keyset / "trust.envelope.json").unlink()
    assert main(["check-config", "--config", str(keyset / "config.toml")]) == 2
    assert "trust.envelope.json: No such file" in capsys.readouterr().err
    assert not (keyset / "state").exists()  # checking changes nothing
