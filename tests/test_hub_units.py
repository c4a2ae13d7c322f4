"""The hub link's parts that need no broker: backoff, outbox pump, signed updates, status cache."""
from __future__ import annotations

import json
import queue
import shutil
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub_helpers import commit_events, keys, keys_doc, policy_doc, signed, time_doc
from sim.devkeys import make_trust_list
from sim.issuer import Issuer, Person
from terminal.core import boundedjson
from terminal.hub import wire
from terminal.core.boundedjson import MAX_SQL_INT, MAX_UNIX_TIME
from terminal.hub import HubLink, HubStatusSource, SignedUpdates, load_persisted
from terminal.hub.link import INBOUND_LIMITS, INBOX_BYTES
from terminal.hub.outbox import OutboxPump
from terminal.hub.updates import DataKey
from drivers.idnumber import check_character
from terminal.core.policy import HealthStatus, Policy
from terminal.crypto.sm2 import PrivateKey
from terminal.crypto.gmcrypto import hmac_sm3
from terminal.state.statuscache import StatusCache, cache_key
from terminal.state.store import DB_NAME, Store
from terminal.core.trust import seal_envelope
from terminal.verifier import Verifier

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
        doc = wire.open_signed(payload, {k["device"].public_key.kid(): k["device"].public_key})
        assert (doc["tid"], doc["epoch"]) == (TID, store.epoch)
        sent.append([e["seq"] for e in doc["events"]])
        pump.sent(b)
    assert sent == [list(range(1, 201)), list(range(201, 401))]  # window of 2 batches
    n = pump.check_ack(wire.ack(TID, store.epoch, 200, k["hub"]))
    assert n == 200 and pump.apply_ack(n) == 200
    payload, b = pump.next_batch()
    assert [e["seq"] for e in wire.open_signed(payload, {k["device"].public_key.kid(): k["device"].public_key})
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
        wire.ack(TID, store.epoch, 200, stranger),                  # wrong key
        wire.ack("370102-H0001-02", store.epoch, 200, k["hub"]),    # another terminal's ack
        wire.ack(TID, other_epoch, 200, k["hub"]),                  # a lost database's (or forged) epoch
        wire.ack(TID, store.epoch, 201, k["hub"]),                  # beyond what was sent
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
    assert pump.check_ack(wire.ack(TID, store.epoch, 200, k["hub"])) == 200  # the limit itself is believed
    assert pump.check_ack(wire.ack(TID, store.epoch, 0, k["hub"])) == 0


def test_reset_and_ack_timeout_resend_from_last_ack(store, k, mocker):
    mono = mocker.Mock(return_value=0.0)  # the pump's monotonic clock: the ack timeout passes unwaited
    commit_events(store, 400)
    pump = make_pump(store, k, ack_timeout=10, mono=mono)
    for _ in range(2):
        pump.sent(pump.next_batch()[1])
    pump.apply_ack(pump.check_ack(wire.ack(TID, store.epoch, 150, k["hub"])))
    assert [(b.first, b.last) for b in pump.in_flight] == [(1, 200), (201, 400)]  # 151-200 unacked
    assert not pump.check_timeout()
    mono.return_value = 11
    assert pump.check_timeout() and pump.resends == 1
    assert pump.next_batch()[1].first == 151  # the unacked part of the first batch comes again
    pump.sent(pump.next_batch()[1])
    mono.return_value = 11 + 19
    assert not pump.check_timeout()  # still silent: the second wait is twice as long
    mono.return_value = 11 + 21
    assert pump.check_timeout() and pump.resends == 2
    # a late ack of the first sending still counts (it is within what was sent)
    assert pump.check_ack(wire.ack(TID, store.epoch, 400, k["hub"])) == 400


def test_a_batch_nobody_was_subscribed_to_is_sent_again_soon(store, k, mocker):
    """PUBACK 0x10 (the hub not yet subscribed again after a broker restart): the window is
    re-read after UNHEARD_RETRY seconds, doubling while it keeps happening, never later than the
    ack timeout; an ack starts the doubling afresh."""
    from terminal.hub.outbox import UNHEARD_RETRY
    mono = mocker.Mock(return_value=0.0)
    commit_events(store, 400)
    pump = make_pump(store, k, ack_timeout=10, mono=mono)
    for _ in range(2):
        pump.sent(pump.next_batch()[1])
    pump.unheard_batch(1)
    pump.unheard_batch(201)                        # the same round: one retry, counted once
    assert pump.unheard == 1
    mono.return_value = UNHEARD_RETRY - 0.01
    assert not pump.check_timeout()
    mono.return_value = UNHEARD_RETRY
    assert pump.check_timeout() and pump.resends == 0   # not an ack timeout
    assert pump.next_batch()[1].first == 1
    pump.sent(pump.next_batch()[1])
    pump.unheard_batch(1)                          # again: twice as long
    mono.return_value = 3 * UNHEARD_RETRY - 0.01
    assert not pump.check_timeout()
    mono.return_value = 3 * UNHEARD_RETRY
    assert pump.check_timeout() and pump.unheard == 2
    for _ in range(8):                             # however often: at most the ack timeout
        pump.sent(pump.next_batch()[1])
        pump.unheard_batch(1)
        start = mono.return_value
        mono.return_value = start + pump.ack_timeout - 0.01
        if not pump.check_timeout():
            mono.return_value = start + pump.ack_timeout
            assert pump.check_timeout()
    assert pump.unheard == 10
    # an ack: what it covers is not sent again, and the next retry waits UNHEARD_RETRY again
    pump.sent(pump.next_batch()[1])
    pump.apply_ack(pump.check_ack(wire.ack(TID, store.epoch, 200, k["hub"])))
    pump.unheard_batch(1)
    assert pump.unheard == 10 and not pump.check_timeout()
    pump.sent(pump.next_batch()[1])
    pump.unheard_batch(201)
    now = mono.return_value
    mono.return_value = now + UNHEARD_RETRY
    assert pump.check_timeout() and pump.next_batch()[1].first == 201


def test_an_unheard_message_counts_only_if_it_is_a_batch_still_in_flight(store, k, mocker):
    """The broker's PUBACK names a message id: the batch in flight under it, if any."""
    mono = mocker.Mock(return_value=0.0)
    commit_events(store, 400)
    pump = make_pump(store, k, ack_timeout=10, mono=mono)
    pump.sent(pump.next_batch()[1], mid=7)
    pump.sent(pump.next_batch()[1], mid=8)
    pump.unheard_mid(9)                            # not an event batch (a birth message, a reply)
    assert pump.unheard == 0
    pump.apply_ack(pump.check_ack(wire.ack(TID, store.epoch, 200, k["hub"])))
    pump.unheard_mid(7)                            # acked meanwhile: out of flight
    assert pump.unheard == 0
    pump.unheard_mid(8)
    assert pump.unheard == 1
    pump.reset()                                   # sent again: the old message id means nothing now
    pump.sent(pump.next_batch()[1], mid=9)
    mono.return_value = 100.0
    assert pump.check_timeout()                    # (the ack timeout, not the unheard retry)
    pump.unheard_mid(8)
    assert pump.unheard == 1


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
                n = pump.check_ack(wire.ack(TID, s.epoch, x * 7, k["hub"]))
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
    assert [p.venues for p in got.policy] == [{"mall": {"nat_hours": 12}}]
    assert not u.handle("policy", signed(policy_doc(4), stranger))
    assert not u.handle("policy", signed(policy_doc(2), k["hub"]))
    assert not u.handle("policy", signed(policy_doc(5, nat_hours="x"), k["hub"]))

    assert u.handle("keys", signed(keys_doc(1, TID, k["device"], dkid=9, key=b"K" * 16, not_after=now + 86400), k["hub"]))
    assert got.keys == [{9: DataKey(b"K" * 16, now + 86400)}]
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
        assert p.policy.venues == {"mall": {"nat_hours": 12}} and p.seqs["time"] == 1_800_000_000.25
        assert p.data_keys == {2: DataKey(b"Z" * 16, 10)}
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


@pytest.fixture
def link(mocker):
    """An autospec'd HubLink: a query's replies are whatever the test queues in ``link.replies``
    (each made from the qid); None while ``link.online`` is False."""
    link = mocker.create_autospec(HubLink, instance=True)
    link.online, link.replies = True, []

    def query(qid, payload):
        if not link.online:
            return None
        q = queue.Queue()
        for make in link.replies:
            q.put(make(qid))
        return q
    link.query.side_effect = query
    return link


ID = "37010219900307123X"
GOOD = {"status": 1, "flags": 2, "nat_at": 1_700_000_000, "nat_result": 1, "vax_doses": 3}


def source(store, cfg, link, hours=24):
    cfg = cfg.with_hub(query_timeout=0.3)
    return HubStatusSource(link, StatusCache(store, cache_key(PrivateKey.generate())), cfg, policy=lambda: Policy(status_cache_hours=hours))


def test_answer_then_cache_then_nothing(store, keyset_config, k, link, tmp_path):
    now = 1_800_000_000.0
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 7200}, k["hub"])]
    src = source(store, keyset_config, link, hours=1)
    assert src.lookup("id_card", ID, "张三", now) == HealthStatus(**GOOD)
    qid, payload = link.query.call_args.args
    link.end_query.assert_called_once_with(qid)  # answered: the link forgets the query
    q = json.loads(payload)
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


def test_a_copied_database_reveals_nobody(keyset, keyset_config, k, tmp_path):
    """Issue #12 finding 13: terminal.db (and its WAL) copied off a terminal that has decided and
    cached an answer holds no key to test id_number numbers against the digests: not one value in it,
    tried as the HMAC key, confirms even the right number, so no brute force over a district
    and a birth decade can. With the device key the answer is found again."""
    now = 1_800_000_000.0
    id_number = "37010219900307123" + check_character("37010219900307123")
    state = tmp_path / "state"
    v = Verifier.open(keyset_config, state)
    assert v.verify(Issuer.from_dir(keyset).issue(Person(name="张三", id_number=id_number))).reason == "ok"
    key = cache_key(k["device"])
    StatusCache(v.store, key).put(id_number, HealthStatus(**GOOD), now + 600, now)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in state.iterdir():
        if p.name.startswith(DB_NAME):
            shutil.copy(p, copy / p.name)
    v.close()
    blob = b"".join(p.read_bytes() for p in copy.iterdir())
    for secret in (key, k["device"].d.to_bytes(32, "big")):
        assert secret not in blob and secret.hex().encode() not in blob and secret.hex().upper().encode() not in blob
    con = sqlite3.connect(copy / DB_NAME)
    digests = {bytes(d) for (d,) in con.execute("SELECT digest FROM status_cache")}
    assert digests == {hmac_sm3(key, id_number.encode())}
    candidates = set()
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in con.execute(f"SELECT * FROM {table}"):
            for value in row:
                raw = value if isinstance(value, bytes) else str(value).encode()
                candidates.add(raw)
                try:
                    candidates.add(bytes.fromhex(raw.decode()))
                except ValueError:
                    pass
    con.close()
    assert len(candidates) > 20  # meta, signed documents, the event, the nonce, the cached answer
    assert not [c for c in candidates if hmac_sm3(c, id_number.encode()) in digests]
    s = Store(copy)
    try:
        assert StatusCache(s, cache_key(k["device"])).get(id_number, now) == HealthStatus(**GOOD)
        assert StatusCache(s, cache_key(PrivateKey.generate())).get(id_number, now) is None
    finally:
        s.close()


def test_forged_replies_do_not_crowd_out_the_answer(store, keyset_config, k, link):
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


def test_only_forged_replies_fall_back_to_cache(store, keyset_config, k, link):
    now = 1_800_000_000.0
    src = source(store, keyset_config, link)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 600}, k["hub"])]
    src.lookup("id_card", ID, "张三", now)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "status": 0, "valid_until": now + 600},
                                     PrivateKey.generate())]
    assert src.lookup("id_card", ID, "张三", now + 1) == HealthStatus(**GOOD)


def test_unknown_person_is_none_and_drops_the_cached_answer(store, keyset_config, k, link):
    now = 1_800_000_000.0
    src = source(store, keyset_config, link)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 600}, k["hub"])]
    assert src.lookup("id_card", ID, "张三", now) is not None
    link.replies = [lambda q: signed({"qid": q, "error": "unknown_person"}, k["hub"])]
    assert src.lookup("id_card", ID, "张三", now + 1) is None
    link.replies = []
    assert src.lookup("id_card", ID, "张三", now + 2) is None  # nothing left to stand in


# --- hostile input from the network (issue #12 findings 8, 9, 20) -------------------------

NESTED = b"[" * 2000 + b"]" * 2000  # 4,000 bytes: inside every topic's limit, 2,000 levels deep


def test_bounded_loads_refuses_size_depth_and_non_finite_numbers_on_both_sides_of_each_bound():
    assert boundedjson.loads(b"1" * 8, max_bytes=8) == 11111111
    with pytest.raises(boundedjson.JsonLimitError, match="9 bytes"):
        boundedjson.loads(b"1" * 9, max_bytes=8)
    deep = b"[" * 8 + b"]" * 8
    assert boundedjson.loads(deep) == [[[[[[[[]]]]]]]]
    for bad in (b"[" + deep + b"]", b'{"a":' * 9 + b"1" + b"}" * 9, NESTED):
        with pytest.raises(boundedjson.JsonLimitError, match="deeper than 8"):
            boundedjson.loads(bad)
    # brackets inside strings (escaped quotes too) are text, not nesting
    assert boundedjson.loads(b'["[[[[[[[[[[\\"{{{{{{{{{{{"]') == ['[[[[[[[[[[\"{{{{{{{{{{{']
    assert boundedjson.loads("[1e308, -1e308, 12]") == [1e308, -1e308, 12]
    for bad in (b"[1e309]", b"[-1e309]", b"[Infinity]", b"[-Infinity]", b"[NaN]"):
        with pytest.raises(boundedjson.JsonLimitError):
            boundedjson.loads(bad)
    with pytest.raises(ValueError):
        boundedjson.loads(b"[}")


def test_bounded_loads_scans_hostile_strings_in_linear_time():
    """Unterminated strings full of escaped quotes: a string pattern that can fail is retried from
    every later quote, quadratic (128 KiB: ~2 min, 1 MiB: hours). Linear, each takes ~10 ms."""
    n = 128 << 10
    for raw in (b'"' + b'\\"' * (n // 2), b'["' + b'\\' * n):
        started = time.monotonic()
        with pytest.raises(ValueError):
            boundedjson.loads(raw)
        assert time.monotonic() - started < 5


def test_hostile_card_status_replies_are_rejected_and_the_wait_goes_on(store, keyset_config, k, link):
    """Finding 8: each of these used to raise out of lookup() and end the card reader's thread."""
    now = 1_800_000_000.0
    genuine = {**GOOD, "valid_until": now + 600}
    link.replies = [
        lambda q: NESTED,                                                          # unsigned, nested
        lambda q: seal_envelope(NESTED, k["hub"]),                                 # hub-signed, nested
        lambda q: signed({"qid": q, **GOOD, "valid_until": 10 ** 400}, k["hub"]),  # OverflowError in float()
        lambda q: signed({"qid": q, **GOOD, "valid_until": float("inf")}, k["hub"]),
        lambda q: signed({"qid": q, **GOOD, "valid_until": MAX_UNIX_TIME + 1}, k["hub"]),
        lambda q: signed({"qid": q, **GOOD, "valid_until": -1}, k["hub"]),
    ]
    src = source(store, keyset_config, link)
    assert src.lookup("id_card", ID, "张三", now) is None    # decided by offline_unknown
    assert (src.rejected, src.unavailable) == (6, 1)
    link.replies.append(lambda q: signed({"qid": q, **genuine}, k["hub"]))       # behind them: taken
    assert src.lookup("id_card", ID, "张三", now) == HealthStatus(**GOOD)
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": MAX_UNIX_TIME}, k["hub"])]
    assert src.lookup("id_card", ID, "张三", now) == HealthStatus(**GOOD)         # the bound itself is fine
    assert (src.rejected, src.answered) == (12, 2)


def test_a_full_disk_under_the_status_cache_costs_the_cache_not_the_reader(store, keyset_config, k, link):
    """Finding 8: a real SQLITE_FULL (PRAGMA max_page_count stands in for the disk's end)."""
    now = 1_800_000_000.0
    link.replies = [lambda q: signed({"qid": q, **GOOD, "valid_until": now + 600}, k["hub"])]
    cfg = keyset_config.with_hub(query_timeout=0.3)
    cache = StatusCache(store, cache_key(k["device"]))
    src = HubStatusSource(link, cache, cfg, policy=lambda: Policy(status_cache_hours=24))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    people = [f"1101051940010{i:05d}" for i in range(400)]
    for n, person in enumerate(people):  # each answer fills the cache until a page is needed
        assert src.lookup("id_card", person, "李四", now) == HealthStatus(**GOOD)  # the answer still decides
        if cache.get(person, now) is None:  # not kept: the disk was full
            break
    assert 0 < n < len(people) - 1 and src.cache_errors == 1
    link.replies = []                                   # no answer: the cache stands in where it could
    assert src.lookup("id_card", people[0], "李四", now + 1) == HealthStatus(**GOOD)
    assert src.lookup("id_card", people[n], "李四", now + 1) is None  # its answer was never kept
    assert (src.from_cache, src.unavailable) == (1, 1)


def unstarted_link(store, cfg, k) -> HubLink:
    cfg = cfg.with_hub(broker="mqtts://127.0.0.1:1")  # never connected: the tests play paho's part
    return HubLink(cfg, store, k["device"])


def round_of(link: HubLink) -> None:
    link._handle(link._take(0))


def test_one_hostile_message_costs_itself_not_the_pump_round(store, keyset_config, k):
    """Finding 9: each used to raise out of the round (RecursionError, OverflowError), so the
    genuine ack, policy and time beside it were neither applied nor counted."""
    link = unstarted_link(store, keyset_config, k)
    commit_events(store, 50)
    link.pump.sent(link.pump.next_batch()[1])
    hub, now = k["hub"], int(time.time())
    link._handle([
        ("policy", NESTED),                                                        # unsigned, nested
        ("trust", seal_envelope(NESTED, k["root"])),                               # root-signed, nested
        ("time", signed(time_doc(1e300), hub)),
        ("time", signed(time_doc(float("inf")), hub)),
        ("time", signed(time_doc(MAX_UNIX_TIME + 1), hub)),
        ("policy", signed(policy_doc(2 ** 70), hub)),
        ("policy", signed(policy_doc(MAX_SQL_INT + 1), hub)),
        ("keys", signed(keys_doc(2 ** 70, TID, k["device"]), hub)),
        ("trust", make_trust_list(k["issuer"], k["root"], seq=2 ** 70, now=now)),
        ("ack", wire.ack(TID, store.epoch, 2 ** 70, hub)),
        ("cmd", seal_envelope(NESTED, hub)),                                     # hub-signed, nested
        ("ack", wire.ack(TID, store.epoch, 20, hub)),                          # the genuine ones
        ("policy", signed(policy_doc(5), hub)),
        ("time", signed(time_doc(now), hub)),
    ])
    assert link.status()["rejected"] == {"ack": 1, "trust": 2, "policy": 3, "keys": 1, "time": 3, "cmd": 1}
    assert link.pump.acked_seq == 20 and store.outbox_depth() == 30
    assert link.updates.held["policy"] == 5 and link.updates.held["time"] == now
    # the bounds themselves are accepted
    assert link.updates.handle("policy", signed(policy_doc(MAX_SQL_INT), hub))
    assert link.updates.handle("time", signed(time_doc(MAX_UNIX_TIME), hub))
    assert store.signed_doc("policy")[0] == MAX_SQL_INT


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=topic.encode())
    msg.payload = payload
    return msg


def test_inbound_messages_are_bounded_per_topic_and_the_inbox_in_bytes(store, keyset_config, k):
    """Finding 20: 1,500 × 1 MiB at QoS 0 used to sit in the inbox (60 → 267 MiB RSS)."""
    rollouts = []                                  # the updater's: it verifies them on its own thread
    link = HubLink(keyset_config.with_hub(broker="mqtts://127.0.0.1:1"), store, k["device"],
                   on_rollout=rollouts.append)
    t = link.topics
    topic = {"ack": t.ack, "trust": t.trust, "policy": t.policy, "keys": t.keys, "time": t.time, "cmd": t.cmd,
             "rollout": t.rollout}
    mib = b"x" * (1 << 20)
    for _ in range(1500):
        link._on_message(None, None, message(t.trust, mib))
    assert link.dropped_messages == 1500 and link.inbox_bytes == 0 and link._inbox.empty()

    for kind, limit in INBOUND_LIMITS.items():                   # each limit, both sides
        dropped = link.dropped_messages
        if kind == "reply":
            replies = link._queries[b"q"] = queue.Queue(maxsize=8)
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = b"q"
            for size in (limit + 1, limit):
                msg = message(t.reply, b"r" * size)
                msg.properties = props
                link._on_message(None, None, msg)
            assert [len(r) for r in list(replies.queue)] == [limit]
        else:
            link._on_message(None, None, message(topic[kind], b"y" * (limit + 1)))
            link._on_message(None, None, message(topic[kind], b"y" * limit))
            assert link.inbox_bytes == limit
            round_of(link)                                        # read, refused as junk
            assert link.inbox_bytes == 0
        assert link.dropped_messages == dropped + 1
    assert dict(link.updates.rejected) == {"trust": 1, "policy": 1, "keys": 1, "time": 1}
    assert link.commands.rejected == 1
    assert [len(r) for r in rollouts] == [INBOUND_LIMITS["rollout"]]  # handed over, unread

    dropped = link.dropped_messages
    largest = b"z" * INBOUND_LIMITS["policy"]
    for _ in range(100):                                          # a flood within the topic's limit
        link._on_message(None, None, message(t.policy, largest))
    fit = INBOX_BYTES // len(largest)
    assert link.inbox_bytes == fit * len(largest) <= INBOX_BYTES
    assert link.dropped_messages == dropped + 100 - fit
    round_of(link)
    assert link.inbox_bytes == 0 and link.updates.rejected["policy"] == 1 + fit
    commit_events(store, 10)                                      # and the genuine still get through
    link.pump.sent(link.pump.next_batch()[1])
    link._on_message(None, None, message(t.ack, wire.ack(TID, store.epoch, 10, k["hub"])))
    link._on_message(None, None, message(t.policy, signed(policy_doc(7), k["hub"])))
    round_of(link)
    assert link.pump.acked_seq == 10 and link.updates.held["policy"] == 7
