"""Staff override at a hospital, end to end: daemon, simulated readers, camera and relay, the hub
simulator's policy bundle with a staff list, and hub-signed staff QR codes (docs/protocol/staff.md)."""
from __future__ import annotations

import time

import base45
import pytest

from mqtt_fixtures import broker, share_group  # noqa: F401  (fixture)
from sim.crowd import ScenarioCamera
from sim.hub import HubSim
from sim.issuer import Issuer, Person, random_id_number, staff_code
from sim.sscard_reader import VirtualSsCard
from terminal.core import staff as st
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey
from terminal.daemon import Daemon
from terminal.screen import texts

from test_daemon import SS_PRESENT, WatchedGrabber, card_taken_off
from test_daemon_hub import hub_lane, present_card, show_code
from waiting import wait_for

STAFF_NAME = "周医生"


class FakeMono:
    """The verifier's review-window clock: time passes when the test says."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def door(keyset, broker, tmp_path):  # noqa: F811
    """A hospital lane whose hub publishes a staff list holding one staff member's ID number."""
    cfg, eps = hub_lane(keyset, broker, tmp_path, "hospital", pulse_ms=100)
    sam, ss, relay = (eps[k].handler for k in ("id_card", "ss_card", "relay"))
    staff_id = random_id_number()
    hub_key = load_private_key(keyset / "hub.pem")
    hub_cert, hub_tls_key = broker.client_cert("hub")
    hub = HubSim(broker.url, broker.ca, hub_cert, hub_tls_key, hub_key=hub_key,
                 root_key=load_private_key(keyset / "root.pem"), db_path=tmp_path / "hub.db",
                 terminals={cfg.terminal_id: load_private_key(keyset / "device.pem").public_key},
                 group=share_group(), start_seq=1, time_interval=0)
    hub.publish_policy({}, staff=[random_id_number(), staff_id, random_id_number()])
    hub.start()
    assert hub.wait_connected(30)
    camera = ScenarioCamera(level="clean", fps=20)
    grabber = WatchedGrabber(camera)
    results = []
    daemon = Daemon(cfg, camera=grabber, on_result=lambda p, r: results.append(r))
    daemon.start()
    mono = FakeMono()
    daemon.verifier.mono = mono
    wait_for(lambda: len(daemon.verifier.staff) == 3, "the staff list from the hub")
    yield {"daemon": daemon, "hub": hub, "sam": sam, "ss": ss, "relay": relay, "camera": camera,
           "grabber": grabber, "results": results, "issuer": Issuer.from_dir(keyset), "hub_key": hub_key,
           "staff_id": staff_id, "tid": cfg.terminal_id, "mono": mono}
    daemon.stop()
    hub.stop()
    for ep in eps.values():
        ep.stop()


def red_code(t):
    r = show_code(t, t["issuer"].issue(Person(status="red")))
    assert (r.method, r.decision, r.reason) == ("qr", "review", "red_code")
    return r


def staff_card(t):
    return present_card(t, STAFF_NAME, t["staff_id"])


def at_hub(t, seq):
    wait_for(lambda: t["daemon"].hub.connected, "the hub link", timeout=90)  # its backoff may be running
    wait_for(lambda: t["hub"].event(t["tid"], seq) is not None, f"event {seq} at the hub", timeout=60)
    return t["hub"].event(t["tid"], seq), t["hub"].subject(t["tid"], seq)


def pulses_settle(t, n):
    """Exactly ``n`` pulses in all (a pulse is switched on the relay's own thread)."""
    wait_for(lambda: len(t["relay"].pulses) >= n, f"{n} gate pulses", timeout=10)
    assert len(t["relay"].pulses) == n


def test_a_staff_card_within_the_window_opens_the_gate_for_the_reviewed_person(door):
    t = door
    wait_for(lambda: t["daemon"].hub.connected, "the hub link", timeout=30)
    review = red_code(t)
    assert t["relay"].pulses == []
    queries = t["hub"].stats["queries_received"]
    t["mono"].t += 30
    r = staff_card(t)
    assert (r.method, r.decision, r.reason, r.ref) == ("staff", "allow", "staff_override", review.event_id)
    assert (r.name, r.id) == ("周**", t["staff_id"][:6] + "********" + t["staff_id"][-4:])
    assert texts.reason_text(r.reason, r.decision, r.method) == "工作人员已放行"
    pulses_settle(t, 1)
    assert t["hub"].stats["queries_received"] == queries  # a staff card is not asked about
    event, subject = at_hub(t, r.seq)
    assert (event["method"], event["decision"], event["reason"], event["ref"]) == \
        ("staff", "allow", "staff_override", review.event_id)
    assert event["status"] is None and event["gate"] == "opened" and t["staff_id"] not in str(event)
    assert subject == {"id_number": t["staff_id"], "name": STAFF_NAME}
    review_event, _ = at_hub(t, review.seq)
    assert review_event["id"] == review.event_id and review_event["ref"] is None

    # one override per review: the same card again finds nothing pending
    r = staff_card(t)
    assert (r.decision, r.reason, r.ref) == ("deny", "no_pending_review", None)
    assert texts.reason_text(r.reason, r.decision, r.method) == "没有待核验人员"
    pulses_settle(t, 1)


def test_a_staff_card_with_nothing_pending_is_refused_and_recorded(door):
    t = door
    r = staff_card(t)
    assert (r.method, r.decision, r.reason, r.ref) == ("staff", "deny", "no_pending_review", None)
    ok = show_code(t, t["issuer"].issue(Person()))  # a green code: allowed, and ends nothing
    assert ok.decision == "allow"
    pulses_settle(t, 1)
    r = staff_card(t)   # an allow is not a review to confirm
    assert r.reason == "no_pending_review"
    event, subject = at_hub(t, r.seq)
    assert (event["method"], event["decision"], event["reason"], event["gate"]) == \
        ("staff", "deny", "no_pending_review", None)
    assert subject["id_number"] == t["staff_id"]
    pulses_settle(t, 1)


def test_a_later_visitor_ends_the_pending_review(door):
    t = door
    red_code(t)
    assert show_code(t, t["issuer"].issue(Person())).decision == "allow"   # the next person came through
    r = staff_card(t)
    assert (r.decision, r.reason) == ("deny", "no_pending_review")
    pulses_settle(t, 1)


def test_a_staff_qr_code_opens_once_and_forged_or_expired_ones_are_refused(door):
    t = door
    review = red_code(t)
    now = int(time.time())
    genuine = staff_code(t["hub_key"], "H0001-017", ttl=30)
    raw = bytearray(base45.b45decode(genuine[len(st.PREFIX):]))
    raw[st.HEADER_LEN] ^= 0x01          # another staff id, the hub's signature kept
    tampered = st.PREFIX + base45.b45encode(bytes(raw)).decode()
    stranger = staff_code(PrivateKey.generate(), "H0001-017")
    expired = staff_code(t["hub_key"], "H0001-017", ttl=30, iat=now - 60)
    for code, reason in [(tampered, "bad_signature"), (stranger, "bad_signature"), (expired, "expired")]:
        r = show_code(t, code)
        assert (r.method, r.decision, r.reason) == ("staff", "deny", reason), code
        assert texts.reason_text(r.reason, r.decision, r.method) == "工作人员凭证无效"
    assert t["relay"].pulses == []
    r = show_code(t, genuine)           # the review is still pending: refusals do not end it
    assert (r.method, r.decision, r.reason, r.ref) == ("staff", "allow", "staff_override", review.event_id)
    pulses_settle(t, 1)
    _, subject = at_hub(t, r.seq)
    assert subject == {"staff_id": "H0001-017", "via": "qr"}

    review = red_code(t)
    r = show_code(t, genuine)           # the same code again: used up, even with a review pending
    assert (r.decision, r.reason, r.ref) == ("deny", "replayed", review.event_id)
    assert texts.reason_text(r.reason, r.decision, r.method) == "工作人员凭证无效"
    pulses_settle(t, 1)


def test_override_seconds_holds_exactly_at_the_limit_and_not_past_it(door):
    t = door
    limit = t["daemon"].verifier.policy().override_seconds
    assert limit == 60                  # the default
    review = red_code(t)
    t["mono"].t += limit                # exactly at the limit: still within
    r = staff_card(t)
    assert (r.decision, r.reason, r.ref) == ("allow", "staff_override", review.event_id)
    pulses_settle(t, 1)

    review = red_code(t)
    t["mono"].t += limit + 0.001        # just past it
    r = staff_card(t)
    assert (r.decision, r.reason, r.ref) == ("deny", "review_expired", review.event_id)
    assert texts.reason_text(r.reason, r.decision, r.method) == "没有待核验人员"
    r = staff_card(t)                   # a stale review is gone, not waiting for a later clock
    assert (r.decision, r.reason) == ("deny", "no_pending_review")
    pulses_settle(t, 1)


def test_a_social_security_card_of_staff_overrides(door):
    """The social-security card carries the same number (the hub's open_gate, the remote form of
    an override: tests/test_remote.py)."""
    t = door
    review = red_code(t)
    n = len(t["results"])
    t["ss"].card = VirtualSsCard(card_number="A00000001", ss_number=t["staff_id"], name=STAFF_NAME)
    wait_for(lambda: len(t["results"]) > n, "the staff's social-security card", timeout=15)
    card_taken_off(t["ss"], SS_PRESENT)
    r = t["results"][-1]
    assert (r.method, r.decision, r.reason, r.ref) == ("staff", "allow", "staff_override", review.event_id)
    pulses_settle(t, 1)
