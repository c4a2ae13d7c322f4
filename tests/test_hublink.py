"""The hub link end to end: a real Mosquitto (sim.broker, TLS + ACL) and the hub simulator."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_helpers import commit_events, keys, keys_doc, policy_doc, signed, time_doc
from mqtt_fixtures import TestClient, broker, share_group  # noqa: F401  (fixture)
from sim.devkeys import make_trust_list
from sim.hub import HubSim
from terminal import config as cfgmod
from terminal.hub import wire
from terminal.hub import HubLink, HubStatusSource
from terminal.hub.link import INBOUND_LIMITS, MAX_PACKET
from terminal.hub.updates import DataKey
from terminal.core.policy import HealthStatus
from terminal.crypto.sm2 import PrivateKey
from terminal.state.statuscache import StatusCache, cache_key
from terminal.state.store import DB_NAME, Store
from waiting import DEADLINE, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(keyset, broker, tmp_path):  # noqa: F811
    cfg = cfgmod.load(keyset / "config.toml")
    cert, key = broker.client_cert(cfg.terminal_id)
    cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key, query_timeout=0.5)
    store = Store(tmp_path / "state")
    e = Env(cfg, store, keys(keyset), broker, tmp_path)
    yield e
    e.close()


class Env:
    def __init__(self, cfg, store, k, broker, tmp):  # noqa: F811
        self.cfg, self.store, self.k, self.broker, self.tmp = cfg, store, k, broker, tmp
        self.tid = cfg.terminal_id
        self._stops = []

    def hub(self, **kw) -> HubSim:
        cert, key = self.broker.client_cert("hub")
        h = HubSim(self.broker.url, self.broker.ca, cert, key, hub_key=self.k["hub"], root_key=self.k["root"],
                   db_path=self.tmp / "hub.db", terminals={self.tid: self.k["device"].public_key},
                   group=share_group(), start_seq=1, time_interval=0, **kw).start()
        assert h.wait_connected(DEADLINE)
        self._stops.append(h.stop)
        return h

    def link(self, **kw) -> HubLink:
        kw = {"backoff_base": 0.05, "backoff_cap": 0.5, "poll": 0.05, **kw}
        link = HubLink(self.cfg, self.store, self.k["device"], **kw)
        link.start()
        self._stops.append(link.stop)
        return link

    def close(self):
        for stop in reversed(self._stops):
            stop()
        self.store.close()


def paho_backlog(link: HubLink) -> int:
    """Messages inside the current paho client (white box: paho has no public accessor)."""
    client = link._client
    return len(client._out_messages) if client is not None else 0


def test_delivery_end_to_end_birth_and_offline(env):
    hub = env.hub()
    commit_events(env.store, 450)
    with TestClient(env.broker, "hub-2") as obs:
        link = env.link()
        wait_for(lambda: link.connected, "the connection")
        link.notify()
        wait_for(lambda: env.store.outbox_depth() == 0, "the outbox to drain")
        assert hub.stored_seqs(env.tid) == list(range(1, 451))
        assert obs.subscribe(f"hc/v1/t/{env.tid}/state") == 1
        birth = json.loads(obs.get().payload)
        assert birth == {"state": "online", "version": "0.1.0", "epoch": env.store.epoch, "queue": 450,
                         "trust_seq": 0, "policy_seq": 0, "clock": "trusted", "alarms": []}
        seqs = commit_events(env.store, 3)
        link.notify()
        # the pump notes the ack just after the store does: wait for both
        wait_for(lambda: env.store.outbox_depth() == 0 and link.pump.acked_seq == seqs[-1]
                 and not link.pump.in_flight, "new events to leave")
        assert hub.stored_seqs(env.tid) == list(range(1, seqs[-1] + 1))
        s = link.status()
        assert s["connected"] and s["acked_seq"] == 453 and s["in_flight_batches"] == 0 \
            and s["last_sync_at"] == env.store.last_sync_at()
        link.stop()
        assert json.loads(obs.get().payload) == {"state": "offline"}


def test_the_birth_message_is_published_again_when_an_alarm_starts_or_ends(env):
    """fleet.md "Alarms": the retained state carries the terminal's alarms, republished on each
    change, and only on a change."""
    alarms: list[str] = []
    with TestClient(env.broker, "hub-2") as obs:
        assert obs.subscribe(f"hc/v1/t/{env.tid}/state") == 1
        link = env.link(alarms=lambda: list(alarms))
        assert json.loads(obs.get().payload)["alarms"] == []
        alarms.append("relay_down")
        assert json.loads(obs.get().payload)["alarms"] == ["relay_down"]
        alarms.insert(0, "disk_low")
        birth = json.loads(obs.get().payload)
        assert birth["alarms"] == ["disk_low", "relay_down"] and birth["state"] == "online"
        alarms.clear()
        assert json.loads(obs.get().payload)["alarms"] == []
        hub = env.hub()
        commit_events(env.store, 3)
        link.notify()  # pump rounds with no change (the events sent and acked) ...
        wait_for(lambda: env.store.outbox_depth() == 0 and hub.acked_seq(env.tid) == 3, "the events acked")
        alarms.append("camera_down")
        assert json.loads(obs.get().payload)["alarms"] == ["camera_down"]  # ... said nothing between


def test_broker_killed_mid_stream_and_an_outage_of_thousands(env):
    hub = env.hub()
    commit_events(env.store, 2000)
    # After a broker restart the hub may subscribe after the terminal's first batches: those
    # go nowhere and come again after ack_timeout.
    link = env.link(ack_timeout=1.0)
    link.notify()
    wait_for(lambda: (hub.acked_seq(env.tid) or 0) > 0, "the first ack")
    env.broker.kill()  # SIGKILL, batches in flight
    wait_for(lambda: not link.connected, "the link to notice")
    commit_events(env.store, 3000)
    for _ in range(20):  # while the broker is down, nothing waits inside the MQTT client
        link.notify()
        assert paho_backlog(link) == 0
        time.sleep(0.02)
    assert env.store.outbox_depth() >= 3000
    env.broker.start()
    wait_for(lambda: env.store.outbox_depth() == 0, "the outbox to drain after the restart")
    assert hub.stored_seqs(env.tid) == list(range(1, 5001))
    assert link.status()["reconnects"] >= 1


def test_a_terminal_whose_state_was_lost_starts_a_new_epoch_and_loses_nothing(env):
    """A new SD card: the same tid starts again at seq 1. The hub stores those events beside the
    old database's (not as duplicates of them), and acks each database only its own events."""
    hub = env.hub()
    link = env.link()
    commit_events(env.store, 30)
    link.notify()
    wait_for(lambda: env.store.outbox_depth() == 0, "the first database's events to be acked")
    link.stop()
    env.store.close()
    shutil.rmtree(env.tmp / "state")
    env.store = Store(env.tmp / "state")
    link = env.link()
    assert commit_events(env.store, 20) == list(range(1, 21))
    ids = [e["id"] for e in env.store.events()]
    link.notify()
    # without epochs the hub took these for seq 1-20 again and acked 30: they never left
    wait_for(lambda: env.store.outbox_depth() == 0, "the new database's events to be acked")
    assert hub.stats["stored"] == 50 and hub.stats["duplicates"] == 0
    first_epoch, new_epoch = hub.epochs(env.tid)
    assert new_epoch == env.store.epoch != first_epoch
    assert hub.stored_seqs(env.tid, first_epoch) == list(range(1, 31))
    assert hub.stored_seqs(env.tid, env.store.epoch) == list(range(1, 21))
    assert [hub.event(env.tid, s, env.store.epoch)["id"] for s in range(1, 21)] == ids
    assert (hub.acked_seq(env.tid, first_epoch), hub.acked_seq(env.tid, env.store.epoch)) == (30, 20)


def test_hub_consumer_down_while_the_broker_is_up(env):
    hub = env.hub()
    link = env.link(ack_timeout=0.5)
    commit_events(env.store, 300)
    link.notify()
    wait_for(lambda: env.store.outbox_depth() == 0, "the first drain")
    hub.stop()
    commit_events(env.store, 1000)
    link.notify()
    wait_for(lambda: link.pump.sent_max == 1300, "batches sent to a hub that is gone")
    assert env.store.outbox_depth() == 1000  # published and PUBACKed, but not acked: still here
    hub = env.hub()
    wait_for(lambda: env.store.outbox_depth() == 0, "the drain once the hub is back")
    assert hub.stored_seqs(env.tid) == list(range(1, 1301))
    assert link.pump.resends + link.pump.unheard >= 1   # sent again: after the ack timeout or the "nobody subscribed" PUBACK


def test_batches_nobody_was_subscribed_to_go_again_soon_not_after_the_ack_timeout(env):
    """The broker is up, the hub not yet subscribed (as after a broker restart): Mosquitto
    PUBACKs the batches with "no matching subscribers", and the terminal sends them again
    within seconds. The ack timeout is longer than the test's deadline: only that path drains."""
    link = env.link(ack_timeout=120)
    commit_events(env.store, 300)
    link.notify()
    wait_for(lambda: link.pump.unheard >= 1, "a PUBACK saying nobody was subscribed")
    assert env.store.outbox_depth() == 300
    hub = env.hub()
    wait_for(lambda: env.store.outbox_depth() == 0, "the drain once the hub subscribed")
    assert hub.stored_seqs(env.tid) == list(range(1, 301))
    assert link.pump.resends == 0                 # no ack timeout passed


CHILD = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from hub_helpers import event, keys
from terminal import config as cfgmod
from terminal.hub import HubLink
from terminal.state.store import Store
a = json.loads(sys.argv[2])
cfg = cfgmod.load(a["config"])
cfg = cfg.with_hub(broker=a["broker"], ca=a["ca"], cert=a["cert"], key=a["key"])
store = Store(a["state"])
link = HubLink(cfg, store, keys(cfgmod.Path(a["keys"]))["device"], poll=0.05)
link.start()
while True:
    with store.write():
        seq = store.insert_event(event())
    link.notify()
    print(seq, flush=True)
    time.sleep(0.002)
"""


def test_terminal_killed_while_writing_and_sending(env, keyset):
    hub = env.hub()
    env.store.close()  # the child owns the state directory
    cert, key = env.broker.client_cert(env.tid)
    args = {"config": str(keyset / "config.toml"), "broker": env.broker.url, "ca": str(env.broker.ca),
            "cert": str(cert), "key": str(key), "state": str(env.tmp / "state"), "keys": str(keyset)}
    with TestClient(env.broker, "hub-2") as obs:
        obs.subscribe(f"hc/v1/t/{env.tid}/state")
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), json.dumps(args)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            printed = 0
            for line in child.stdout:  # committed seqs, as the child commits them
                printed = int(line)
                if printed >= 300 and (hub.acked_seq(env.tid) or 0) >= 100:
                    break
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        states = [json.loads(obs.get().payload)["state"] for _ in range(2)]
        assert states == ["online", "offline"]  # the will
    env.store = Store(env.tmp / "state")
    last = env.store.last_seq()
    assert last >= printed  # nothing committed was lost
    more = commit_events(env.store, 5)
    assert more == list(range(last + 1, last + 6))  # seq carries on
    env.link().notify()
    wait_for(lambda: env.store.outbox_depth() == 0, "the drain after the restart")
    assert hub.stored_seqs(env.tid) == list(range(1, last + 6))


def test_forged_and_rolled_back_messages_change_nothing(env):
    got: dict[str, list] = {"trust": [], "policy": [], "keys": [], "time": []}
    link = env.link(on_trust=got["trust"].append, on_policy=got["policy"].append,
                    on_data_keys=got["keys"].append, on_time=got["time"].append)
    hub, stranger, tid, now = env.k["hub"], PrivateKey.generate(), env.tid, int(time.time())
    epoch, other_epoch = env.store.epoch, "0" * 16 if env.store.epoch != "0" * 16 else "1" * 16
    t = wire.Topics("hc/v1", tid)
    commit_events(env.store, 50)
    wait_for(lambda: link.connected, "the connection")
    link.notify()
    wait_for(lambda: link.pump.sent_max == 50, "the batch to go out")  # no hub runs: nobody acks
    genuine_trust = make_trust_list(env.k["issuer"], env.k["root"], seq=3, now=now)
    with TestClient(env.broker, "hub-2") as f:
        for topic, raw in [
            (t.ack, wire.ack(tid, epoch, 50, stranger)),           # wrong key
            (t.ack, wire.ack("370102-H0001-09", epoch, 50, hub)),  # another terminal's
            (t.ack, wire.ack(tid, other_epoch, 50, hub)),          # another epoch's
            (t.ack, wire.ack(tid, epoch, 51, hub)),                # beyond what was sent
            (t.trust, genuine_trust),
            (t.trust, make_trust_list(env.k["issuer"], hub, seq=9, now=now)),      # not a root
            (t.trust, make_trust_list(env.k["issuer"], env.k["root"], seq=2, now=now)),  # rollback
            (t.policy, signed(policy_doc(5), hub)),
            (t.policy, signed(policy_doc(6, nat_hours=1), stranger)),
            (t.policy, signed(policy_doc(4, nat_hours=1), hub)),       # rollback
            (t.keys, signed(keys_doc(2, tid, env.k["device"], dkid=3, key=b"D" * 16, not_after=now + 60), hub)),
            (t.keys, signed(keys_doc(3, "370102-H0001-09", env.k["device"]), hub)),  # another tid
            (t.keys, signed(keys_doc(4, tid, env.k["device"]), stranger)),
            (t.keys, signed(keys_doc(1, tid, env.k["device"]), hub)),  # rollback
            (t.time, signed(time_doc(now + 10), hub)),
            (t.time, signed(time_doc(now + 20), stranger)),
            (t.time, signed(time_doc(now + 5), hub)),                  # older
            (t.ack, wire.ack(tid, epoch, 20, hub)),                # genuine, last: all before were handled
        ]:
            assert f.publish(topic, raw, qos=1) == 0
        wait_for(lambda: link.pump.acked_seq == 20, "the genuine ack")
        s = link.status()
        assert s["rejected"] == {"ack": 4, "trust": 2, "policy": 2, "keys": 3, "time": 2, "cmd": 0}
        assert env.store.outbox_depth() == 30
        assert [x.seq for x in got["trust"]] == [3] and [p.venues for p in got["policy"]] == [{"mall": {"nat_hours": 24}}]
        assert got["keys"] == [{3: DataKey(b"D" * 16, now + 60)}] and got["time"] == [now + 10]
        assert {k: env.store.signed_doc(k)[0] for k in ("trust", "policy", "keys", "time")} == \
            {"trust": 3, "policy": 5, "keys": 2, "time": now + 10}


ID, NAME = "370102199003071234", "张三"
PERSON = {"name": NAME, "status": 1, "flags": 0, "nat_at": 1_700_000_000, "nat_result": 1, "vax_doses": 2}


def test_card_queries_answer_cache_and_nothing(env):
    hub = env.hub(people={ID: PERSON})
    link = env.link()
    src = HubStatusSource(link, StatusCache(env.store, cache_key(PrivateKey.generate())), env.cfg)
    wait_for(lambda: link.connected, "the connection")
    now = time.time()
    expected = HealthStatus(1, 0, 1_700_000_000, 1, 2)
    assert src.lookup("id_card", ID, NAME, now) == expected
    assert src.lookup("id_card", "110105194001011235", "李四", now) is None  # unknown_person
    hub.mute_queries = True
    assert src.lookup("id_card", ID, NAME, now + 60) == expected             # no answer in time: cache
    assert src.lookup("ss_card", "110105194001011235", "李四", now) is None  # no answer, no cache
    assert (src.answered, src.from_cache, src.unavailable) == (1, 1, 2)
    env.broker.stop()
    wait_for(lambda: not link.connected, "the link to notice")
    assert src.lookup("id_card", ID, NAME, now + 120) == expected            # offline: cache
    env.store.db.execute("PRAGMA wal_checkpoint(FULL)")
    blob = b"".join(p.read_bytes() for p in (env.tmp / "state").iterdir() if p.name.startswith(DB_NAME))
    assert ID.encode() not in blob and ID[6:14].encode() not in blob and NAME.encode() not in blob


def test_tls_key_missing_at_connect_is_retried_until_it_is_back(env, caplog, mocker):
    """Issue #12 finding 2: a missing client key killed hub-net with a traceback, for good."""
    import logging
    import threading
    caplog.set_level(logging.DEBUG, logger="terminal.hub.link")
    hub = env.hub()
    key = env.cfg.hub.key
    key.rename(key.with_suffix(".away"))  # mid-rotation, say
    clock, alive = mocker.Mock(return_value=1000.0), []  # for the unreachable alarm: minutes pass unwaited
    link = env.link(clock=clock, on_alive=lambda: alive.append(threading.current_thread().name))
    alarm_after = 60 * env.cfg.hub.alarm_hub_minutes
    assert alarm_after == 600  # the default

    def attempts():
        return [r for r in caplog.records if "cannot reach" in r.getMessage()]
    wait_for(lambda: len(attempts()) >= 5, "five connect attempts")
    hub_net = next(t for t in threading.enumerate() if t.name == "hub-net")
    assert hub_net.is_alive() and set(alive) == {"hub-net"}
    named = f"hub.key {key}: No such file or directory"
    assert [r.levelname for r in attempts() if named in r.getMessage()][:5] == ["WARNING"] + ["DEBUG"] * 4
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    n = len(alive)
    wait_for(lambda: len(alive) > n + 3, "hub-net to go on saying it is alive")

    s = link.status()
    assert not s["connected"] and s["alarms"] == [] and s["down_for"] == 0
    clock.return_value += alarm_after - 0.25
    assert link.status()["alarms"] == []
    clock.return_value += 0.25
    s = link.status()
    assert s["alarms"] == ["hub_unreachable"] and s["down_for"] == alarm_after

    # half-written mid-rotation: a new failure, logged once again, naming the files
    key.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
    key.chmod(0o600)
    garbled = f"hub.key {key}: cannot be loaded"
    wait_for(lambda: len([r for r in attempts() if garbled in r.getMessage()]) >= 3, "attempts with the bad key")
    assert [r.levelname for r in attempts() if garbled in r.getMessage()][:3] == ["WARNING", "DEBUG", "DEBUG"]
    assert not link.connected and hub_net.is_alive()

    key.with_suffix(".away").rename(key)
    wait_for(lambda: link.connected, "the connection once the key is back")
    s = link.status()
    assert s["alarms"] == [] and s["down_for"] is None and hub_net.is_alive()
    seqs = commit_events(env.store, 20)
    link.notify()
    wait_for(lambda: env.store.outbox_depth() == 0, "the events to flow")
    assert hub.stored_seqs(env.tid) == seqs

    # a connection lost later: the alarm counts from the drop, both sides of the limit again
    env.broker.kill()
    wait_for(lambda: not link.connected and link.status()["down_for"] is not None, "the link to notice")
    clock.return_value += alarm_after - 0.25
    assert link.status()["alarms"] == []
    clock.return_value += 0.25
    assert link.status()["alarms"] == ["hub_unreachable"]
    env.broker.start()
    wait_for(lambda: link.connected, "the reconnection")
    assert link.status()["alarms"] == []


def test_oversized_messages_stop_at_the_broker_or_on_receipt(env):
    """Issue #12 finding 20: the broker sends no packet over the MAX_PACKET the terminal declared;
    one under it but over its topic's limit is dropped unread; at the limit it is read."""
    limit = INBOUND_LIMITS["policy"]
    link = env.link()
    wait_for(lambda: link.connected, "the connection")
    t = wire.Topics("hc/v1", env.tid)
    with TestClient(env.broker, "hub-2") as f:
        for size in (MAX_PACKET, limit + 1, limit):       # QoS 0, as a flood would come
            assert f.publish(t.policy, b"p" * size, qos=0) == 0
        assert f.publish(t.policy, signed(policy_doc(8), env.k["hub"])) == 0
        wait_for(lambda: link.updates.held["policy"] == 8, "the genuine policy")
    assert link.dropped_messages == 1                       # limit + 1; MAX_PACKET never arrived
    assert link.updates.rejected["policy"] == 1             # the one at the limit: read, refused
    assert link.inbox_bytes == 0
