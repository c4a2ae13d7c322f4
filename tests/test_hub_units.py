"""The hub link's parts that need no broker: backoff, outbox pump, signed updates, status cache."""
from __future__ import annotations

import json
import queue
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_helpers import commit_events, keys, keys_doc, policy_doc, signed, time_doc
from sim.devkeys import make_trust_list
from terminal import hubproto
from terminal.hub import HubStatusSource, SignedUpdates, load_persisted, usable_keys
from terminal.hub.outbox import OutboxPump
from terminal.policy import HealthStatus, Policy
from terminal.sm2 import PrivateKey
from terminal.statuscache import StatusCache, hmac_sm3
from terminal.store import DB_NAME, Store

TID = "370102-H0001-01"  # the keyset's terminal id


@pytest.fixture
def k(keyset):
    return keys(keyset)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state")
    yield s
    s.close()


# --- outbox pump --------------------------------------------------------------------

def make_pump(store, k, **kw) -> OutboxPump:
    return OutboxPump(store, TID, k["device"], k["hub"].public_key, **kw)


def test_batches_in_order_signed_by_device_key_window_bounded(store, k):
    commit_events(store, 450)
    pump = make_pump(store, k, window=2)
    sent = []
    while (nxt := pump.next_batch()) is not None:
        payload, b = nxt
        doc = hubproto.open_signed(payload, {k["device"].public_key.kid(): k["device"].public_key})
        assert (doc["tid"], doc["epoch"]) == (TID, store.epoch)
        sent.append([e["seq"] for e in doc["events"]])
        pump.sent(b)
    assert sent == [list(range(1, 201)), list(range(201, 401))]  # window of 2 batches
    n = pump.check_ack(hubproto.ack(TID, store.epoch, 200, k["hub"]))
    assert n == 200 and pump.apply_ack(n) == 200
    payload, b = pump.next_batch()
    assert [e["seq"] for e in hubproto.open_signed(payload, {k["device"].public_key.kid(): k["device"].public_key})
            ["events"]] == list(range(401, 451))
    assert store.outbox_depth() == 250 and store.last_sync_at() is not None


def test_forged_and_too_high_acks_delete_nothing(store, k):
    commit_events(store, 300)
    pump = make_pump(store, k)
    payload, b = pump.next_batch()
    pump.sent(b)  # seq 1-200 sent, 201-300 not yet
    stranger = PrivateKey.generate()
    other_epoch = "0" * 16 if store.epoch != "0" * 16 else "1" * 16
    bad = [
        hubproto.ack(TID, store.epoch, 200, stranger),                  # wrong key
        hubproto.ack("370102-H0001-02", store.epoch, 200, k["hub"]),    # another terminal's ack
        hubproto.ack(TID, other_epoch, 200, k["hub"]),                  # a lost database's (or forged) epoch
        hubproto.ack(TID, store.epoch, 201, k["hub"]),                  # beyond what was sent
        signed({"tid": TID, "epoch": store.epoch, "acked_seq": "200"}, k["hub"]),       # malformed
        signed({"tid": TID, "epoch": "ABCDEF0123456789", "acked_seq": 200}, k["hub"]),   # not an epoch
        signed({"tid": TID, "epoch": store.epoch + "0", "acked_seq": 200}, k["hub"]),
        signed({"tid": TID, "acked_seq": 200}, k["hub"]),               # no epoch (the old format)
        signed({"tid": TID, "epoch": store.epoch, "acked_seq": True}, k["hub"]),
        signed({"tid": TID, "epoch": store.epoch, "acked_seq": -1}, k["hub"]),
        b"not json", b'{"acked_seq": 200}',                             # unsigned
    ]
    for raw in bad:
        assert pump.check_ack(raw) is None
    assert pump.rejected_acks == len(bad)
    assert store.outbox_depth() == 300 and pump.acked_seq == 0
    assert pump.check_ack(hubproto.ack(TID, store.epoch, 200, k["hub"])) == 200  # the limit itself is believed
    assert pump.check_ack(hubproto.ack(TID, store.epoch, 0, k["hub"])) == 0


def test_reset_and_ack_timeout_resend_from_last_ack(store, k):
    now = [0.0]
    commit_events(store, 400)
    pump = make_pump(store, k, ack_timeout=10, mono=lambda: now[0])
    for _ in range(2):
        pump.sent(pump.next_batch()[1])
    pump.apply_ack(pump.check_ack(hubproto.ack(TID, store.epoch, 150, k["hub"])))
    assert [(b.first, b.last) for b in pump.in_flight] == [(1, 200), (201, 400)]  # 151-200 unacked
    assert not pump.check_timeout()
    now[0] = 11
    assert pump.check_timeout() and pump.resends == 1
    assert pump.next_batch()[1].first == 151  # the unacked part of the first batch comes again
    pump.sent(pump.next_batch()[1])
    now[0] = 11 + 19
    assert not pump.check_timeout()  # still silent: the second wait is twice as long
    now[0] = 11 + 21
    assert pump.check_timeout() and pump.resends == 2
    # a late ack of the first sending still counts (it is within what was sent)
    assert pump.check_ack(hubproto.ack(TID, store.epoch, 400, k["hub"])) == 400


@given(st.lists(st.tuples(st.sampled_from(["send", "ack", "reset"]), st.integers(0, 10)), max_size=40))
def test_pump_never_loses_or_skips_events(tmp_path_factory, keyset, actions):
    """Whatever the order of sends, acks and resets, every unacked event is sent again and no
    ack removes an event that was never sent."""
    k = keys(keyset)
    s = Store(tmp_path_factory.mktemp("st"))
    try:
        commit_events(s, 60)
        pump = make_pump(s, k, batch_size=7, window=3)
        for action, x in actions:
            if action == "send" and (nxt := pump.next_batch()) is not None:
                pump.sent(nxt[1])
            elif action == "ack":
                n = pump.check_ack(hubproto.ack(TID, s.epoch, x * 7, k["hub"]))
                if n is not None:
                    pump.apply_ack(n)
                    assert n <= pump.sent_max
            elif action == "reset":
                pump.reset()
        assert s.outbox_depth() == 60 - pump.acked_seq
        pump.reset()
        acked, seen = pump.acked_seq, []
        while (nxt := pump.next_batch()) is not None:
            seen += list(range(nxt[1].first, nxt[1].last + 1))
            pump.sent(nxt[1])
            pump.apply_ack(nxt[1].last)
        assert seen == list(range(acked + 1, 61)) and s.outbox_depth() == 0
    finally:
        s.close()


# --- signed updates -----------------------------------------------------------------

class Got:
    def __init__(self):
        self.trust, self.policy, self.keys, self.time = [], [], [], []


def make_updates(store, cfg, k, got: Got) -> SignedUpdates:
    return SignedUpdates(store, cfg, k["device"], on_trust=got.trust.append, on_policy=got.policy.append,
                         on_data_keys=got.keys.append, on_time=got.time.append)


def test_updates_accept_newer_and_refuse_forged_rolled_back_and_foreign(store, keyset_config, k):
    cfg, got = keyset_config, Got()
    u = make_updates(store, cfg, k, got)
    stranger = PrivateKey.generate()
    now = int(time.time())

    assert u.handle("trust", make_trust_list(k["issuer"], k["root"], seq=5, now=now))
    assert got.trust[0].seq == 5
    assert not u.handle("trust", make_trust_list(k["issuer"], k["hub"], seq=6, now=now))   # hub may not sign it
    assert not u.handle("trust", make_trust_list(k["issuer"], k["root"], seq=4, now=now))  # rollback

    assert u.handle("policy", signed(policy_doc(3, nat_hours=12), k["hub"]))
    assert got.policy == [{"mall": {"nat_hours": 12}}]
    assert not u.handle("policy", signed(policy_doc(4), stranger))
    assert not u.handle("policy", signed(policy_doc(2), k["hub"]))
    assert not u.handle("policy", signed(policy_doc(5, nat_hours="x"), k["hub"]))

    assert u.handle("keys", signed(keys_doc(1, TID, k["device"], dkid=9, key=b"K" * 16), k["hub"]))
    assert got.keys == [{9: b"K" * 16}]
    assert not u.handle("keys", signed(keys_doc(2, "370102-H0001-02", k["device"]), k["hub"]))  # not ours
    assert not u.handle("keys", signed(keys_doc(2, TID, stranger), k["hub"]))  # not wrapped to our key
    assert not u.handle("keys", signed(keys_doc(3, TID, k["device"]), stranger))

    assert u.handle("time", signed(time_doc(now + 100.5), k["hub"]))
    assert not u.handle("time", signed(time_doc(now + 50), k["hub"]))     # older beacon
    assert not u.handle("time", signed(time_doc(now + 200), stranger))
    assert got.time == [now + 100.5]

    assert dict(u.rejected) == {"trust": 2, "policy": 3, "keys": 3, "time": 2}
    assert {k_: store.signed_doc(k_)[0] for k_ in ("trust", "policy", "keys", "time")} == \
        {"trust": 5, "policy": 3, "keys": 1, "time": now + 100}


def test_retained_repeat_is_quiet_but_same_seq_other_bytes_is_refused(store, keyset_config, k):
    u = make_updates(store, keyset_config, k, Got())
    raw = signed(policy_doc(3), k["hub"])
    assert u.handle("policy", raw)
    assert not u.handle("policy", raw)
    assert u.rejected["policy"] == 0
    assert not u.handle("policy", signed(policy_doc(3, nat_hours=1), k["hub"]))
    assert u.rejected["policy"] == 1


def test_persisted_updates_survive_a_restart(tmp_path, keyset_config, k):
    s = Store(tmp_path / "st")
    u = make_updates(s, keyset_config, k, Got())
    u.handle("policy", signed(policy_doc(3, nat_hours=12), k["hub"]))
    u.handle("keys", signed(keys_doc(4, TID, k["device"], dkid=2, key=b"Z" * 16, not_after=10), k["hub"]))
    u.handle("time", signed(time_doc(1_800_000_000.25), k["hub"]))
    s.close()
    s = Store(tmp_path / "st")
    try:
        p = load_persisted(s, keyset_config, k["device"])
        assert p.policy == {"mall": {"nat_hours": 12}} and p.seqs["time"] == 1_800_000_000.25
        assert p.data_keys[2].key == b"Z" * 16 and usable_keys(p.data_keys, 11) == {} \
            and usable_keys(p.data_keys, 9) == {2: b"Z" * 16}
        u2 = make_updates(s, keyset_config, k, Got())
        assert not u2.handle("policy", signed(policy_doc(2), k["hub"]))  # rollback across the restart
        assert not u2.handle("time", signed(time_doc(1_800_000_000.0), k["hub"]))
        assert u2.handle("time", signed(time_doc(1_800_000_000.5), k["hub"]))
    finally:
        s.close()


# --- status cache and queries (a stand-in link) --------------------------------------------

def test_hmac_sm3_is_rfc2104():
    # HMAC-SM3 test vector (the HMAC construction over SM3, as in GB/T 15852.2 / RFC 2104)
    import hashlib
    import hmac
    for key in (b"", b"k" * 20, b"k" * 64, b"k" * 65):
        if "sm3" in hashlib.algorithms_available:
            assert hmac_sm3(key, b"abc") == hmac.new(key, b"abc", "sm3").digest()
    assert hmac_sm3(b"a", b"m") != hmac_sm3(b"b", b"m")


class FakeLink:
    """Stands in for HubLink.query: replies are whatever the test queues."""

    def __init__(self, online=True):
        self.online, self.sent, self.replies = online, [], []

    def query(self, qid, payload):
        if not self.online:
            return None
        self.sent.append(json.loads(payload))
        q = queue.Queue()
        for make in self.replies:
            q.put(make(qid))
        return q

    def end_query(self, qid):
        pass


ID = "37010219900307123X"
GOOD = {"status": 1, "flags": 2, "nat_at": 1_700_000_000, "nat_result": 1, "vax_doses": 3}


def source(store, cfg, link, hours=24):
    cfg.hub["query_timeout"] = 0.3
    return HubStatusSource(link, StatusCache(store), cfg, policy=lambda: Policy(status_cache_hours=hours))


def test_answer_then_cache_then_nothing(store, keyset_config, k, tmp_path):
    link = FakeLink()
    now = 1_800_000_000.0
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 7200}, k["hub"])]
    src = source(store, keyset_config, link, hours=1)
    assert src.lookup("id_card", ID, "张三", now) == HealthStatus(**GOOD)
    q = link.sent[0]
    assert q["method"] == "id_card" and ID not in q["subject"]
    assert json.loads(k["hub"].decrypt(bytes.fromhex(q["subject"]))) == {"id_number": ID, "name": "张三"}
    link.replies = []  # timeout
    assert src.lookup("id_card", ID, "张三", now + 3500) == HealthStatus(**GOOD)
    assert src.lookup("id_card", ID, "张三", now + 3601) is None  # min(valid_until, now + 1 h) passed
    link.online = False
    assert src.lookup("id_card", ID.lower(), "张三", now + 10) == HealthStatus(**GOOD)  # offline: cache, no wait
    assert src.lookup("ss_card", "110105194001011234", "李四", now) is None
    assert (src.answered, src.from_cache, src.unavailable) == (1, 2, 2)
    # the database never holds the ID number, in any case, in any file
    store.db.execute("PRAGMA wal_checkpoint(FULL)")
    blob = b"".join(p.read_bytes() for p in store.state_dir.iterdir() if p.name.startswith(DB_NAME))
    assert b"1990030712" not in blob and ID.encode() not in blob and "张三".encode() not in blob


def test_forged_replies_do_not_crowd_out_the_answer(store, keyset_config, k):
    link = FakeLink()
    now = 1_800_000_000.0
    stranger = PrivateKey.generate()
    link.replies = [
        lambda q: signed({"qid": q, **GOOD, "status": 0, "valid_until": now + 60}, stranger),
        lambda q: signed({"qid": "other", **GOOD, "status": 0, "valid_until": now + 60}, k["hub"]),
        lambda q: signed({"qid": q, **GOOD, "status": 7, "valid_until": now + 60}, k["hub"]),
        lambda q: signed({"qid": q, **GOOD, "valid_until": now + 60}, k["hub"]),
    ]
    src = source(store, keyset_config, link)
    assert src.lookup("id_card", ID, "张三", now) == HealthStatus(**GOOD)
    assert src.rejected == 3


def test_only_forged_replies_fall_back_to_cache(store, keyset_config, k):
    link = FakeLink()
    now = 1_800_000_000.0
    src = source(store, keyset_config, link)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 600}, k["hub"])]
    src.lookup("id_card", ID, "张三", now)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "status": 0, "valid_until": now + 600},
                                     PrivateKey.generate())]
    assert src.lookup("id_card", ID, "张三", now + 1) == HealthStatus(**GOOD)


def test_unknown_person_is_none_and_drops_the_cached_answer(store, keyset_config, k):
    link = FakeLink()
    now = 1_800_000_000.0
    src = source(store, keyset_config, link)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 600}, k["hub"])]
    assert src.lookup("id_card", ID, "张三", now) is not None
    link.replies = [lambda q: signed({"qid": q, "error": "unknown_person"}, k["hub"])]
    assert src.lookup("id_card", ID, "张三", now + 1) is None
    link.replies = []
    assert src.lookup("id_card", ID, "张三", now + 2) is None  # nothing left to stand in
