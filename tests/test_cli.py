"""`sim keys` → `sim issue` → `verify`, as an operator or a script uses them."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sim.issuer import random_id_number
from terminal.cli import main
from terminal.state.clock import MIN_PLAUSIBLE_TIME
from terminal.commands.verify import MAX_TIME

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


def test_stdin_every_line_ending_separates_codes(keyset, capsys):
    """The real stdin splits at \\n only: a lone \\r (or \\r\\n) must still end a code."""
    codes = [issue(keyset, capsys) for _ in range(4)]
    stdin = codes[0] + "\r" + codes[1] + "\r\n" + codes[2] + "\n" + codes[3] + "\r"
    proc = subprocess.run([sys.executable, "-m", "terminal", "verify", "--config", str(keyset / "config.toml"),
                           "--json", "-"], input=stdin.encode(), capture_output=True, cwd=ROOT, timeout=120)
    assert [json.loads(x)["reason"] for x in proc.stdout.splitlines()] == ["ok"] * 4
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("now", ["nan", "inf", "-inf", "-1", str(MIN_PLAUSIBLE_TIME - 1), str(MAX_TIME + 1)])
def test_now_must_be_a_finite_plausible_time(keyset, capsys, now):
    code = issue(keyset, capsys)
    assert main(["verify", "--config", str(keyset / "config.toml"), f"--now={now}", code]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gate-terminal: error: --now must be") and err.count("\n") == 1
    assert not (keyset / "state").exists()  # nothing decided, nothing committed


@pytest.mark.parametrize("now, reason", [(MIN_PLAUSIBLE_TIME, "not_yet_valid"), (MAX_TIME, "expired")])
def test_now_at_either_end_is_a_time(keyset, capsys, now, reason):
    rc, [out] = verify(keyset, capsys, "--now", repr(now), issue(keyset, capsys))
    assert (rc, out["decision"], out["reason"], out["seq"]) == (1, "deny", reason, 1)


def test_audit_of_a_past_code_sees_the_replay(keyset, capsys):
    """Under --now the replay window is purged at that time, not by the wall clock."""
    iat = int(time.time()) - 7 * 86400
    code = issue(keyset, capsys, "--iat", str(iat))
    rc, [first] = verify(keyset, capsys, "--now", str(iat + 10), code)
    assert (rc, first["reason"]) == (0, "ok")
    rc, [again] = verify(keyset, capsys, "--now", str(iat + 20), code)  # a second run, a week later
    assert (rc, again["decision"], again["reason"]) == (1, "deny", "replayed")


def test_issue_bad_id_number_is_not_echoed(keyset, capsys):
    assert main(["sim", "issue", "--keys", str(keyset), "--id", "370102199001011230"]) == 2
    err = capsys.readouterr().err
    assert err == "gate-terminal: error: --id is not a valid 18-character resident ID number\n"


# --- check-config is honest about what it points at (issue #12 finding 4) ----------------
def check(conf, capsys) -> tuple[int, str, str]:
    rc = main(["check-config", "--config", str(conf)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def tls_config(keyset, tmp_path):
    """The keyset's config with a mqtts:// hub and real TLS files from a throw-away CA."""
    from sim.broker import CertAuthority
    ca = CertAuthority(tmp_path / "ca")
    cert, key = ca.issue("370102-H0001-01")
    conf = keyset / "config.toml"
    conf.write_text(conf.read_text().replace("[hub]", f"[hub]\nbroker = 'mqtts://127.0.0.1:8883'\n"
                                                      f"ca = '{ca.cert}'\ncert = '{cert}'\nkey = '{key}'"))
    return conf, {"ca": ca.cert, "cert": cert, "key": key}, ca


def test_check_config_hub_tls_files_are_there(tls_config, capsys):
    conf, files, _ = tls_config
    rc, out, _ = check(conf, capsys)
    assert rc == 0 and "ok" in out
    for name, path in files.items():
        path.rename(path.with_suffix(".away"))
        rc, out, err = check(conf, capsys)
        assert rc == 2 and out == "" and f"hub.{name} {path}: no such file" in err
        path.with_suffix(".away").rename(path)
    assert check(conf, capsys)[0] == 0


def test_check_config_hub_key_must_be_private(tls_config, capsys):
    conf, files, _ = tls_config
    files["key"].chmod(0o640)
    rc, _, err = check(conf, capsys)
    assert rc == 2 and f"hub.key {files['key']}: key file is readable by others (mode 0640)" in err
    assert f"chmod 600 {files['key']}" in err
    files["key"].chmod(0o600)
    assert check(conf, capsys)[0] == 0


def test_check_config_hub_key_must_match_the_certificate(tls_config, capsys):
    conf, files, ca = tls_config
    _, other_key = ca.issue("370102-H0001-02")
    conf.write_text(conf.read_text().replace(str(files["key"]), str(other_key)))
    rc, _, err = check(conf, capsys)
    assert rc == 2 and f"hub.cert {files['cert']} and hub.key {other_key}" in err
    files["ca"].write_text("not a certificate\n")
    conf.write_text(conf.read_text().replace(str(other_key), str(files["key"])))
    rc, _, err = check(conf, capsys)
    assert rc == 2 and f"hub.ca {files['ca']}: not a CA certificate" in err


@pytest.mark.parametrize("section, baud, ok", [
    *[("id_card", b, True) for b in (115200, 57600, 38400, 19200, 9600)],
    ("id_card", 4800, False), ("id_card", 230400, False), ("id_card", 115201, False),
    ("ss_card", 9600, True), ("ss_card", 115200, True),
    ("ss_card", 57600, False), ("ss_card", 19200, False), ("ss_card", 4800, False),
    *[("scanner", b, True) for b in (115200, 57600, 38400, 19200, 9600)],
    ("scanner", 4800, False), ("scanner", 230400, False), ("scanner", 9601, False),
])
def test_check_config_baud_rates_the_readers_use(keyset, capsys, section, baud, ok):
    conf = keyset / "config.toml"
    conf.write_text(conf.read_text() + f"\n[{section}]\nport = 'socket://127.0.0.1:9'\nbaud = {baud}\n")
    rc, _, err = check(conf, capsys)
    assert rc == (0 if ok else 2)
    if not ok:
        assert err.startswith(f"gate-terminal: error: {conf}: {section}.baud must be one of ")
        assert f"not {baud}" in err


def test_check_config_absent_serial_port_is_a_warning(keyset, tmp_path, capsys):
    conf = keyset / "config.toml"
    text = conf.read_text()
    port = tmp_path / "ttyUSB7"
    conf.write_text(text + f"\n[id_card]\nport = '{port}'\n[relay]\nkind = 'lcus'\nport = 'socket://127.0.0.1:9'\n")
    rc, out, err = check(conf, capsys)
    assert rc == 0 and "ok" in out
    assert err == f"gate-terminal: warning: id_card.port {port}: not present now (the daemon retries until " \
                  "it is plugged in)\n"
    port.touch()  # plugged in
    assert check(conf, capsys) == (0, out, "")
    engine = tmp_path / "event-kbd"
    conf.write_text(text + f"\n[scanner]\nkind = 'hid'\ndevice = '{engine}'\n")
    rc, out, err = check(conf, capsys)
    assert rc == 0 and err == f"gate-terminal: warning: scanner.device {engine}: not present now (the daemon " \
                              "retries until it is plugged in)\n"


def _state(keyset):
    from terminal import config as cfgmod
    return cfgmod.load(keyset / "config.toml").state_dir


def test_check_config_state_dir_that_is_a_file(keyset, capsys):
    state = _state(keyset)
    state.write_text("")
    rc, _, err = check(keyset / "config.toml", capsys)
    assert rc == 2 and f"terminal.state_dir {state}: not a directory" in err
    state.unlink()
    state.mkdir()
    rc, out, _ = check(keyset / "config.toml", capsys)
    assert rc == 0 and "database none yet" in out and sorted(state.iterdir()) == []


def _snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("version, ok", [("older", True), ("current", True), ("newer", False)])
def test_check_config_database_schema(keyset, capsys, version, ok):
    import sqlite3
    from terminal.state.store import DB_NAME, MIGRATIONS, Store
    state = _state(keyset)
    n = {"older": 2, "current": len(MIGRATIONS), "newer": len(MIGRATIONS) + 1}[version]
    if version == "older":  # as an earlier release left it
        state.mkdir()
        conn = sqlite3.connect(state / DB_NAME)
        for stmt in ";".join(MIGRATIONS[:n]).split(";"):
            conn.execute(stmt)
    else:
        Store(state).close()
        conn = sqlite3.connect(state / DB_NAME)
    conn.execute(f"PRAGMA user_version = {n}")
    conn.close()
    before = _snapshot(state)
    rc, out, err = check(keyset / "config.toml", capsys)
    assert _snapshot(state) == before  # nothing created, nothing migrated
    if ok:
        assert rc == 0 and f"database schema {n}" in out
        assert ("migrated to" in out) == (n < len(MIGRATIONS))
    else:
        assert rc == 2 and err.strip() == (f"gate-terminal: error: {keyset / 'config.toml'}: terminal.state_dir "
                                           f"{state / DB_NAME}: schema version {n} is newer than this "
                                           f"gate-terminal ({len(MIGRATIONS)})")


@pytest.mark.parametrize("damage, message", [("garbage", "file is not a database"),
                                             ("pages", "database disk image is malformed")])
def test_check_config_corrupt_database(keyset, capsys, damage, message):
    from terminal.state.store import DB_NAME, Store
    from hub_helpers import commit_events
    state = _state(keyset)
    store = Store(state)
    commit_events(store, 300)
    store.close()
    db = state / DB_NAME
    data = bytearray(db.read_bytes())
    if damage == "garbage":
        data[:100] = b"\xa5" * 100       # the header
    else:
        data[-4096 * 3:-4096] = b"\xa5" * 8192   # two pages of events
    db.write_bytes(bytes(data))
    before = _snapshot(state)
    rc, _, err = check(keyset / "config.toml", capsys)
    assert rc == 2 and err.endswith(f": terminal.state_dir {db}: {message}\n")
    assert _snapshot(state) == before
