"""Operations: install, provision, status, metrics, retention, full disk, journald logging."""
from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from terminal.commands import install as cmd_install, provision as cmd_provision, status as cmd_status
from terminal.ops import journal
from terminal.commands.usage import UsageError
from terminal.state.statusfile import STALE_AFTER, StatusFile
from terminal.state.diskguard import DiskGuard, free_bytes, is_disk_full, probe
from terminal.crypto.keyfiles import load_private_key
from terminal.ops.metrics import Metrics
from terminal.state.retention import purge
from terminal.state.store import Store
from terminal.verifier import Result, uuid7
from waiting import wait_for

NOW = 1_780_000_000.0


def cli(module, *argv: str) -> int:
    p = argparse.ArgumentParser()
    module.register(p.add_subparsers())
    args = p.parse_args(list(argv))
    return args.func(args)


def event(at: float, **kw) -> dict:
    return {"id": uuid7(), "at": at, "boot_id": "b", "mono_ns": 1, "clock": "trusted", "method": "qr",
            "decision": "allow", "reason": "ok", "status": 0, "flags": 0, "latency_ms": 3.0,
            "subject": "00" * 40, **kw}


def add_events(store: Store, ats: list[float]) -> list[int]:
    with store.write():
        return [store.insert_event(event(at)) for at in ats]


# --- install ----------------------------------------------------------------------
def test_install_into_prefix_is_idempotent(tmp_path, capsys):
    prefix = tmp_path / "root"
    assert cli(cmd_install, "install", "--prefix", str(prefix), "--dry-run") == 0
    assert not prefix.exists()                                   # dry run: nothing made
    assert "5 changes would be made" in capsys.readouterr().out

    assert cli(cmd_install, "install", "--prefix", str(prefix)) == 0
    out = capsys.readouterr().out
    assert "5 changes" in out and "skipped" in out               # no user outside a real root
    unit = prefix / "etc/systemd/system/gate-terminal.service"
    assert unit.read_bytes() == cmd_install.UNIT.read_bytes() and unit.stat().st_mode & 0o777 == 0o644
    rules = prefix / "etc/udev/rules.d/99-gate-terminal.rules"
    assert rules.read_bytes() == cmd_install.RULES.read_bytes()
    etc = prefix / "etc/gate-terminal"
    assert etc.stat().st_mode & 0o7777 == 0o750
    config = etc / "config.toml"
    assert config.read_bytes() == cmd_install.EXAMPLE_CONFIG.read_bytes()
    assert config.stat().st_mode & 0o777 == 0o640
    link = prefix / "usr/local/bin/gate-terminal"
    assert link.resolve() == (Path(sys.executable).parent / "gate-terminal").resolve()

    config.write_text("# the installer's own config\n")          # edited on site
    assert cli(cmd_install, "install", "--prefix", str(prefix)) == 0
    out = capsys.readouterr().out
    assert "0 changes" in out and "created" not in out and "updated" not in out
    assert config.read_text() == "# the installer's own config\n"   # never overwritten

    unit.write_text("stale")                                      # an older unit is brought up to date
    unit.chmod(0o600)
    assert cli(cmd_install, "install", "--prefix", str(prefix)) == 0
    assert "1 change" in capsys.readouterr().out
    assert unit.read_bytes() == cmd_install.UNIT.read_bytes() and unit.stat().st_mode & 0o777 == 0o644


def test_install_refuses_to_replace_a_real_binary(tmp_path):
    prefix = tmp_path / "root"
    (prefix / "usr/local/bin").mkdir(parents=True)
    (prefix / "usr/local/bin/gate-terminal").write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="is not a link"):
        cli(cmd_install, "install", "--prefix", str(prefix))


def test_install_with_a_given_config(tmp_path, keyset):
    prefix = tmp_path / "root"
    assert cli(cmd_install, "install", "--prefix", str(prefix), "--config", str(keyset / "config.toml")) == 0
    assert (prefix / "etc/gate-terminal/config.toml").read_bytes() == (keyset / "config.toml").read_bytes()
    with pytest.raises(UsageError, match="nope.toml"):
        cli(cmd_install, "install", "--prefix", str(prefix), "--config", str(tmp_path / "nope.toml"))


# --- provision --------------------------------------------------------------------
def test_provision_makes_keys_once(keyset, tmp_path, capsys):
    out = tmp_path / "etc"
    assert cli(cmd_provision, "provision", "--config", str(keyset / "config.toml"), "--out", str(out),
               "--json") == 0
    reg = json.loads(capsys.readouterr().out)
    assert reg["terminal_id"] == "370102-H0001-01"
    for name in ("device.pem", "client.key"):
        assert (out / name).stat().st_mode & 0o777 == 0o600
    device = load_private_key(out / "device.pem")               # the 0600 rule and the PEM parser
    assert device.public_key.hex() == reg["device_public_key"] == (out / "device.pub.hex").read_text().strip()
    assert device.public_key.verify(b"batch", device.sign(b"batch"))
    r = subprocess.run(["openssl", "req", "-in", reg["csr"], "-noout", "-verify", "-subject"],
                       capture_output=True, text=True, check=True)
    assert "CN = 370102-H0001-01" in r.stdout and "verify OK" in (r.stdout + r.stderr)
    r = subprocess.run(["openssl", "pkey", "-in", str(out / "client.key"), "-noout", "-text"],
                       capture_output=True, text=True, check=True)
    assert "prime256v1" in r.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".provision")]   # scratch removed

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match="never replaces a key"):
        cli(cmd_provision, "provision", "--config", str(keyset / "config.toml"), "--out", str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_provision_prints_registration(keyset, tmp_path, capsys):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_bytes((keyset / "config.toml").read_bytes())
    assert cli(cmd_provision, "provision", "--config", str(etc / "config.toml")) == 0   # beside the config
    text = capsys.readouterr().out
    pub = (etc / "device.pub.hex").read_text().strip()
    assert "tid                370102-H0001-01" in text and f"device public key  {pub}" in text
    assert str(etc / "client.csr") in text and "note:" not in text   # the config names these very files
    # the development key set already has a device key: refused, untouched
    before = (keyset / "device.pem").read_bytes()
    with pytest.raises(UsageError, match="device.pem"):
        cli(cmd_provision, "provision", "--config", str(keyset / "config.toml"))
    assert (keyset / "device.pem").read_bytes() == before


# --- status -------------------------------------------------------------------------
def result(seq: int, **kw) -> Result:
    return Result(**{"decision": "allow", "reason": "ok", "method": "id_card", "status": 0, "flags": 0,
                     "name": "张*", "id": "370102********1234", "seq": seq, "event_id": uuid7(),
                     "latency_ms": 2.5, **kw})


def status_json(config: Path, capsys, *extra: str) -> tuple[int, dict]:
    rc = cli(cmd_status, "status", "--config", str(config), "--json", *extra)
    return rc, json.loads(capsys.readouterr().out)


def test_status_while_the_daemon_holds_the_state_dir(keyset, keyset_config, capsys):
    store = Store(keyset_config.state_dir)                       # holds the flock, as the daemon does
    try:
        add_events(store, [NOW - 600, NOW - 300, NOW - 10])
        store.ack(1, NOW - 200)
        store.save_signed_doc("trust", 3, b"{}")
        files = sorted(os.listdir(keyset_config.state_dir))
        sf = StatusFile(keyset_config.state_dir, keyset_config.terminal_id)
        sf.record(result(3), NOW - 10)
        sf.write(devices={"camera": None, "id_card": None}, hub={"state": "connected"}, clock="trusted",
                 storage={"alarm": False, "free_bytes": 5 << 30}, alarms={})
        rc, snap = status_json(keyset / "config.toml", capsys)
        assert rc == 0 and snap["problems"] == [] and snap["alarms"] == [] and snap["daemon"] == "running"
        assert snap["outbox"]["depth"] == 2 and snap["signed_docs"] == {"trust": 3}
        assert snap["last_sync_at"] == NOW - 200
        assert snap["live"]["last_decisions"][0]["name"] == "张*"
        assert [e["seq"] for e in snap["last_events"]] == [3, 2, 1]
        assert "张三" not in json.dumps(snap, ensure_ascii=False)

        # the daemon's alarms (terminal/alarms.py), as it writes them: a PROBLEM line each
        sf.write(devices={"camera": None, "id_card": "LinkDown: gone"}, hub={"state": "disconnected"},
                 clock="untrusted", storage={"alarm": True, "free_bytes": 1 << 20},
                 alarms={"clock_untrusted": "the wall clock is not trusted", "disk_low": "disk (nearly) full",
                         "id_card_down": "LinkDown: gone"})
        rc, snap = status_json(keyset / "config.toml", capsys)
        assert rc == 1 and snap["alarms"] == ["clock_untrusted", "disk_low", "id_card_down"]
        assert snap["problems"] == ["clock_untrusted: the wall clock is not trusted",
                                    "disk_low: disk (nearly) full", "id_card_down: LinkDown: gone"]
        assert cli(cmd_status, "status", "--config", str(keyset / "config.toml")) == 1
        text = capsys.readouterr().out
        assert "id_card OUT OF ORDER: LinkDown: gone" in text and "outbox:   2 events" in text
        assert "PROBLEM:  id_card_down: LinkDown: gone" in text
        assert "#3" in text and "张*" in text
        assert sorted(os.listdir(keyset_config.state_dir)) == sorted(files + ["status.json"])   # read-only
    finally:
        store.close()


def test_status_hub_unreachable_is_a_problem(keyset, keyset_config, capsys):
    """The link's alarm, as the daemon writes it into the status file (issue #12 finding 2)."""
    store = Store(keyset_config.state_dir)                       # holds the flock, as the daemon does
    sf = StatusFile(keyset_config.state_dir, keyset_config.terminal_id)
    conf = str(keyset / "config.toml")
    for down_for, alarms in ((599.75, {}), (725.0, {"hub_unreachable": "no connection for 12m05s"})):
        sf.write(devices={}, hub={"state": "disconnected", "down_for": down_for, "alarms": list(alarms)},
                 clock="trusted", storage={}, alarms=alarms)
        rc, snap = status_json(keyset / "config.toml", capsys)
        assert rc == (1 if alarms else 0)
        assert snap["problems"] == (["hub_unreachable: no connection for 12m05s"] if alarms else [])
        assert cli(cmd_status, "status", "--config", conf) == rc
        text = capsys.readouterr().out
        assert f"hub:      disconnected for {'12m05s' if alarms else '9m59s'}" in text
        assert ("PROBLEM:  hub_unreachable: no connection for 12m05s" in text) == bool(alarms)
    sf.write(devices={}, hub={"state": "connected", "broker": "mqtts://mq2:8883", "alarms": []}, clock="trusted",
             storage={}, alarms={})
    assert cli(cmd_status, "status", "--config", conf) == 0
    assert "hub:      connected (to mqtts://mq2:8883)\n" in capsys.readouterr().out
    # connected, and yet batches go unacknowledged: the line says so (the link's counts since start)
    for resends, unheard, said in ((1, 0, "; 1 batch sent again\n"),
                                   (2, 3, "; 5 batches sent again (3 no hub subscribed)\n"),
                                   (0, 1, "; 1 batch sent again (1 no hub subscribed)\n"),
                                   (0, 0, "; 2 inbound dropped unread\n")):
        sf.write(devices={}, hub={"state": "connected", "broker": "mqtts://mq2:8883", "alarms": [],
                                  "resends": resends, "unheard": unheard,
                                  "dropped_messages": 0 if resends or unheard else 2},
                 clock="trusted", storage={}, alarms={})
        assert cli(cmd_status, "status", "--config", conf) == 0
        assert "hub:      connected (to mqtts://mq2:8883)" + said in capsys.readouterr().out
    store.close()


@pytest.mark.parametrize("age", [3600, 0], ids=["an hour old", "fresh"])
def test_status_when_the_daemon_is_not_running(keyset, keyset_config, capsys, age):
    """Issue #12 finding 3: a daemon that died (its last status says running, whatever its age,
    with the pid of a live process: this one) is not running — nobody holds the state dir."""
    store = Store(keyset_config.state_dir)
    add_events(store, [NOW - 5])
    StatusFile(keyset_config.state_dir, keyset_config.terminal_id).write(
        devices={"relay": None}, hub={"state": "connected"}, clock="trusted", storage={}, alarms={},
        now=time.time() - age)
    store.close()
    files = sorted(os.listdir(keyset_config.state_dir))
    rc, snap = status_json(keyset / "config.toml", capsys)
    assert rc == 1 and snap["daemon"] == "not running" and snap["alarms"] == []
    assert snap["problems"] == ["daemon not running (it did not stop cleanly: its last status says running)"]
    assert cli(cmd_status, "status", "--config", str(keyset / "config.toml")) == 1
    text = capsys.readouterr().out
    assert "relay ok" not in text and "connected" not in text
    assert snap["outbox"]["depth"] == 1 and snap["last_sync_at"] is None
    # no -wal/-shm left behind (they would belong to whoever ran status, often root)
    assert sorted(os.listdir(keyset_config.state_dir)) == files


def test_status_tells_the_daemon_from_another_holder_and_from_a_wedged_daemon(keyset, keyset_config, capsys):
    """Issue #12 finding 3: the lock says a process holds the state dir, the status file whether
    it is the daemon (state, pid) and whether it answers (age)."""
    store = Store(keyset_config.state_dir)
    sf = StatusFile(keyset_config.state_dir, keyset_config.terminal_id)
    try:
        sf.write_stopped(clock="trusted")                      # e.g. `verify` holds it after a clean stop
        rc, snap = status_json(keyset / "config.toml", capsys)
        assert (rc, snap["daemon"]) == (1, "not running")
        assert snap["problems"] == ["daemon not running (the state directory is held by another "
                                    "gate-terminal process, or the daemon is starting)"]
        for age, problems in ((STALE_AFTER - 1, []), (STALE_AFTER + 5, [f"daemon not answering: its status is "
                                                                         f"{int(STALE_AFTER + 5)} s old (wedged?)"])):
            sf.write(devices={}, hub={"state": "off"}, clock="trusted", storage={}, alarms={}, now=time.time() - age)
            rc, snap = status_json(keyset / "config.toml", capsys)
            assert (snap["daemon"], snap["problems"]) == ("running", problems)
    finally:
        store.close()
    rc, snap = status_json(keyset / "config.toml", capsys)          # lock free, last word "running"
    assert snap["daemon"] == "not running" and "did not stop cleanly" in snap["problems"][0]
    sf.write_stopped(clock="trusted")
    rc, snap = status_json(keyset / "config.toml", capsys)
    assert (snap["daemon"], snap["problems"]) == ("not running", ["daemon not running"])


def test_a_starting_daemon_waits_out_a_status_probe(tmp_path, mocker):
    """`status` takes the lock shared for an instant: a store opening in that instant waits."""
    import fcntl
    from terminal.state import store as store_mod
    Store(tmp_path).close()
    probe = os.open(tmp_path / "lock", os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)
    tries = mocker.spy(store_mod.fcntl, "flock")
    opened = []
    t = threading.Thread(target=lambda: opened.append(Store(tmp_path)))
    t.start()
    wait_for(lambda: tries.call_count >= 2, "the store to find the lock taken and try again")
    os.close(probe)
    t.join(10)
    assert opened, "the store gave up"
    opened[0].close()


def test_status_without_a_database_is_a_usage_error(keyset):
    with pytest.raises(UsageError, match="no database"):
        cli(cmd_status, "status", "--config", str(keyset / "config.toml"))


def test_status_file_is_replaced_atomically(tmp_path):
    sf = StatusFile(tmp_path, "t1", keep=2)
    for seq in range(1, 4):
        sf.record(result(seq), NOW)
    sf.write(devices={}, hub={}, clock="trusted", storage={}, alarms={}, now=NOW)
    doc = json.loads((tmp_path / "status.json").read_text())
    assert [d["seq"] for d in doc["last_decisions"]] == [3, 2] and doc["decided"] == 3
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


# --- metrics ----------------------------------------------------------------------
def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_endpoint(tmp_path):
    store = Store(tmp_path / "state")
    m = Metrics()
    m.watch_outbox(store.outbox_depth, store.oldest_unsynced_at, now=lambda: NOW)
    add_events(store, [NOW - 90, NOW - 30])
    threads = threading.active_count()
    server = m.serve("127.0.0.1:0")
    try:
        for method, decision, reason, ms in [("qr", "allow", "ok", 3.0), ("qr", "deny", "expired", 30.0),
                                             ("id_card", "review", "status_unavailable", 7.0)]:
            m.presented(method)
            m.decided(method, decision, reason, ms)
        m.device_error("id_card")
        m.device_up("camera")
        m.reconnected()
        m.hub_connected(True)
        m.rejected_update("trust")
        m.clock("untrusted")
        m.storage_alarm(True)
        s = scrape(server.port)
    finally:
        server.close()
        store.close()
    assert threading.active_count() == threads                    # the HTTP thread is gone
    assert s["gate_presentations_total", (("method", "qr"),)] == 2
    assert s["gate_decisions_total", (("decision", "deny"), ("method", "qr"), ("reason", "expired"))] == 1
    assert s["gate_decision_latency_seconds_bucket", (("le", "0.004"), ("method", "qr"))] == 1
    assert s["gate_decision_latency_seconds_bucket", (("le", "0.05"), ("method", "qr"))] == 2
    assert s["gate_decision_latency_seconds_count", (("method", "id_card"),)] == 1
    assert s["gate_outbox_depth", ()] == 2 and s["gate_outbox_oldest_age_seconds", ()] == 90
    assert s["gate_device_up", (("device", "id_card"),)] == 0 and s["gate_device_up", (("device", "camera"),)] == 1
    assert s["gate_device_errors_total", (("device", "id_card"),)] == 1
    assert s["gate_hub_reconnects_total", ()] == 1 and s["gate_hub_connected", ()] == 1
    assert s["gate_rejected_updates_total", (("kind", "trust"),)] == 1
    assert s["gate_clock_trusted", ()] == 0 and s["gate_storage_alarm", ()] == 1


def test_metrics_listen_is_local_only():
    with pytest.raises(ValueError, match="127.0.0.1:PORT"):
        Metrics().serve("0.0.0.0:9105")


# --- retention ----------------------------------------------------------------------
@given(st.lists(st.floats(0, 60 * 86400), max_size=30), st.integers(0, 30), st.integers(1, 40))
def test_retention_never_purges_unsynced(tmp_path_factory, ages, acked, days):
    store = Store(tmp_path_factory.mktemp("state"))
    try:
        seqs = add_events(store, [NOW - age for age in ages])
        acked = min(acked, len(seqs))
        store.ack(acked, NOW)                                     # the hub holds seq 1..acked
        purged = purge(store, days, NOW)
        kept = {r[0] for r in store.db.execute("SELECT seq FROM events")}
        expect = {seq for seq, age in zip(seqs, ages) if seq > acked or age <= days * 86400}
        assert kept == expect and purged.events == len(seqs) - len(expect)
        assert purge(store, days, None).events == 0                 # untrusted clock: nothing goes
    finally:
        store.close()


def test_retention_purges_stale_nonces(tmp_path):
    store = Store(tmp_path)
    with store.write():
        store.use_nonce(b"old", int(NOW) - 10)
        store.use_nonce(b"new", int(NOW) + 100)
    assert purge(store, 21, NOW).nonces == 1
    store.close()


# --- full disk ----------------------------------------------------------------------
def test_full_disk_releases_the_reserve_and_loses_nothing(tmp_path, caplog):
    """A real SQLITE_FULL from SQLite (PRAGMA max_page_count stands in for the disk's end)."""
    state = tmp_path / "state"
    store = Store(state)
    guard = DiskGuard(state, reserve_bytes=256 * 1024, low_bytes=0)
    assert guard.ensure_reserve()
    assert guard.reserve.stat().st_blocks * 512 >= 256 * 1024        # real blocks, not sparse
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
    committed = 0
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(10_000):
            add_events(store, [NOW])
            committed += 1
    assert is_disk_full(full.value) and committed > 0
    assert store.db.execute("SELECT count(*) FROM events").fetchone()[0] == committed   # nothing lost
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert probe(store)                                               # still answers: no restart

    assert guard.on_write_error(full.value)                           # reserve released: retry
    assert guard.alarm and not guard.reserve.exists()
    assert not guard.on_write_error(full.value)                       # nothing left to release
    assert not guard.on_write_error(sqlite3.OperationalError("database is locked"))
    store.db.execute(f"PRAGMA max_page_count = {pages + 1000}")       # the released space
    add_events(store, [NOW])                                          # the retried commit fits
    assert store.db.execute("SELECT count(*) FROM events").fetchone()[0] == committed + 1
    assert "disk full" in caplog.text
    store.close()


def test_disk_guard_alarm_follows_free_space(tmp_path, mocker):
    free = mocker.create_autospec(free_bytes, return_value=100 << 20)
    guard = DiskGuard(tmp_path, reserve_bytes=64 * 1024, low_bytes=32 << 20, free=free)
    assert not guard.check() and guard.reserve.exists()
    free.return_value = 10 << 20
    assert guard.check() and guard.alarm
    guard.release()
    free.return_value = 20 << 20               # still short of reserve + low: no new reserve yet
    assert guard.check() and not guard.reserve.exists()
    free.return_value = 200 << 20              # room again: reserve back, alarm off
    assert not guard.check() and guard.reserve.exists() and not guard.alarm
    assert {c.args for c in free.call_args_list} == {(tmp_path,)}   # the state directory's disk, each time


def test_disk_guard_alarm_when_free_space_cannot_be_read(tmp_path, mocker, caplog):
    """A failing disk: statvfs itself errs. The alarm goes on, named, with no traceback; it goes
    off again once the disk answers with room."""
    free = mocker.create_autospec(free_bytes, return_value=200 << 20)
    guard = DiskGuard(tmp_path, reserve_bytes=64 * 1024, low_bytes=32 << 20, free=free)
    assert not guard.check() and not guard.alarm
    free.side_effect = OSError(errno.EIO, "Input/output error")
    assert guard.check() and guard.alarm
    assert "cannot read free space: Input/output error" in caplog.text
    free.side_effect = None
    assert not guard.check() and not guard.alarm
    assert not [r for r in caplog.records if r.exc_info]


def test_disk_full_errors_recognised():
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(OSError(5, "I/O error"))
    assert not is_disk_full(ValueError("x"))


# --- journald ------------------------------------------------------------------------
def log_through(stream, env) -> tuple[bool, str]:
    logger = logging.getLogger("terminal.test_journal")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        under = journal.setup(logging.INFO, stream=stream, env=env)
        logger.error("device id_card out of order: read 370102199001011234 failed")
        logger.info("seq=4 decision=allow")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("presentation by qr could not be decided")
        root.handlers[0].flush()
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    stream.seek(0)
    return under, stream.read()


def test_journal_lines_carry_priorities_and_no_timestamps(tmp_path):
    with open(tmp_path / "journal", "w+") as stream:
        st_ = os.fstat(stream.fileno())
        under, text = log_through(stream, {"JOURNAL_STREAM": f"{st_.st_dev}:{st_.st_ino}"})
    lines = text.splitlines()
    assert under
    assert lines[0] == "<3>terminal.test_journal: device id_card out of order: read 370102********1234 failed"
    assert lines[1] == "<6>terminal.test_journal: seq=4 decision=allow"
    assert all(line.startswith("<3>") for line in lines[2:]) and "RuntimeError: boom" in lines[-1]


def test_console_lines_outside_journald(tmp_path):
    with open(tmp_path / "log", "w+") as stream:
        under, text = log_through(stream, {"JOURNAL_STREAM": "1:2"})   # someone else's stream
    assert not under
    first = text.splitlines()[0]
    assert first.endswith("ERROR terminal.test_journal: device id_card out of order: read 370102********1234 failed")
    assert first[:4].isdigit() and not first.startswith("<")


def test_redact_leaves_other_numbers_alone():
    assert journal.redact("seq=123456789012345678901 id=11010519491231002X") == \
        "seq=123456789012345678901 id=110105********002X"
    assert journal.journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"}) is False


@pytest.mark.parametrize("tid, rc", [("hub", 2), ("370102-H0001-0", 2), ("370102-H0001-03", 0)])
def test_provision_only_a_tid(keyset, tmp_path, capsys, tid, rc):
    """"hub" is the broker's all-powerful identity: provisioning a CSR with CN=hub must be refused."""
    from terminal.cli import main
    config = tmp_path / "config.toml"
    config.write_text((keyset / "config.toml").read_text().replace('"370102-H0001-01"', f'"{tid}"'))
    out = tmp_path / "etc"
    assert main(["provision", "--config", str(config), "--out", str(out), "--json"]) == rc
    captured = capsys.readouterr()
    if rc:
        assert captured.err.strip().splitlines() == [
            f"gate-terminal: error: {config}: terminal.id must be a terminal id like 370102-H0001-03: "
            "a 6-digit district code, a site code of 1-16 capital letters and digits, a 2-digit lane"]
        assert not out.exists()
    else:
        assert json.loads(captured.out)["terminal_id"] == tid and (out / "client.csr").exists()


@pytest.mark.parametrize("tid, rc", [("hub", 2), ("370102-H0001-03", 0)])
def test_sim_keys_only_a_tid(tmp_path, capsys, tid, rc):
    from terminal.cli import main
    assert main(["sim", "keys", "--id", tid, str(tmp_path / "k")]) == rc
    assert (tmp_path / "k" / "config.toml").exists() == (rc == 0)
