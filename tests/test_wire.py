"""terminal/hub/wire.py: every message's builder and parser agree, and the one broker URL parser."""
from __future__ import annotations

import ast
import json
import re

import pytest

from conftest import ROOT
from terminal.core.boundedjson import MAX_SQL_INT, MAX_UNIX_TIME
from terminal.core.policy import HealthStatus
from terminal.core.trust import EnvelopeError, envelope_payload
from terminal.crypto.sm2 import PrivateKey
from terminal.hub import wire
from terminal.hub.wire import BrokerUrl

TID = "370102-H0001-01"
EPOCH = "0123456789abcdef"


@pytest.mark.parametrize("url, plain_anywhere, expected", [
    ("mqtts://hub.example:8883", False, BrokerUrl(True, "hub.example", 8883)),
    ("mqtts://10.1.2.3:1", False, BrokerUrl(True, "10.1.2.3", 1)),              # the lowest port
    ("mqtts://hub:65535", False, BrokerUrl(True, "hub", 65535)),               # the highest port
    ("mqtts://[2001:db8::1]:8883", False, BrokerUrl(True, "2001:db8::1", 8883)),
    ("mqtt://127.0.0.1:1883", False, BrokerUrl(False, "127.0.0.1", 1883)),
    ("mqtt://localhost:1883", False, BrokerUrl(False, "localhost", 1883)),
    ("mqtt://[::1]:1883", False, BrokerUrl(False, "::1", 1883)),
    ("mqtt://10.1.2.3:1883", True, BrokerUrl(False, "10.1.2.3", 1883)),        # the simulator's dev listener
])
def test_broker_url_parses(url, plain_anywhere, expected):
    assert wire.parse_broker_url(url, plain_anywhere=plain_anywhere) == expected


@pytest.mark.parametrize("url, plain_anywhere, why", [
    ("mqtts://hub:0", False, "must be mqtts://host:port"),
    ("mqtts://hub:65536", False, "must be mqtts://host:port"),
    ("mqtts://hub", False, "must be mqtts://host:port"),                       # no port
    ("mqtts://hub:8883/x", False, "must be mqtts://host:port"),
    ("mqtts://user@hub:8883", False, "must be mqtts://host:port"),
    ("tcp://hub:1883", False, "must be mqtts://host:port"),
    ("http://x", True, "must be mqtts://host:port or mqtt://host:port"),
    ("", False, "must be mqtts://host:port"),
    (None, False, "must be mqtts://host:port"),
    ("mqtt://10.1.2.3:1883", False, "only for a broker on this machine"),
    ("mqtt://127.0.0.2:1883", False, "only for a broker on this machine"),
])
def test_broker_url_refused(url, plain_anywhere, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        wire.parse_broker_url(url, plain_anywhere=plain_anywhere)


# --- every message: what the builder makes, the parser reads back -------------------------------

@pytest.fixture(scope="module")
def k():
    return {n: PrivateKey.generate() for n in ("root", "issuer", "hub", "device", "stranger")}


def pin(*keys: PrivateKey) -> dict:
    return {x.public_key.kid(): x.public_key for x in keys}


def test_batch_round_trip_and_its_bounds(k):
    events = [{"seq": s, "decision": "allow"} for s in range(1, wire.MAX_BATCH + 1)]
    assert wire.open_batch(wire.batch(TID, EPOCH, events, k["device"]), k["device"].public_key) \
        == wire.Batch(TID, EPOCH, events)
    for bad in ([], events + [{"seq": 201}]):
        with pytest.raises(ValueError, match="1-200 events"):
            wire.batch(TID, EPOCH, bad, k["device"])
    with pytest.raises(EnvelopeError):
        wire.open_batch(wire.batch(TID, EPOCH, events[:1], k["stranger"]), k["device"].public_key)


def test_an_events_gate_is_carried_and_bounded(k):
    """Issue #12 finding 1: "opened", "fault", null, or absent (a terminal from before), nothing else."""
    events = [{"seq": 1, "decision": "allow", "gate": "opened"}, {"seq": 2, "decision": "allow", "gate": "fault"},
              {"seq": 3, "decision": "deny", "gate": None}, {"seq": 4, "decision": "deny"}]
    got = wire.open_batch(wire.batch(TID, EPOCH, events, k["device"]), k["device"].public_key)
    assert [e.get("gate", "absent") for e in got.events] == ["opened", "fault", None, "absent"]
    for gate in ("open", "OPENED", True, 1, ["opened"], {}):
        with pytest.raises(ValueError, match="gate"):
            wire.batch(TID, EPOCH, [{"seq": 1, "gate": gate}], k["device"])
        forged = wire.seal({"tid": TID, "epoch": EPOCH, "events": [{"seq": 1, "gate": gate}]}, k["device"])
        with pytest.raises(ValueError, match="gate"):
            wire.open_batch(forged, k["device"].public_key)


def test_ack_round_trip(k):
    assert wire.open_ack(wire.ack(TID, EPOCH, 0, k["hub"]), pin(k["hub"])) == wire.Ack(TID, EPOCH, 0)
    assert wire.open_ack(wire.ack(TID, EPOCH, MAX_SQL_INT, k["hub"]), pin(k["hub"])).acked_seq == MAX_SQL_INT
    with pytest.raises(ValueError, match="non-negative"):
        wire.open_ack(wire.ack(TID, EPOCH, -1, k["hub"]), pin(k["hub"]))
    with pytest.raises(EnvelopeError):
        wire.open_ack(wire.ack(TID, EPOCH, 1, k["stranger"]), pin(k["hub"]))


def test_policy_round_trip_same_bytes_and_seq_bounds(k):
    raw = wire.policy(3, {"mall": {"nat_hours": 24}}, k["hub"])
    assert envelope_payload(raw) == b'{"type":"policy","seq":3,"venues":{"mall":{"nat_hours":24}}}'
    assert wire.open_policy(raw, pin(k["hub"])) == wire.PolicyBundle(3, {"mall": {"nat_hours": 24}})
    assert wire.open_policy(wire.policy(MAX_SQL_INT, {}, k["hub"]), pin(k["hub"])).seq == MAX_SQL_INT
    for seq in (MAX_SQL_INT + 1, -1):
        with pytest.raises(EnvelopeError, match="policy seq"):
            wire.open_policy(wire.policy(seq, {}, k["hub"]), pin(k["hub"]))
    with pytest.raises(EnvelopeError, match="known venue type"):
        wire.open_policy(wire.policy(4, {"moon": {}}, k["hub"]), pin(k["hub"]))
    with pytest.raises(EnvelopeError, match="policy: mall."):
        wire.open_policy(wire.policy(4, {"mall": {"nat_hours": "x"}}, k["hub"]), pin(k["hub"]))
    with pytest.raises(EnvelopeError, match="not a pinned key"):
        wire.open_policy(wire.policy(4, {}, k["stranger"]), pin(k["hub"]))


def test_data_keys_round_trip_and_refusals(k):
    keys = {2: wire.DataKey(b"B" * 16, 20), 1: wire.DataKey(b"A" * 16, MAX_SQL_INT)}
    raw = wire.data_keys(5, TID, keys, k["device"].public_key, k["hub"])
    assert [e["dkid"] for e in json.loads(envelope_payload(raw))["keys"]] == [1, 2]  # dkid order
    assert wire.open_data_keys(raw, pin(k["hub"]), TID, k["device"]) == wire.DataKeys(5, keys)
    with pytest.raises(EnvelopeError, match="not 370102-H0001-01"):
        wire.open_data_keys(wire.data_keys(5, "370102-H0001-02", keys, k["device"].public_key, k["hub"]),
                            pin(k["hub"]), TID, k["device"])
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        wire.open_data_keys(raw, pin(k["hub"]), TID, k["stranger"])
    for size in (15, 17):
        with pytest.raises(EnvelopeError, match=f"{size} bytes, not 16"):
            wire.open_data_keys(wire.data_keys(5, TID, {1: wire.DataKey(b"x" * size, 1)}, k["device"].public_key,
                                               k["hub"]), pin(k["hub"]), TID, k["device"])
    with pytest.raises(EnvelopeError, match="not_after is beyond"):
        wire.open_data_keys(wire.data_keys(5, TID, {1: wire.DataKey(b"x" * 16, MAX_SQL_INT + 1)},
                                           k["device"].public_key, k["hub"]), pin(k["hub"]), TID, k["device"])


def test_time_round_trip_same_bytes_and_bounds(k):
    assert envelope_payload(wire.time_beacon(1_800_000_000, k["hub"])) == b'{"type":"time","t":1800000000}'
    for t in (1_800_000_000.25, MAX_UNIX_TIME, 1e-9):
        assert wire.open_time(wire.time_beacon(t, k["hub"]), pin(k["hub"])) == t
    for t in (MAX_UNIX_TIME + 1, 0, -1, True):
        with pytest.raises(EnvelopeError, match="time:"):
            wire.open_time(wire.time_beacon(t, k["hub"]), pin(k["hub"]))


def test_query_round_trip_and_subject_only_for_the_hub(k):
    raw = wire.query("q1", "id_card", "11010519491231002X", "张三", k["hub"].public_key)
    q = wire.open_query(raw)
    assert (q.qid, q.method) == ("q1", "id_card")
    assert wire.open_subject(q, k["hub"]) == ("11010519491231002X", "张三")
    with pytest.raises(ValueError, match="does not decrypt"):
        wire.open_subject(q, k["stranger"])
    for bad in (b'{"qid": 1, "method": "id_card"}', b'{"qid": "q", "method": "face"}', b"[]", b"{",
                b"[" * 100_000):
        with pytest.raises(ValueError, match="not a {qid, method, subject} object"):
            wire.open_query(bad)


GOOD = {"status": 0, "flags": 0, "nat_at": 0, "nat_result": 0, "vax_doses": 0, "valid_until": 100}


def test_reply_round_trip(k):
    raw = wire.reply("q1", {**GOOD, "status": 2, "vax_doses": 3}, k["hub"])
    assert list(json.loads(envelope_payload(raw))) == ["qid", *GOOD]  # qid first, as before
    assert wire.open_reply(raw, pin(k["hub"]), "q1") == wire.Reply(HealthStatus(2, 0, 0, 0, 3), 100.0)
    assert wire.open_reply(wire.reply("q1", {"error": "unknown_person"}, k["hub"]), pin(k["hub"]), "q1") \
        == wire.Reply(None, None, "unknown_person")
    with pytest.raises(EnvelopeError, match="another query"):
        wire.open_reply(raw, pin(k["hub"]), "q2")
    with pytest.raises(EnvelopeError, match="not a pinned key"):
        wire.open_reply(wire.reply("q1", GOOD, k["stranger"]), pin(k["hub"]), "q1")


@pytest.mark.parametrize("name", [*wire.REPLY_RANGES, "valid_until"])
def test_reply_fields_are_read_within_their_range_on_both_sides(k, name):
    lo, hi = wire.REPLY_RANGES.get(name, (0, MAX_UNIX_TIME))
    for v in (lo, hi):
        assert wire.open_reply(wire.reply("q", {**GOOD, name: v}, k["hub"]), pin(k["hub"]), "q")
    for v in (lo - 1, hi + 1, True, "1"):
        with pytest.raises(EnvelopeError, match=f"reply: {name}"):
            wire.open_reply(wire.reply("q", {**GOOD, name: v}, k["hub"]), pin(k["hub"]), "q")


def test_birth_and_will_are_plain_json():
    doc = json.loads(wire.birth(version="1", epoch=EPOCH, queue=3, trust_seq=4, policy_seq=5, clock="trusted",
                                alarms=["relay_down", "disk_low"]))
    assert doc == {"state": "online", "version": "1", "epoch": EPOCH, "queue": 3, "trust_seq": 4, "policy_seq": 5,
                   "clock": "trusted", "alarms": ["disk_low", "relay_down"]}
    assert json.loads(wire.OFFLINE) == {"state": "offline"}


# --- the simulator speaks only through wire -----------------------------------------------------

MESSAGE_KEYS = {"type", "qid", "acked_seq", "events", "venues", "issuers"}
BUILDERS = {"seal", "seal_envelope", "dumps"}


def _topic_shaped(node: ast.JoinedStr) -> bool:
    """``f"{prefix}/t/..."``, ``f"{prefix}/policy"``: a topic made by hand, not by wire.Topics."""
    parts = node.values
    return bool(parts) and isinstance(parts[0], ast.FormattedValue) and any(
        isinstance(p, ast.Constant) and (p.value.startswith("/t/") or p.value in ("/trust", "/policy", "/time"))
        for p in parts[1:2])


def inline_messages(source: str) -> list[str]:
    """Dict literals keyed like a hub message, calls that sign or serialise one by hand, topics
    spelt out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and _topic_shaped(node):
            found.append(f"line {node.lineno}: a topic spelt out")
        elif isinstance(node, ast.Dict):
            keys = {kk.value for kk in node.keys if isinstance(kk, ast.Constant)}
            found += [f"line {node.lineno}: a {{{key!r}: ...}} literal" for key in sorted(keys & MESSAGE_KEYS)]
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in BUILDERS and not (isinstance(f, ast.Attribute) and getattr(f.value, "id", None) == "json"):
                found.append(f"line {node.lineno}: {name}(...)")
    return found


def test_the_simulator_builds_no_message_or_topic_inline():
    found = [f"{p.name} {hit}" for p in sorted((ROOT / "sim").glob("*.py"))
             for hit in inline_messages(p.read_text(encoding="utf-8"))]
    assert found == []


@pytest.mark.parametrize("source", [
    'wire.seal({"type": "policy", "seq": 1, "venues": {}}, key)',
    'seal_envelope(json.dumps(doc).encode(), root)',
    'answer = {"qid": qid, "error": "unknown_person"}',
    'doc = {"type": "time", "t": t}',
    'client.publish(f"{self.prefix}/t/{tid}/ack", payload)',
    'topic = f"{prefix}/policy"',
])
def test_an_inline_message_is_caught(source):
    assert inline_messages(source) != []


def test_a_broker_acl_line_is_not_a_topic():
    assert inline_messages('line = f"pattern read {prefix}/t/%u/{leaf}"') == []


@pytest.mark.parametrize("topic, tid", [
    ("hc/v1/t/370102-H0001-01/events", TID),
    ("hc/v1/t/x/events", "x"),
    ("hc/v1/t//events", None),                  # no tid
    ("hc/v1/t/a/b/events", None),               # a tid has no "/"
    ("hc/v1/t/a/query", None),                  # another leaf
    ("hc/v2/t/a/events", None),                 # another prefix
])
def test_tid_of(topic, tid):
    assert wire.tid_of("hc/v1", topic, "events") == tid
    if tid is not None:
        assert wire.tid_of("hc/v1", wire.Topics("hc/v1", tid).events, "events") == tid
