"""The hub simulator against a real Mosquitto, with terminals played by a paho client.

Absence ("not acked", "no reply") is shown with a barrier: a later valid message whose answer
must be the FIRST one the terminal sees.
"""
from __future__ import annotations

import gc
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from mqtt_fixtures import TestClient, broker, response_properties, share_group  # noqa: F401  (broker: fixture)

from sim.devkeys import make_trust_list
from sim.hub import HubSim
from terminal.hub import wire
from terminal.crypto.sm2 import PrivateKey
from terminal.core.trust import EnvelopeError, open_envelope, seal_envelope
from waiting import wait_for

A, B, C = "370102-H0001-01", "370102-H0001-02", "370102-H0001-09"
P = "hc/v1"
GROUP = share_group()
EA, EB = "a1" * 8, "b2" * 8  # two epochs: one terminal database, then its replacement
ID, NAME = "370102199001011237", "张三"


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {n: PrivateKey.generate() for n in ("hub", "root", "issuer", A, B)}


def make_hub(broker, path, keys, identity="hub", **kw) -> HubSim:
    cert, key = broker.client_cert(identity)
    kw.setdefault("terminals", {A: keys[A].public_key, B: keys[B].public_key})
    return HubSim(broker.url, broker.ca, cert, key, hub_key=keys["hub"], root_key=keys["root"],
                  db_path=path, group=GROUP, time_interval=0, backoff=(0.05, 0.5), **kw)


def hub_pin(keys) -> dict:
    return {keys["hub"].public_key.kid(): keys["hub"].public_key}


def ev(seq: int, subject: str = "04" + "00" * 97) -> dict:
    return {"id": str(uuid.uuid4()), "seq": seq, "at": 1764001234.5 + seq, "boot_id": "b", "mono_ns": seq,
            "clock": "trusted", "method": "qr", "decision": "allow", "reason": "ok", "status": 0,
            "flags": 0, "latency_ms": 4.2, "subject": subject, "gate": "opened"}


def batch(keys, seqs, tid=A, signer=None, epoch=EA) -> bytes:
    return wire.batch(tid, epoch, [ev(s) for s in seqs], keys[signer or tid])


def terminal(broker, tid=A) -> TestClient:
    t = TestClient(broker, tid).connect()
    t.subscribe(f"{P}/t/{tid}/ack")
    t.subscribe(f"{P}/t/{tid}/reply")
    return t


def next_ack(t: TestClient, keys) -> dict:
    m = t.get()
    assert m.topic.endswith("/ack")
    return wire.open_signed(m.payload, hub_pin(keys))


def test_batch_published_twice_is_stored_once_and_acked_twice(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "hub.db", keys) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        raw = batch(keys, range(1, 6))
        t.publish(f"{P}/t/{A}/events", raw)
        t.publish(f"{P}/t/{A}/events", raw)
        assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 5}
        assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 5}
        assert hub.stored_seqs(A) == [1, 2, 3, 4, 5]
        assert hub.stats["stored"] == 5 and hub.stats["duplicates"] == 5
        assert hub.event(A, 3) == wire.open_signed(raw, {keys[A].public_key.kid(): keys[A].public_key}
                                                       )["events"][2]


def test_each_epoch_is_stored_deduplicated_and_acked_on_its_own(broker, tmp_path, keys):
    """A terminal whose database was lost starts a new epoch at seq 1: new events, not duplicates."""
    events = f"{P}/t/{A}/events"
    with make_hub(broker, tmp_path / "hub.db", keys, start_seq=1) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        t.publish(events, batch(keys, range(1, 6), epoch=EA))
        assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 5}
        t.publish(events, batch(keys, range(1, 4), epoch=EB))
        assert next_ack(t, keys) == {"tid": A, "epoch": EB, "acked_seq": 3}
        t.publish(events, batch(keys, range(5, 7), epoch=EB))  # EB's seq 4 missing: EA's does not count
        assert next_ack(t, keys) == {"tid": A, "epoch": EB, "acked_seq": 3}
        t.publish(events, batch(keys, range(1, 6), epoch=EA))  # a real duplicate, acked again
        assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 5}
        assert hub.epochs(A) == [EA, EB]
        assert hub.stored_seqs(A, EA) == [1, 2, 3, 4, 5] and hub.stored_seqs(A, EB) == [1, 2, 3, 5, 6]
        assert (hub.acked_seq(A, EA), hub.acked_seq(A, EB)) == (5, 3)
        assert hub.stats["stored"] == 10 and hub.stats["duplicates"] == 5
        assert hub.event(A, 1, EA)["id"] != hub.event(A, 1, EB)["id"]


def test_ack_never_passes_a_gap(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "hub.db", keys) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        for seqs, acked in ((range(1, 4), 3), (range(6, 9), 3), (range(4, 6), 8), (range(10, 12), 8)):
            t.publish(f"{P}/t/{A}/events", batch(keys, seqs))
            assert next_ack(t, keys)["acked_seq"] == acked
        assert hub.stored_seqs(A) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
        assert hub.acked_seq(A) == 8


def test_contiguity_starts_at_first_batch_or_at_start_seq(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "a.db", keys) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        t.publish(f"{P}/t/{A}/events", batch(keys, range(40, 43)))
        assert next_ack(t, keys)["acked_seq"] == 42
    with make_hub(broker, tmp_path / "b.db", keys, start_seq=1) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        t.publish(f"{P}/t/{A}/events", batch(keys, range(3, 5)))  # stored, not acked: 1-2 missing
        t.publish(f"{P}/t/{A}/events", batch(keys, range(1, 3)))
        assert next_ack(t, keys)["acked_seq"] == 4
        assert hub.stored_seqs(A) == [1, 2, 3, 4]


def test_forged_batches_are_stored_nowhere_and_not_acked(broker, tmp_path, keys):
    stranger = PrivateKey.generate()
    with make_hub(broker, tmp_path / "hub.db", keys) as hub, terminal(broker) as t, \
            TestClient(broker, C) as c:
        assert hub.wait_connected()
        events = f"{P}/t/{A}/events"
        t.publish(events, wire.batch(A, EA, [ev(100)], stranger))      # wrong key
        t.publish(events, batch(keys, [101], tid=B, signer=A))         # signed by A, says B
        t.publish(events, batch(keys, [102], tid=B))                   # B's own batch, replayed by A
        t.publish(events, b"\x00garbage{")                             # not an envelope
        c.publish(f"{P}/t/{C}/events", wire.batch(C, EA, [ev(103)], stranger))  # unregistered tid
        t.publish(events, wire.seal({"tid": A, "epoch": EA, "events": [{"seq": "1"}]}, keys[A]))  # malformed
        t.publish(events, wire.seal({"tid": A, "events": [ev(8)]}, keys[A]))  # no epoch (the old format)
        t.publish(events, wire.seal({"tid": A, "epoch": EA.upper(), "events": [ev(9)]}, keys[A]))
        t.publish(events, batch(keys, [7]))
        assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 7}
        assert hub.stats["forged"] == 5 and hub.stats["malformed"] == 3
        assert hub.stored_seqs(A) == [7] and hub.stored_seqs(B) == [] and hub.stored_seqs(C) == []


def test_two_consumers_split_the_batches_and_store_every_seq_once(broker, tmp_path, keys):
    db = tmp_path / "shared.db"
    with make_hub(broker, db, keys) as h1, make_hub(broker, db, keys, identity="hub-2") as h2, \
            terminal(broker) as t:
        assert h1.wait_connected() and h2.wait_connected()
        n_batches, size = 20, 10
        for i in range(n_batches):
            t.publish(f"{P}/t/{A}/events", batch(keys, range(1 + i * size, 1 + (i + 1) * size)))
        seen = 0
        while seen < n_batches * size:  # acks from two consumers may come out of order
            seen = max(seen, next_ack(t, keys)["acked_seq"])
        assert seen == n_batches * size
        assert h1.stats["batches"] > 0 and h2.stats["batches"] > 0
        assert h1.stats["batches"] + h2.stats["batches"] == n_batches
        assert h1.stats["stored"] + h2.stats["stored"] == n_batches * size
        assert h1.stored_seqs(A) == list(range(1, n_batches * size + 1))


def query(t: TestClient, tid: str, subject_hex: str, method="id_card", reply_to=None) -> tuple[str, bytes]:
    qid, corr = str(uuid.uuid4()), os.urandom(8)
    t.publish(f"{P}/t/{tid}/query", json.dumps({"qid": qid, "method": method, "subject": subject_hex}),
              properties=response_properties(reply_to or f"{P}/t/{tid}/reply", corr))
    return qid, corr


def subject(keys, id_number=ID, name=NAME) -> str:
    return keys["hub"].public_key.encrypt(json.dumps({"id_number": id_number, "name": name}).encode()).hex()


def next_reply(t: TestClient, keys) -> tuple[dict, bytes]:
    m = t.get()
    assert m.topic == f"{P}/t/{A}/reply"
    return wire.open_signed(m.payload, hub_pin(keys)), m.properties.CorrelationData


def test_query_answered_signed_with_correlation_data(broker, tmp_path, keys):
    person = {"name": NAME, "status": 1, "flags": 2, "nat_at": 1764000000, "nat_result": 1, "vax_doses": 3,
              "valid_until": 1764086400}
    lines = []
    with make_hub(broker, tmp_path / "hub.db", keys, people={ID: person}, on_line=lines.append) as hub, \
            terminal(broker) as t:
        assert hub.wait_connected()
        qid, corr = query(t, A, subject(keys))
        doc, got_corr = next_reply(t, keys)
        assert got_corr == corr
        assert doc == {"qid": qid, **{k: v for k, v in person.items() if k != "name"}}
        for who in (subject(keys, id_number="11010519491231002X"), subject(keys, name="李四")):
            qid, corr = query(t, A, who)
            assert next_reply(t, keys) == ({"qid": qid, "error": "unknown_person"}, corr)
        qid, corr = query(t, A, "04" + "11" * 120)
        assert next_reply(t, keys) == ({"qid": qid, "error": "bad_subject"}, corr)
    log = "\n".join(lines)
    assert "370102********1237" in log and "张*" in log
    assert ID not in log and NAME not in log


def test_muted_or_misdirected_queries_get_no_reply(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "hub.db", keys, people={ID: {"name": NAME}}, mute_queries=True) as hub, \
            terminal(broker) as t:
        assert hub.wait_connected()
        query(t, A, subject(keys))
        t.publish(f"{P}/t/{A}/query", b"not json")
        # unmuted only once the hub has dealt with both (a PUBACK says the broker has them, not the hub)
        wait_for(lambda: hub.stats["muted_queries"] == 1 and hub.stats["bad_queries"] == 1, "the muted query")
        hub.mute_queries = False
        query(t, A, subject(keys), reply_to=f"{P}/t/{B}/reply")  # the hub must not write for B
        qid, corr = query(t, A, subject(keys))
        doc, got = next_reply(t, keys)
        assert (doc["qid"], got) == (qid, corr)
        assert hub.stats["muted_queries"] == 1 and hub.stats["bad_queries"] == 2


def test_delayed_replies_keep_arrival_order(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "hub.db", keys, people={ID: {"name": NAME}}, reply_delay=0.3) as hub, \
            terminal(broker) as t:
        assert hub.wait_connected()
        sent = [query(t, A, subject(keys)) for _ in range(3)]
        got = [next_reply(t, keys) for _ in range(3)]
        assert [(d["qid"], c) for d, c in got] == sent


def test_retained_broadcasts_for_a_late_subscriber(broker, tmp_path, keys):
    now = int(time.time())
    trust = make_trust_list(keys["issuer"], keys["root"], seq=4, now=now)
    data_key = os.urandom(16)
    with make_hub(broker, tmp_path / "hub.db", keys) as hub:
        assert hub.wait_connected()
        assert hub.publish_time()
        assert hub.publish_trust(trust)
        assert hub.publish_policy({"hospital": {"nat_hours": 48}})
        assert hub.publish_keys(A, {1: data_key}, not_after=now + 1000)
        with pytest.raises(EnvelopeError):
            hub.publish_trust(make_trust_list(keys["issuer"], keys["hub"], seq=5, now=now))  # not the root's
    with TestClient(broker, A) as late:
        got = {}
        for leaf in ("trust", "policy", "time", f"t/{A}/keys"):
            late.subscribe(f"{P}/{leaf}")
            got[leaf] = late.get()
    assert all(m.retain for m in got.values())
    root = keys["root"].public_key
    assert open_envelope(got["trust"].payload, {root.kid(): root}) == open_envelope(trust, {root.kid(): root})
    assert wire.open_signed(got["policy"].payload, hub_pin(keys)) == {
        "type": "policy", "seq": 1, "venues": {"hospital": {"nat_hours": 48}}}
    beacon = wire.open_signed(got["time"].payload, hub_pin(keys))
    assert beacon["type"] == "time" and abs(beacon["t"] - now) < 3600
    k = wire.open_signed(got[f"t/{A}/keys"].payload, hub_pin(keys))
    assert (k["type"], k["seq"], k["tid"]) == ("data-keys", 1, A)
    assert [(e["dkid"], e["not_after"]) for e in k["keys"]] == [(1, now + 1000)]
    assert keys[A].decrypt(bytes.fromhex(k["keys"][0]["key"])) == data_key


def test_subject_decrypted_on_demand(broker, tmp_path, keys):
    with make_hub(broker, tmp_path / "hub.db", keys) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        t.publish(f"{P}/t/{A}/events", wire.batch(A, EA, [ev(1, subject(keys)), ev(2)], keys[A]))
        next_ack(t, keys)
        assert hub.subject(A, 1) == {"id_number": ID, "name": NAME}
        assert hub.subject(A, 2) is None and hub.subject(A, 3) is None
        assert ID not in (tmp_path / "hub.db").read_bytes().decode("utf-8", "replace")


def fds() -> int:
    gc.collect()  # a paho Client closes its wake-up socket pair when collected
    return len(os.listdir("/proc/self/fd"))


def first_life(broker, db, keys) -> None:
    with make_hub(broker, db, keys) as hub, terminal(broker) as t:
        assert hub.wait_connected()
        t.publish(f"{P}/t/{A}/events", batch(keys, range(1, 6)))
        assert next_ack(t, keys)["acked_seq"] == 5
        hub.publish_policy({"mall": {}})


def test_hub_restart_and_broker_restart_resume(broker, tmp_path, keys):
    db = tmp_path / "hub.db"
    fds_before = fds()
    first_life(broker, db, keys)
    assert fds() == fds_before  # threads joined, sockets and DB connections closed
    with make_hub(broker, db, keys) as hub:
        assert hub.wait_connected()
        assert hub.publish_policy({"mall": {}})  # seq continues from the DB
        broker.restart()
        wait_for(lambda: hub.stats["subscribed"] >= 2, "the hub to reconnect (backoff) and subscribe again")
        with terminal(broker) as t:
            t.publish(f"{P}/t/{A}/events", batch(keys, range(3, 9)))  # a resend overlapping the ack
            assert next_ack(t, keys) == {"tid": A, "epoch": EA, "acked_seq": 8}
        with TestClient(broker, B) as late:
            late.subscribe(f"{P}/policy")
            assert wire.open_signed(late.get().payload, hub_pin(keys))["seq"] == 2
        assert hub.stored_seqs(A) == list(range(1, 9))


def cli_args(argv: list[str]):
    import argparse

    from sim import hub_cli
    p = argparse.ArgumentParser()
    hub_cli.add_parser(p.add_subparsers())
    return p.parse_args(["hub", *argv])


def test_cli_usage_errors(broker, keyset, tmp_path, capsys):
    import sqlite3

    from terminal.commands.usage import UsageError
    cert, key = broker.client_cert("hub")
    good = ["--broker", broker.url, "--ca", str(broker.ca), "--cert", str(cert), "--key", str(key), "--group", GROUP]
    # no default group: a hub never subscribes under a name anyone could guess
    with pytest.raises(SystemExit) as e:
        cli_args(good[:-2] + ["--keys", str(keyset)])
    assert e.value.code == 2 and "required: --group" in capsys.readouterr().err
    old_db = tmp_path / "old-hub.db"  # made by a hub without epochs
    with sqlite3.connect(old_db) as con:
        con.execute("CREATE TABLE events (tid TEXT, seq INTEGER, event TEXT, stored_at REAL, PRIMARY KEY (tid, seq))")
    con.close()
    for argv, msg in ((["--broker", broker.url, "--keys", str(keyset), "--group", GROUP], "needs --ca"),
                      (["--broker", "http://x", "--keys", str(keyset), "--group", GROUP], "mqtts://"),
                      ([*good, "--keys", str(keyset / "nowhere")], "--keys"),
                      ([*good, "--keys", str(keyset), "--terminal", "T1=zz"], "TID=DEVICE_PUB_HEX"),
                      ([*good, "--keys", str(keyset), "--people", str(keyset / "config.toml")], "--people"),
                      ([*good, "--keys", str(keyset), "--group", "hub"], "share group"),
                      ([*good, "--keys", str(keyset), "--db", str(old_db)], "without epochs")):
        args = cli_args(argv)
        with pytest.raises(UsageError, match=msg):
            args.func(args)


def test_share_group_must_be_long_and_plain():
    for group, ok in (("a" * 15, False), ("a" * 16, True), ("A-z_09" * 10 + "abcd", True), ("a" * 65, False),
                      ("a" * 15 + "/", False), ("a" * 15 + "+", False), ("hub", False), ("", False)):
        if ok:
            assert wire.shared_events_subscription(P, group) == f"$share/{group}/{P}/t/+/events"
        else:
            with pytest.raises(ValueError, match="share group"):
                wire.shared_events_subscription(P, group)


def test_cli_runs_until_sigterm(broker, keyset, tmp_path):
    import signal
    import subprocess
    import sys

    from terminal.crypto.keyfiles import load_private_key
    cert, key = broker.client_cert("hub")
    people = tmp_path / "people.json"
    people.write_text(json.dumps({ID: {"name": NAME, "status": 0}}, ensure_ascii=False))
    argv = ["--broker", broker.url, "--ca", str(broker.ca), "--cert", str(cert), "--key", str(key), "--group", GROUP,
            "--keys", str(keyset), "--db", str(tmp_path / "hub.db"), "--people", str(people)]
    code = ("import sys; sys.path.insert(0, 'tests'); from test_hub import cli_args; "
            f"a = cli_args({argv!r}); sys.exit(a.func(a))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        device = load_private_key(keyset / "device.pem")
        hub_pub = load_private_key(keyset / "hub.pem").public_key
        with terminal(broker) as t:
            t.subscribe(f"{P}/trust")  # retained by the hub after it subscribed: the hub is ready
            assert t.get().topic == f"{P}/trust"
            t.publish(f"{P}/t/{A}/events", wire.batch(A, EA, [ev(1), ev(2)], device))
            m = t.get()
            assert wire.open_signed(m.payload, {hub_pub.kid(): hub_pub}) == {"tid": A, "epoch": EA, "acked_seq": 2}
            enc = hub_pub.encrypt(json.dumps({"id_number": ID, "name": NAME}).encode()).hex()
            query(t, A, enc)
            assert wire.open_signed(t.get().payload, {hub_pub.kid(): hub_pub})["status"] == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "ack 2" in out and "370102********1237 张*" in out and "hub stopped: 1 batches" in out
    assert ID not in out and NAME not in out


def test_fuzzed_batches_and_queries_never_crash_the_workers(tmp_path, keys):
    """Any bytes on events/query: counted and dropped (or answered), never an exception."""
    from hypothesis import given
    from hypothesis import strategies as st

    from sim.hub import connect_db
    hub = HubSim("mqtts://127.0.0.1:1", None, None, None, hub_key=keys["hub"], db_path=tmp_path / "f.db",
                 terminals={A: keys[A].public_key}, group=GROUP, on_line=lambda line: None)  # never started
    db = connect_db(tmp_path / "f.db")
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                               lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                               max_leaves=12)

    @given(raw=st.binary(max_size=300), doc=json_values, epoch=st.just(EA) | json_values,
           topic_tid=st.sampled_from([A, B, "", "x/y"]))
    def fuzz(raw, doc, epoch, topic_tid):
        before = dict(hub.stats)
        hub._ingest(db, f"{P}/t/{topic_tid}/events", raw)
        hub._ingest(db, f"{P}/t/{topic_tid}/events", wire.seal({"tid": A, "epoch": epoch, "events": doc}, keys[A]))
        hub._answer(f"{P}/t/{A}/query", raw, None, None)
        hub._answer(f"{P}/t/{A}/query", json.dumps({"qid": "q", "method": "id_card", "subject": doc}).encode(),
                    None, None)
        assert sum(hub.stats.values()) > sum(before.values())

    try:
        for payload in (b'{"tid":"%s","epoch":"%s","events":[{"seq":1,"note":"\\ud800"}]}' % (A.encode(), EA.encode()),
                        b'{"tid":"%s","epoch":"%s","events":[{"seq":%d}]}' % (A.encode(), EA.encode(), 2 ** 70)):
            hub._ingest(db, f"{P}/t/{A}/events", seal_envelope(payload, keys[A]))
        nested = b"[" * 5000 + b"]" * 5000  # json.loads alone would raise RecursionError
        hub._ingest(db, f"{P}/t/{A}/events", nested)
        hub._answer(f"{P}/t/{A}/query", nested, None, None)
        assert hub.stats["malformed"] == 1 and hub.stats["stored"] == 1 and "errors" not in hub.stats
        assert hub.stats["forged"] == 1 and hub.stats["bad_queries"] == 1
        fuzz()
        assert db.execute("SELECT count(*) FROM events WHERE tid != ?", [A]).fetchone()[0] == 0
    finally:
        db.close()


def test_hub_started_before_the_broker_connects_when_it_comes_up(tmp_path, keys):
    from sim.broker import Broker
    b = Broker()
    try:
        with make_hub(b, tmp_path / "hub.db", keys) as hub:
            assert not hub.wait_connected(0.3)  # nothing listens yet: retried with backoff
            b.start()
            assert hub.wait_connected()
            assert hub.stats["connect_errors"] >= 1
    finally:
        b.close()
