"""Remote commands (docs/protocol/hub.md): refused with a reason unless signed by the hub key,
for this tid, in time and new; each op end to end, the whole daemon against a Mosquitto and the
hub simulator."""
from __future__ import annotations

import json
import logging
import re
import time

import pytest

from mqtt_fixtures import TestClient, broker, share_group  # noqa: F401  (fixture)
from sim.crowd import resident_card
from sim.hub import HubSim
from sim.idcard_sam import VirtualSam
from sim.issuer import random_id_number
from sim.relay import VirtualRelay
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsReader
from terminal import config as cfgmod
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey
from terminal.daemon import Daemon
from terminal.hub import wire
from terminal.hub.commands import MAX_AHEAD, CommandGate
from terminal.ops.recentlog import RecentLog, mask_text
from terminal.commands.run import EXIT_RESTART
from terminal.remote import RemoteOps
from terminal.state.store import Store
from test_daemon import FIND, card_taken_off
from waiting import wait_for

TID = "370102-H0001-01"
NOW = 1_780_000_000


# --- admission: every refusal, both sides of every limit (no broker) -----------------------------
@pytest.fixture
def gate(tmp_path):
    hub = PrivateKey.generate()
    clock = {"now": float(NOW)}
    store = Store(tmp_path / "state")
    g = CommandGate(store, TID, hub.public_key, lambda: clock["now"])
    yield g, hub, clock, store
    store.close()


def cmd(hub, cid="c1", tid=TID, op="ping", args=None, not_after=NOW + 60) -> bytes:
    return wire.command(cid, tid, op, {} if args is None else args, not_after, hub)


def test_a_good_command_is_admitted_once(gate):
    g, hub, _, _ = gate
    a = g.admit(cmd(hub))
    assert a.refusal is None and a.command == wire.Command("c1", TID, "ping", {}, NOW + 60)
    again = g.admit(cmd(hub))
    assert again.id == "c1" and again.command is None and again.refusal.startswith("replayed: ")
    assert g.rejected == 1


@pytest.mark.parametrize("raw, reason", [
    (lambda hub: cmd(PrivateKey.generate()), "bad_signature"),                  # forged
    (lambda hub: cmd(hub, tid="370102-H0001-02"), "other_tid"),
    (lambda hub: cmd(hub, op="format_disk"), "unknown_op"),
    (lambda hub: cmd(hub, not_after=NOW - 1), "expired"),
    (lambda hub: cmd(hub, not_after=NOW + MAX_AHEAD + 1), "too_far_ahead"),
    (lambda hub: cmd(hub, args=[1]), "malformed"),
    (lambda hub: cmd(hub, cid="x" * 65), "malformed"),
    (lambda hub: cmd(hub, cid="a/b"), "malformed"),
    (lambda hub: cmd(hub, not_after=True), "malformed"),
    (lambda hub: wire.seal({"type": "cmd", "id": "c1", "tid": TID, "op": "ping", "args": {}}, hub), "malformed"),
    (lambda hub: b"not an envelope", "bad_signature"),
])
def test_refusals_name_their_reason(gate, raw, reason):
    g, hub, _, _ = gate
    a = g.admit(raw(hub))
    assert a.command is None and a.refusal.split(":")[0] == reason and g.rejected == 1


def test_the_refused_commands_id_is_answered_when_it_has_one(gate):
    g, hub, _, _ = gate
    assert g.admit(cmd(PrivateKey.generate(), cid="forged-1")).id == "forged-1"
    assert g.admit(cmd(hub, cid="x" * 65)).id is None


def test_refusals_are_answered_30_a_minute_then_only_counted(tmp_path):
    hub, mono = PrivateKey.generate(), [0.0]
    store = Store(tmp_path / "state")
    try:
        g = CommandGate(store, TID, hub.public_key, lambda: float(NOW), mono=lambda: mono[0])
        forged = cmd(PrivateKey.generate())
        assert [g.admit(forged).answer for _ in range(31)] == [True] * 30 + [False]
        assert g.admit(cmd(hub, cid="good")).command is not None       # a genuine command still runs
        mono[0] = 59.9
        assert not g.admit(forged).answer
        mono[0] = 60.0                                                  # a minute after the first ones
        assert g.admit(forged).answer and g.rejected == 33
    finally:
        store.close()


def test_not_after_bounds(gate):
    g, hub, clock, _ = gate
    assert g.admit(cmd(hub, cid="at", not_after=NOW)).command is not None            # up to and including
    assert g.admit(cmd(hub, cid="ahead", not_after=NOW + MAX_AHEAD)).command is not None
    clock["now"] = None                                                              # clock untrusted
    assert g.admit(cmd(hub, cid="c2")).refusal.startswith("clock_untrusted: ")


def test_a_command_is_remembered_across_a_restart_until_its_not_after(tmp_path):
    hub, clock = PrivateKey.generate(), {"now": float(NOW)}
    store = Store(tmp_path / "state")
    try:
        assert CommandGate(store, TID, hub.public_key, lambda: clock["now"]).admit(
            cmd(hub, cid="c1", not_after=NOW + 10)).command is not None
    finally:
        store.close()
    store = Store(tmp_path / "state")                                   # the terminal restarted
    try:
        g = CommandGate(store, TID, hub.public_key, lambda: clock["now"])
        assert g.admit(cmd(hub, cid="c1", not_after=NOW + 10)).refusal.startswith("replayed: ")
        clock["now"] = NOW + 11                                          # past it: forgotten, and expired
        assert g.admit(cmd(hub, cid="c2", not_after=NOW + 100)).command is not None
        assert store.db.execute("SELECT id FROM commands ORDER BY id").fetchall() == [("c2",)]
        assert g.admit(cmd(hub, cid="c1", not_after=NOW + 10)).refusal.startswith("expired: ")
    finally:
        store.close()


# --- the diagnostics bundle's limits ---------------------------------------------------------------
def test_diag_chunks_are_at_most_64_kib_and_1_mib_in_all():
    big = bytes(range(256)) * (wire.DIAG_MAX_BUNDLE // 256) + b"x" * (wire.DIAG_MAX_BUNDLE % 256)
    chunks = wire.diag_chunks("c1", big)
    assert max(map(len, chunks)) <= 64 << 10 and sum(map(len, chunks)) <= 1 << 20 and len(chunks) == 16
    parts = [wire.open_diag_chunk(c) for c in chunks]
    assert b"".join(p.data for p in parts) == big and {p.parts for p in parts} == {16}
    with pytest.raises(ValueError, match="at most"):
        wire.diag_chunks("c1", big + b"x")
    with pytest.raises(ValueError):
        wire.open_diag_chunk(b"{" + b" " * (64 << 10) + b"}")


def test_log_lines_are_masked_on_the_way_in():
    assert mask_text("name=张三丰 id=370102199001011237 seq=1234567890123456789012") == \
        "name=张** id=370102********1237 seq=1234567890123456789012"
    h = RecentLog(keep=3)
    log = logging.getLogger("test.recentlog")
    log.addHandler(h)
    try:
        for i in range(5):
            log.warning("line %d 李四", i)
    finally:
        log.removeHandler(h)
    assert [line.split(": ", 1)[1] for line in h.lines()] == ["line 2 李*", "line 3 李*", "line 4 李*"]


# --- end to end -----------------------------------------------------------------------------------
@pytest.fixture
def site(keyset, broker, tmp_path):  # noqa: F811
    from sim.demo import write_config
    sam, relay = VirtualSam(read_delay=0.05), VirtualRelay()
    eps = {"id_card": SerialEndpoint(sam), "ss_card": SerialEndpoint(VirtualSsReader()),
           "relay": SerialEndpoint(relay)}
    for ep in eps.values():
        ep.start()
    path = write_config(keyset, tmp_path / "screens", "mall", {k: e.url for k, e in eps.items()}, pulse_ms=100,
                        result_seconds=0.5)
    cfg = cfgmod.load(path)
    cert, key = broker.client_cert(cfg.terminal_id)
    cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key)
    hub_cert, hub_key = broker.client_cert("hub")
    hub = HubSim(broker.url, broker.ca, hub_cert, hub_key, hub_key=load_private_key(keyset / "hub.pem"),
                 db_path=tmp_path / "hub.db", terminals={cfg.terminal_id: load_private_key(keyset / "device.pem").public_key},
                 group=share_group(), start_seq=1, time_interval=0).start()
    assert hub.wait_connected(30)
    results = []
    d = Daemon(cfg, on_result=lambda p, r: results.append(r))
    d.housekeeping_every = 0.2
    d.start()
    # The terminal subscribes, then publishes its birth: once the birth is at the broker, so is the
    # subscription to cmd (a command sent before it would find no subscriber and be dropped).
    with TestClient(broker, "hub-2") as obs:
        assert obs.subscribe(f"hc/v1/t/{cfg.terminal_id}/state") == 1
        assert json.loads(obs.get(timeout=30).payload)["state"] == "online"
    yield {"daemon": d, "hub": hub, "relay": relay, "sam": sam, "tid": cfg.terminal_id, "path": path,
           "results": results, "eps": eps}
    d.stop()
    hub.stop()
    for ep in eps.values():
        ep.stop()


def run(site, op, args=None, **kw) -> wire.CommandResult:
    cid = site["hub"].send_command(site["tid"], op, args, **kw)
    r = site["hub"].result(cid)
    assert r is not None, f"no answer to {op}"
    return r


def test_forged_expired_other_tid_and_replayed_commands_are_refused_with_reasons(site):
    hub, tid = site["hub"], site["tid"]
    assert run(site, "ping", key=PrivateKey.generate()).detail.startswith("bad_signature: ")
    assert run(site, "ping", not_after=int(time.time()) - 5).detail.startswith("expired: ")
    r = run(site, "restart", for_tid="370102-H0001-99")
    assert not r.ok and r.detail.startswith("other_tid: ")
    cid = hub.send_command(tid, "ping")
    assert hub.result(cid).ok
    hub.send_command(tid, "restart", cid=cid)                      # the same id again, another op
    first, replay = hub.answers(cid, 2)
    assert first.ok and not replay.ok and replay.detail.startswith("replayed: ")
    assert not site["daemon"].restart_requested.is_set()              # the replay ran nothing
    assert site["daemon"].hub.status()["rejected"]["cmd"] == 4


def test_ping_answers_with_the_status_object(site):
    wait_for(lambda: (site["daemon"].verifier.store.state_dir / "status.json").exists(), "the status file")
    r = run(site, "ping")
    assert r.ok and r.detail["terminal_id"] == site["tid"] and r.detail["daemon"] == "running"
    assert {"outbox", "alarms", "problems", "signed_docs", "clock"} <= set(r.detail)


def test_reload_applies_the_file_or_says_why_not(site):
    d, path = site["daemon"], site["path"]
    path.write_text(path.read_text().replace('venue = "mall"', 'venue = "hospital"'))
    r = run(site, "reload")
    assert (r.ok, r.detail) == (True, "reloaded") and d.cfg.venue == "hospital"
    path.write_text(path.read_text().replace('venue = "hospital"', 'venue = "casino"'))
    r = run(site, "reload")
    assert not r.ok and r.detail.startswith("refused: ") and "terminal.venue" in r.detail
    assert d.cfg.venue == "hospital"


def test_set_log_level_for_minutes_then_back(site):
    root = logging.getLogger()
    before = root.level
    assert not run(site, "set_log_level", {"level": "LOUD", "minutes": 1}).ok
    for minutes in (0, 1441, "5", True, None):
        r = run(site, "set_log_level", {"level": "DEBUG", "minutes": minutes})
        assert not r.ok and r.detail.startswith("bad_args: "), minutes
    assert root.level == before
    r = run(site, "set_log_level", {"level": "DEBUG", "minutes": 1440})
    assert r.ok and root.level == logging.DEBUG
    r = run(site, "set_log_level", {"level": "ERROR", "minutes": 0.005})     # 0.3 s, then the level before both
    assert r.ok and root.level == logging.ERROR
    wait_for(lambda: root.level == before, "the level to go back")


def test_diagnostics_bundle_has_no_name_no_id_number_no_secret(site, keyset):
    t, hub = site, site["hub"]
    known, name = random_id_number(), "钱一二"
    n = len(t["results"])
    t["sam"].card = resident_card(name, known)
    wait_for(lambda: len(t["results"]) > n, "the card's decision")
    card_taken_off(t["sam"], FIND)
    logging.getLogger("test").warning("a careless line: %s %s", name, known)   # a leak the mask must catch
    r = run(t, "diagnostics")
    assert r.ok and 1 <= r.detail["parts"] <= 16
    bundle = hub.diagnostics(r.id)
    assert bundle is not None and len(bundle) == r.detail["bytes"]
    text = bundle.decode()
    doc = json.loads(text)
    assert {"status", "config", "devices", "log"} <= set(doc) and doc["config"]["terminal"]["id"] == t["tid"]
    assert any("a careless line" in line for line in doc["log"])
    assert name not in text and known not in text and name[:2] not in text
    assert not re.search(r"\d{17}[\dXx]", text) and not re.search(r"[\u4e00-\u9fff]{2}", text.replace(
        "\\u", ""))  # no run of two CJK characters (a name) anywhere
    for secret in ("device.pem", "hub.pem", "root.pem", "data_keys.json"):
        assert (keyset / secret).read_text().strip()[40:80] not in text


def test_gate_test_pulses_the_relay_once_and_records_a_maintenance_event(site):
    d, relay = site["daemon"], site["relay"]
    before = len(relay.pulses)
    r = run(site, "gate_test")
    assert r.ok and r.detail["pulse"] == "sent"
    wait_for(lambda: len(relay.pulses) == before + 1 and relay.pulses[-1].off_at, "the pulse at the relay")
    store = d.verifier.store
    e = store.db.execute("SELECT method, decision, reason, subject, gate FROM events WHERE seq = ?",
                         [r.detail["seq"]]).fetchone()
    assert e == ("maintenance", "allow", "gate_test", None, "opened")
    wait_for(lambda: site["hub"].event(site["tid"], r.detail["seq"]) is not None, "the event at the hub")
    assert site["hub"].event(site["tid"], r.detail["seq"])["method"] == "maintenance"


def test_gate_test_with_the_relay_down_pulses_nothing_records_nothing_and_says_so(site):
    d, relay = site["daemon"], site["relay"]
    before, seq = len(relay.pulses), d.verifier.store.last_seq()
    site["eps"]["relay"].stop()                                        # the relay's line is gone
    wait_for(lambda: d.relay.error is not None, "the relay driver to notice")
    r = run(site, "gate_test")
    assert not r.ok and r.detail.startswith("relay_down: ") and len(relay.pulses) == before
    assert d.verifier.store.last_seq() == seq


def test_open_gate_is_the_staff_override_of_the_review_pending_now(site):
    """fleet.md: open_gate opens the gate once for the person being reviewed now — the staff
    override's remote form: nothing pending → refused, recorded, no pulse; a review pending →
    pulse and a staff event whose ref is the review's id; the same review cannot be used twice."""
    t, d, relay = site, site["daemon"], site["relay"]
    pulses = len(relay.pulses)
    r = run(t, "open_gate")
    assert not r.ok and r.detail["reason"] == "no_pending_review" and r.detail["ref"] is None
    assert t["results"][-1].method == "staff" and len(relay.pulses) == pulses
    t["hub"].mute_queries = True                      # the hub does not answer: the card is a review
    n = len(t["results"])
    t["sam"].card = resident_card("钱一二", random_id_number())
    wait_for(lambda: len(t["results"]) > n, "the card's decision")
    card_taken_off(t["sam"], FIND)
    review = t["results"][-1]
    assert (review.decision, review.reason) == ("review", "status_unavailable")
    r = run(t, "open_gate")
    assert r.ok and (r.detail["reason"], r.detail["ref"], r.detail["gate"]) == ("staff_override", review.event_id,
                                                                              "opened")
    assert (t["results"][-1].method, t["results"][-1].decision) == ("staff", "allow")
    wait_for(lambda: len(relay.pulses) == pulses + 1, "the override's pulse")
    r = run(t, "open_gate")                           # used up: one opening per review
    assert not r.ok and r.detail["reason"] == "no_pending_review" and len(relay.pulses) == pulses + 1


def test_open_gate_and_update_call_their_entry_points_or_say_they_have_none(site):
    import threading
    from types import SimpleNamespace
    d = site["daemon"]
    d.open_gate = None
    r = run(site, "open_gate")
    assert not r.ok and r.detail.startswith("not_available: ")
    r = run(site, "update")
    assert not r.ok and r.detail.startswith("not_configured: ")
    seen = []
    d.open_gate = lambda command: (seen.append((threading.current_thread().name, command.op)) or
                                   (True, {"seq": 7}))
    r = run(site, "open_gate")
    assert (r.ok, r.detail, seen) == (True, {"seq": 7}, [("decide", "open_gate")])

    class Updater:  # the release updater's face (terminal/update/updater.py on branch tuf)
        def __init__(self):
            self.asked = []

        def check_now(self, version=None):
            self.asked.append((threading.current_thread().name, version))
            return SimpleNamespace(state="current" if version is None else "refused", version=version,
                                   reason="nothing newer" if version is None else "older than the running one")
    d.updater = updater = Updater()                   # set after start: the daemon never started it
    try:
        r = run(site, "update")
        assert (r.ok, r.detail) == (True, {"state": "current", "version": None, "reason": "nothing newer"})
        r = run(site, "update", {"version": "0.0.1"})
        assert not r.ok and r.detail["state"] == "refused"
        r = run(site, "update", {"version": 7})
        assert not r.ok and r.detail.startswith("bad_args: ")
    finally:
        d.updater = None
    assert updater.asked == [("update-check", None), ("update-check", "0.0.1")]


def test_restart_answers_then_asks_for_the_restart_exit(site):
    d = site["daemon"]
    r = run(site, "restart")
    assert (r.ok, r.detail) == (True, "restarting")
    wait_for(d.restart_requested.is_set, "the restart request")


def test_a_huge_log_is_cut_from_its_oldest_lines(site):
    d = site["daemon"]
    ops = RemoteOps(d, RecentLog(keep=5000))
    log = logging.getLogger("test.huge")
    log.addHandler(ops._recent_log)
    try:
        for i in range(4000):
            log.warning("%05d %s", i, "y" * 900)
    finally:
        log.removeHandler(ops._recent_log)
    bundle = ops.bundle()
    assert len(bundle) <= wire.DIAG_MAX_BUNDLE
    lines = json.loads(bundle)["log"]
    assert lines[-1].split(": ", 1)[1].startswith("03999") and len(lines) < 4000


def test_the_run_command_exits_with_the_restart_status_after_a_remote_restart(keyset, mocker):
    """commands/run.py's loop ends on the daemon's restart request and exits 75 (a failure status
    to systemd, whose Restart=on-failure starts the terminal again)."""
    import argparse

    from terminal.commands import run as cmd_run
    start = Daemon.start

    def start_then_restart(self):
        start(self)
        self.restart_requested.set()          # what RemoteOps._restart does once it has answered
    mocker.patch.object(Daemon, "start", autospec=True, side_effect=start_then_restart)
    args = argparse.Namespace(config=keyset / "config.toml", state_dir=None)
    assert cmd_run.run(args) == EXIT_RESTART == 75
    assert Store(cfgmod.load(keyset / "config.toml").state_dir).close() is None   # the daemon let go of it


def test_sim_cmd_sends_one_command_and_prints_its_answer(site, keyset, broker, capsys, tmp_path):  # noqa: F811
    import argparse

    from sim import cli as sim_cli
    cert, key = broker.client_cert("hub-3")
    parser = argparse.ArgumentParser()
    sim_cli.register(parser.add_subparsers())

    def cmd(*argv):
        args = parser.parse_args(["sim", "cmd", *argv, "--broker", broker.url, "--ca", str(broker.ca),
                                  "--cert", str(cert), "--key", str(key), "--keys", str(keyset)])
        return args.func(args), capsys.readouterr().out

    rc, out = cmd("ping")
    answer = json.loads(out)
    assert rc == 0 and answer["ok"] and answer["detail"]["terminal_id"] == site["tid"]
    rc, out = cmd("set_log_level", "--args", '{"level": "LOUD", "minutes": 1}')
    assert rc == 1 and json.loads(out)["detail"].startswith("bad_args: ")
    rc, out = cmd("diagnostics", "--out", str(tmp_path / "diag.json"))
    assert rc == 0 and json.loads(out)["ok"]
    bundle = (tmp_path / "diag.json").read_bytes()
    assert json.loads(bundle)["config"]["terminal"]["id"] == site["tid"]
    assert len(bundle) == json.loads(out)["detail"]["bytes"]


def test_a_new_log_level_replaces_the_last_and_the_old_timer_cannot_undo_it(mocker):
    """A timer already firing when a new level came (cancel too late) must not set the level back."""
    timers = []

    class FakeTimer:
        def __init__(self, interval, function):
            self.interval, self.function, self.cancelled, self.daemon = interval, function, False, False
            timers.append(self)

        def start(self):
            pass

        def cancel(self):
            self.cancelled = True
    mocker.patch("terminal.remote.threading.Timer", FakeTimer)
    root = logging.getLogger()
    before = root.level
    ops, answers = RemoteOps(None, RecentLog()), []

    def reply(ok, detail, wait=0.0):
        answers.append((ok, detail))
        return True
    try:
        ops(wire.Command("a", TID, "set_log_level", {"level": "DEBUG", "minutes": 1}, NOW), reply)
        ops(wire.Command("b", TID, "set_log_level", {"level": "ERROR", "minutes": 2}, NOW), reply)
        assert [t.interval for t in timers] == [60, 120] and timers[0].cancelled
        assert answers[1] == (True, f"log level ERROR for 2 min, then {logging.getLevelName(before)}")
        timers[0].function()                       # the first one fires anyway
        assert root.level == logging.ERROR
        timers[1].function()                       # the second one: back to the level before both
        assert root.level == before
    finally:
        root.setLevel(before)
