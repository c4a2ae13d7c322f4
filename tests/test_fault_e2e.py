"""The whole terminal through a night of faults (issue #12, "What it must show").

The real daemon with the simulated devices (SAM and social-security reader and LCUS relay on
pseudo-terminals, the virtual camera), a real Mosquitto with the shipped broker configuration
(sim/broker.py) and the hub simulator. Visitors keep presenting while, in turn, the hub's TLS
client key is removed and restored, the hub's answers turn hostile, the disk fills, the state
directory is lost, and the relay is pulled. Throughout:

* no thread of the daemon dies (its threads are all there, no exception escapes any thread,
  nothing is logged with a traceback, the watchdog sees nothing stalled);
* ``gate-terminal status --json`` and the retained ``state`` topic say what is wrong, and only that;
* every committed event of both epochs is stored at the hub exactly once (the hub dedups by
  ``(tid, epoch, seq)``), with the terminal's own event ids;
* no panel says 请通行 unless the relay switched on for that presentation.

Waits are on conditions (tests/waiting.py); time for the ``hub_unreachable`` alarm is the link's
own injectable clock, moved by the test to each side of ``[hub] alarm_hub_minutes``.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mqtt_fixtures import TestClient, broker, response_properties, share_group  # noqa: F401  (fixture)
from sim.crowd import ScenarioCamera, resident_card
from sim.hub import HubSim
from sim.idcard_sam import VirtualSam
from sim.issuer import Issuer, Person, random_id_number
from sim.relay import VirtualRelay
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsReader
from terminal import config as cfgmod
from terminal import daemon as daemon_mod
from terminal.commands import status as status_cmd
from terminal.core.trust import seal_envelope
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey
from terminal.daemon import Daemon
from terminal.hub import bridge as bridge_mod
from terminal.hub import wire
from terminal.hub.link import INBOUND_LIMITS, HubLink
from terminal.screen import texts
from terminal.screen.render import Renderer
from terminal.state import diskguard
from terminal.state.statusfile import read_status_file

from test_daemon import FIND, WatchedGrabber, card_taken_off, demo_config, phone_taken_away
from waiting import wait_for

ALLOW_HEADLINE = texts.HEADLINES["allow"]   # 请通行
STAFF_OPENS = "请联系工作人员开门"            # fleet.md: an allow while the relay is down
DISK_BANNER = "存储空间不足"                   # the screen's alarm banner while the disk is full
DAEMON_THREADS = {"decide", "camera", "id_card", "ss_card", "screen", "housekeeping", "hub-pump", "hub-net"}
NESTED = b"[" * 2000 + b"]" * 2000            # within every topic's size limit, far past MAX_DEPTH
statvfs_free = diskguard.free_bytes            # the real one, before the test stands in for it


class FullDisk:
    """The state directory's disk, as the daemon sees it: SQLite cannot grow the database
    (``PRAGMA max_page_count``, the stand-in tests/test_ops.py uses for the disk's end) and
    ``statvfs`` reports what is left. Full, it is full beyond the reserve too: releasing the
    reserve gives SQLite nothing (the worst case, where the daemon must refuse, not guess)."""

    def __init__(self):
        self.full = False

    def free(self, path: Path) -> int:
        return 4096 if self.full else statvfs_free(path)

    def fill(self, store) -> None:
        """No page left for the store: the database may not grow, and the room its pages still
        have is taken, as another writer's data would take it. The replay window's last pages
        are filled with nonces (no larger than a code's, and already expired, so retention takes
        them later) until none fits: a code's commit then needs a page that is not there. A
        card's event, which has no nonce, may still find room in its page."""
        self.full = True
        with store.write():
            pages = store.db.execute("PRAGMA page_count").fetchone()[0]
            store.db.execute(f"PRAGMA max_page_count = {pages}")
        refused, keep_until = 0, 1
        while refused < 50:  # the rightmost pages full: no row of this size fits any more
            keep_until += 1
            try:
                with store.write():
                    store.use_nonce(secrets.token_bytes(8), keep_until)
                refused = 0
            except sqlite3.OperationalError as e:
                assert diskguard.is_disk_full(e)
                refused += 1

    def clear(self, store) -> None:
        with store.write():
            store.db.execute("PRAGMA max_page_count = 1073741823")
        self.full = False


def panel_text(layout) -> str:
    """Every text on a panel, each whole however many lines it was wrapped onto (a headline
    beside the outcome's mark may be: 请联系工作 / 人员开门), the texts apart by a space."""
    return " ".join("".join(i.text for i in layout.role(role))
                    for role in dict.fromkeys(item.role for item in layout.items))


@dataclass
class Visit:
    result: object | None   # the verifier's Result, None if nothing was decided (not committed)
    panel: object           # the Panel the screen laid out for it
    shown: str              # every text on that panel
    pulsed: bool            # the relay switched on for it


class Door:
    """The terminal under test and what a person at the door, its operator and the hub see."""

    def __init__(self, *, cfg, config_path: Path, keyset: Path, devices: dict, eps: dict, disk: FullDisk,
                 layouts, capsys):
        self.cfg, self.config_path, self.keyset = cfg, config_path, keyset
        self.sam, self.relay, self.eps = devices["sam"], devices["relay"], eps
        self.disk = disk
        self.layouts = layouts   # spy on Renderer.layout_result: every result panel drawn
        self.capsys = capsys
        self.issuer = Issuer.from_dir(keyset)
        self.results: list = []
        self.daemon: Daemon | None = None

    # --- the daemon ------------------------------------------------------------------
    def start(self, link_clock=None) -> Daemon:
        self.camera = ScenarioCamera(level="clean", fps=20)
        self.grabber = WatchedGrabber(self.camera)
        self.daemon = Daemon(self.cfg, camera=self.grabber, on_result=lambda p, r: self.results.append(r))
        # The status file every 0.2 s, not 5 s: the test waits for each change to reach `status`.
        self.daemon.housekeeping_every = 0.2
        self.daemon.open()
        if link_clock is not None:  # the clock of the hub_unreachable alarm only
            self.daemon.hub._clock = link_clock
        self.daemon.start()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    @property
    def store(self):
        return self.daemon.verifier.store

    def threads_alive(self) -> None:
        """Each of the daemon's threads there, once (none dead, none left over from a stopped run)."""
        names = [t.name for t in threading.enumerate()]
        assert {n: names.count(n) for n in DAEMON_THREADS} == dict.fromkeys(DAEMON_THREADS, 1)
        assert sorted(n.split()[0] for n in names if n.startswith(("relay ", "grabber "))) == ["grabber", "relay"]
        assert self.daemon.watchdog.stalled() == []

    def told_to_walk_through(self) -> int:
        """Panels drawn so far that said 请通行."""
        return sum(ALLOW_HEADLINE in panel_text(layout) for layout in self.layouts.spy_return_list)

    # --- the operator: gate-terminal status --json -------------------------------------
    def status(self, after: float | None = None) -> tuple[int, dict]:
        """``status --json`` once the daemon has written its status file after ``after``."""
        after = time.time() if after is None else after
        state_dir = self.cfg.state_dir
        wait_for(lambda: (read_status_file(state_dir, time.time()) or {}).get("written_at", 0) > after,
                 "a status file written after the change")
        self.capsys.readouterr()
        code = status_cmd.run(argparse.Namespace(config=self.config_path, state_dir=None, json=True))
        return code, json.loads(self.capsys.readouterr().out)

    def status_until(self, cond, what: str, timeout: float = 10.0) -> tuple[int, dict]:
        """``status --json`` until ``cond(code, snapshot)``."""
        got = []

        def check():
            got[:] = [self.status()]
            return cond(*got[0])
        wait_for(check, what, timeout=timeout)
        return got[0]

    # --- visitors ----------------------------------------------------------------------
    def _visit(self, present, leave) -> Visit:
        n, drawn, pulses = len(self.results), len(self.layouts.spy_return_list), len(self.relay.pulses)
        present()
        wait_for(lambda: len(self.layouts.spy_return_list) > drawn, "a panel for the visitor")
        panel = self.layouts.call_args_list[drawn].args[1]
        layout = self.layouts.spy_return_list[drawn]
        committed = panel.reason != texts.SYSTEM_ERROR
        if committed:
            wait_for(lambda: len(self.results) > n, "the decision behind the panel")
        shown = panel_text(layout)
        if ALLOW_HEADLINE in shown:  # told to walk through: the gate must have opened for it
            assert wait_for(lambda: len(self.relay.pulses) > pulses, "the relay to switch on for 请通行", timeout=5)
        leave()
        return Visit(self.results[n] if committed else None, panel, shown, len(self.relay.pulses) > pulses)

    def show_code(self, person: Person | None = None) -> Visit:
        code = self.issuer.issue(person or Person())
        return self._visit(lambda: self.camera.show(code, 30),
                           lambda: phone_taken_away(self.camera, self.grabber, self.cfg.camera.gap))

    def show_card(self, name: str, id_number: str) -> Visit:
        return self._visit(lambda: setattr(self.sam, "card", resident_card(name, id_number)),
                           lambda: card_taken_off(self.sam, FIND))

    def committed_events(self) -> list[dict]:
        with self.store.read() as db:
            cur = db.execute("SELECT * FROM events ORDER BY seq")
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]


class StateTopic:
    """The retained ``state`` topic as the hub reads it."""

    def __init__(self, client: TestClient, topic: str):
        self.client = client
        assert client.subscribe(topic) == 1
        self.seen: list[dict] = []

    def _drain(self) -> None:
        while not self.client.messages.empty():
            self.seen.append(json.loads(self.client.messages.get_nowait().payload))

    def wait(self, cond, what: str) -> dict:
        def ok():
            self._drain()
            return self.seen and cond(self.seen[-1])
        wait_for(ok, f"the state topic to say {what}")
        return self.seen[-1]


def bombs(hub: PrivateKey, stranger: PrivateKey, tid: str, epoch: str) -> dict[str, list[bytes]]:
    """Hostile messages on each topic the terminal reads, none larger than the broker passes:
    nested past the bound, numbers past their range though signed by the hub, forged signers."""
    return {
        "ack": [NESTED, wire.ack(tid, epoch, 2 ** 70, hub), wire.ack(tid, epoch, 10 ** 6, stranger),
                wire.ack(tid, "0" * 16, 1, hub)],                         # another epoch's ack
        "policy": [NESTED, seal_envelope(NESTED, hub), wire.seal({"type": "policy", "seq": 2 ** 70,
                   "venues": {"mall": {}}}, hub), wire.policy(99, {"mall": {}}, stranger)],
        "time": [NESTED, wire.time_beacon(1e300, hub), wire.seal({"type": "time", "t": "Infinity"}, hub),
                 wire.time_beacon(time.time(), stranger)],
        "keys": [NESTED, seal_envelope(NESTED, hub), wire.seal({"type": "data-keys", "seq": 2 ** 70, "tid": tid,
                                                                "keys": []}, hub)],
        "trust": [seal_envelope(NESTED, stranger)],
    }


@pytest.fixture
def rig(keyset, broker, tmp_path, mocker, monkeypatch, capsys):  # noqa: F811
    # The hub link retries within a second or two, not up to a minute (the jittered backoff's
    # cap): the test waits for it to come back once its key is restored.
    monkeypatch.setattr(bridge_mod, "HubLink", functools.partial(HubLink, backoff_base=0.2, backoff_cap=2.0))
    disk = FullDisk()
    monkeypatch.setattr(daemon_mod, "DiskGuard", functools.partial(diskguard.DiskGuard, free=disk.free))
    monkeypatch.setattr(diskguard, "free_bytes", disk.free)  # what status.json reports free
    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    sam, relay = VirtualSam(read_delay=0.05), VirtualRelay()
    eps = {"id_card": SerialEndpoint(sam), "ss_card": SerialEndpoint(VirtualSsReader()), "relay": SerialEndpoint(relay)}
    for ep in eps.values():
        ep.start()
    config_path = demo_config(keyset, tmp_path / "screens", "mall", {k: e.url for k, e in eps.items()},
                              pulse_ms=200, result_seconds=0.5)
    cfg = cfgmod.load(config_path)
    tid = cfg.terminal_id
    cert, key = broker.client_cert(tid)
    cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key, query_timeout=1.0,
                       alarm_hub_minutes=1)        # the smallest allowed
    cfg = replace(cfg, camera=replace(cfg.camera, gap=0.3))
    hub_key = load_private_key(keyset / "hub.pem")
    known = random_id_number()
    now = time.time()
    hub = HubSim(broker.url, broker.ca, *broker.client_cert("hub"), hub_key=hub_key,
                 root_key=load_private_key(keyset / "root.pem"), db_path=tmp_path / "hub.db",
                 terminals={tid: load_private_key(keyset / "device.pem").public_key}, group=share_group(),
                 people={known: {"name": "钱一", "status": 0, "flags": 0, "nat_at": int(now - 3600), "nat_result": 1,
                                 "vax_doses": 3, "valid_until": int(now + 86400)}},
                 start_seq=1, time_interval=0).start()
    assert hub.wait_connected(30)
    # The operator's view of the fleet; a kept session, so it reads on across broker restarts.
    watcher = TestClient(broker, "hub-2", clean_start=False).connect(session_expiry=600)
    door = Door(cfg=cfg, config_path=config_path, keyset=keyset, devices={"sam": sam, "relay": relay}, eps=eps,
                disk=disk, layouts=mocker.spy(Renderer, "layout_result"), capsys=capsys)
    yield {"door": door, "hub": hub, "hub_key": hub_key, "known": known, "tid": tid, "broker": broker,
           "watcher": watcher, "died": died}
    door.stop()
    watcher.close()
    hub.stop()
    for ep in eps.values():
        ep.stop()


def no_tracebacks(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_the_terminal_through_a_night_of_faults(rig, caplog, mocker):
    caplog.set_level(logging.INFO)
    door, hub, tid, broker = rig["door"], rig["hub"], rig["tid"], rig["broker"]
    hub_key, known = rig["hub_key"], rig["known"]
    alarm_clock = mocker.Mock(return_value=1000.0)   # the link's alarm clock: moves when we say
    daemon = door.start(link_clock=alarm_clock)
    link = daemon.hub
    epoch1 = door.store.epoch
    state = StateTopic(rig["watcher"], wire.Topics(wire.DEFAULT_PREFIX, tid).state)

    # --- all well ------------------------------------------------------------------------
    wait_for(lambda: link.connected, "the terminal online")
    s = state.wait(lambda s: s["state"] == "online", "online")
    assert (s["epoch"], s["alarms"]) == (epoch1, [])
    v = door.show_code()
    assert (v.result.decision, v.pulsed) == ("allow", True) and ALLOW_HEADLINE in v.shown
    v = door.show_card("钱一", known)
    assert (v.result.decision, v.result.reason, v.pulsed) == ("allow", "ok", True)   # the hub answered
    code, snap = door.status()
    assert (code, snap["problems"], snap["live"]["hub"]["state"]) == (0, [], "connected")
    door.threads_alive()

    # --- the hub's TLS client key removed, the broker restarted: offline --------------------
    key = door.cfg.hub.key
    key.rename(key.with_name(key.name + ".away"))
    broker.restart()
    wait_for(lambda: not link.connected, "the terminal to lose the hub")
    wait_for(lambda: "hub.key" in caplog.text, "the missing key named in the log")
    state.wait(lambda s: s == {"state": "offline"}, "offline (the broker's will)")
    v = door.show_code()
    assert (v.result.decision, v.pulsed) == ("allow", True)                   # codes: fully offline
    v = door.show_card("钱一", known)
    assert (v.result.decision, v.result.reason) == ("allow", "ok")             # the cached answer
    v = door.show_card("孙二", random_id_number())
    assert (v.result.decision, v.result.reason, v.pulsed) == ("review", "status_unavailable", False)
    assert ALLOW_HEADLINE not in v.shown
    alarm_after = 60.0 * door.cfg.hub.alarm_hub_minutes
    alarm_clock.return_value = 1000.0 + alarm_after - 0.5                     # just short of the alarm
    code, snap = door.status()
    assert snap["live"]["hub"]["state"] == "disconnected" and snap["live"]["hub"]["alarms"] == []
    assert (code, snap["problems"]) == (0, [])
    alarm_clock.return_value = 1000.0 + alarm_after                           # there
    code, snap = door.status()
    assert snap["live"]["hub"]["alarms"] == ["hub_unreachable"]
    assert (code, snap["alarms"]) == (1, ["hub_unreachable"])
    assert snap["problems"] == ["hub_unreachable: no connection for 1m00s"]
    door.threads_alive()
    key.with_name(key.name + ".away").rename(key)                             # restored
    wait_for(lambda: link.connected, "the terminal to reconnect by itself", timeout=90)
    named = [r for r in caplog.records if r.levelno >= logging.WARNING and "hub.key" in r.getMessage()]
    assert len(named) == 1, "the missing key is logged once, not at every retry"
    code, snap = door.status()
    assert (code, snap["problems"], snap["live"]["hub"]["state"]) == (0, [], "connected")
    s = state.wait(lambda s: s["state"] == "online", "online again")
    assert (s["epoch"], s["alarms"]) == (epoch1, [])                          # hub_unreachable is over
    wait_for(lambda: door.store.outbox_depth() == 0, "the offline decisions at the hub", timeout=30)
    door.threads_alive()

    # --- the hub turns hostile -------------------------------------------------------------
    rejected = dict(link.status()["rejected"])
    dropped = link.dropped_messages
    hostile = TestClient(broker, "hub-3").connect()
    try:
        topics = wire.Topics(wire.DEFAULT_PREFIX, tid)
        sent = bombs(hub_key, PrivateKey.generate(), tid, epoch1)
        for kind, payloads in sent.items():
            for p in payloads + [b"x" * (INBOUND_LIMITS[kind] + 1)]:   # and one too large to read
                assert hostile.publish(getattr(topics, kind), p) in (0, 0x10)
        assert hostile.publish(topics.trust, NESTED, retain=True) == 0     # retained: it greets every connect
        oversized = len(sent)
        # A card asked about while the hub is mute, and only the hostile answer: bombs each.
        assert hostile.subscribe(topics.query) == 1
        hub.mute_queries = True
        person = random_id_number()
        n = len(door.results)
        door.sam.card = resident_card("孙三", person)
        query = hostile.get()
        qid = wire.open_query(query.payload).qid
        good = {"status": 0, "flags": 0, "nat_at": int(time.time()), "nat_result": 1, "vax_doses": 3}
        answers = [NESTED, b"r" * (INBOUND_LIMITS["reply"] + 1),
                   wire.reply(qid, {**good, "valid_until": 10 ** 400}, hub_key),
                   wire.reply(qid, {**good, "valid_until": int(time.time()) + 600}, PrivateKey.generate())]
        for a in answers:
            hostile.publish(topics.reply, a,
                            properties=response_properties(topics.reply, query.properties.CorrelationData))
        wait_for(lambda: len(door.results) > n, "the card decided without the hub")
        r = door.results[n]
        assert (r.method, r.decision, r.reason) == ("id_card", "review", "status_unavailable")
        card_taken_off(door.sam, FIND)
    finally:
        hub.mute_queries = False
        hostile.close()
    expected = {k: len(v) + (k == "trust") for k, v in sent.items()}
    wait_for(lambda: {k: link.status()["rejected"][k] - rejected[k] for k in sent} == expected,
             "every hostile message read and refused")
    assert daemon.status_source.rejected == 3       # nested, out of range, forged: the oversized one unread
    assert link.dropped_messages - dropped == oversized + 1
    # the genuine hub is heard as before: a new policy, acks, card answers
    assert hub.publish_policy({"mall": {"nat_hours": 48}}, seq=7)
    wait_for(lambda: link.updates.held["policy"] == 7, "the genuine policy applied")
    v = door.show_card("钱一", known)
    assert (v.result.decision, v.result.reason, v.pulsed) == ("allow", "ok", True)
    wait_for(lambda: door.store.outbox_depth() == 0, "the events acked despite the forged acks")
    code, snap = door.status()
    assert (code, snap["problems"]) == (0, []) and snap["signed_docs"].get("policy") == 7
    assert snap["live"]["hub"]["rejected"] == link.status()["rejected"]      # the operator sees them counted
    door.threads_alive()

    # --- the disk fills ----------------------------------------------------------------------
    door.disk.fill(door.store)
    v = door.show_code()
    assert v.result is None and not v.pulsed and ALLOW_HEADLINE not in v.shown     # not committed: shut
    assert v.panel.reason == texts.SYSTEM_ERROR and DISK_BANNER in v.shown
    v = door.show_card("钱一", known)         # its event may still find room in a page, or not
    assert v.result is None and not v.pulsed or (v.result.decision, v.pulsed) == ("allow", True)
    code, snap = door.status()
    assert (code, snap["alarms"], len(snap["problems"])) == (1, ["disk_low"], 1)
    assert snap["problems"][0].startswith("disk_low: disk (nearly) full")
    state.wait(lambda s: s["state"] == "online" and s["alarms"] == ["disk_low"], "disk_low")
    door.threads_alive()
    door.disk.clear(door.store)                                                    # room again
    wait_for(lambda: not daemon.disk.alarm, "the storage alarm to clear")
    code, snap = door.status()
    assert (code, snap["problems"]) == (0, [])
    state.wait(lambda s: s["state"] == "online" and s["alarms"] == [], "disk_low over")
    v = door.show_code()
    assert (v.result.decision, v.pulsed) == ("allow", True)
    wait_for(lambda: door.store.outbox_depth() == 0, "every committed event at the hub")
    door.threads_alive()

    # --- the state directory is lost; the terminal starts again ----------------------------
    first = door.committed_events()
    door.stop()
    code, snap = door.status(after=0)                       # a clean stop is known at once
    assert (code, snap["daemon"], snap["alarms"], snap["problems"]) == (1, "not running", [], ["daemon not running"])
    shutil.rmtree(door.cfg.state_dir)
    daemon = door.start()
    link = daemon.hub
    epoch2 = door.store.epoch
    assert epoch2 != epoch1
    wait_for(lambda: link.connected, "the new terminal online")
    s = state.wait(lambda s: s["state"] == "online" and s["epoch"] == epoch2, "the new epoch")
    assert s["alarms"] == []
    wait_for(lambda: link.status()["rejected"]["trust"] == 1, "the retained hostile trust list refused again")
    for _ in range(2):
        v = door.show_code()
        assert (v.result.decision, v.pulsed) == ("allow", True)
    v = door.show_card("钱一", known)
    assert (v.result.decision, v.result.reason) == ("allow", "ok")
    wait_for(lambda: door.store.outbox_depth() == 0, "the new epoch's events at the hub")
    second = door.committed_events()
    code, snap = door.status()
    assert (code, snap["problems"]) == (0, [])
    door.threads_alive()

    # --- what the hub holds: every event of both epochs, once -------------------------------
    assert hub.epochs(tid) == [epoch1, epoch2]
    for epoch, events in ((epoch1, first), (epoch2, second)):
        assert hub.stored_seqs(tid, epoch) == [e["seq"] for e in events] == list(range(1, len(events) + 1))
        at_hub = [hub.event(tid, e["seq"], epoch) for e in events]
        assert [e["id"] for e in at_hub] == [e["id"] for e in events]
        # the relay worked all night: every allow went out with its pulse
        assert [e["gate"] for e in at_hub] == [{"allow": "opened"}.get(e["decision"]) for e in events]
    assert hub.stats["stored"] == len(first) + len(second)
    assert door.told_to_walk_through() <= len(door.relay.pulses)   # every 请通行 had its opening
    assert rig["died"] == []
    no_tracebacks(caplog)


def test_a_pulled_relay_never_sends_anyone_into_a_shut_gate(rig, caplog):
    """fleet.md: a relay that cannot be reached is alarm ``relay_down``; an allow is shown as
    请联系工作人员开门 and its event carries ``"gate": "fault"`` (``"opened"`` when the pulse went
    out, ``null`` for deny and review)."""
    caplog.set_level(logging.INFO)
    door, hub, tid = rig["door"], rig["hub"], rig["tid"]
    daemon = door.start()
    state = StateTopic(rig["watcher"], wire.Topics(wire.DEFAULT_PREFIX, tid).state)
    wait_for(lambda: daemon.hub.connected, "the terminal online")
    state.wait(lambda s: s["state"] == "online" and s["alarms"] == [], "online, no alarm")
    visits = [door.show_code()]
    assert (visits[0].result.decision, visits[0].pulsed) == ("allow", True) and ALLOW_HEADLINE in visits[0].shown

    door.eps["relay"].unplug()                                   # pulled while nobody passes
    code, snap = door.status_until(lambda code, snap: code == 1 and snap["problems"], "relay_down in status")
    assert snap["alarms"] == ["relay_down"] and len(snap["problems"]) == 1
    assert snap["problems"][0].startswith("relay_down: ")
    state.wait(lambda s: s["alarms"] == ["relay_down"], "relay_down")
    visits.append(door.show_code())                              # allowed, but the gate cannot open
    v = visits[-1]
    assert (v.result.decision, v.pulsed) == ("allow", False)
    assert STAFF_OPENS in v.shown and ALLOW_HEADLINE not in v.shown
    visits.append(door.show_code(Person(status="red")))          # denied: nothing to open
    assert (visits[-1].result.decision, visits[-1].pulsed) == ("deny", False)
    door.threads_alive()

    door.eps["relay"].replug()
    door.status_until(lambda code, snap: (code, snap["problems"]) == (0, []), "relay_down cleared")
    state.wait(lambda s: s["alarms"] == [], "relay_down over")
    visits.append(door.show_code())
    assert (visits[-1].result.decision, visits[-1].pulsed) == ("allow", True) and ALLOW_HEADLINE in visits[-1].shown
    door.threads_alive()

    wait_for(lambda: door.store.outbox_depth() == 0, "every event at the hub")
    epoch = door.store.epoch
    gates = [hub.event(tid, v.result.seq, epoch).get("gate", "absent") for v in visits]
    assert gates == ["opened", "fault", None, "opened"]
    assert rig["died"] == []
    no_tracebacks(caplog)
