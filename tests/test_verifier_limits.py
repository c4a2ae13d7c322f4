"""Freshness, issuer window and replay (spec/token.md §4 steps 2, 4, 6) at their exact limits,
through ``Verifier.verify`` with whole-second times: each limit is met once inside, once a
second outside."""
from __future__ import annotations

import time

import pytest

from terminal.core import reasons as R
from terminal.state.clock import ClockGuard
from terminal.core.policy import ALLOW, DENY

from token_strategies import NOT_AFTER, NOT_BEFORE, NOW, body_bytes, fresh_nonce, open_verifier, seal

SKEW, AGE = 30, 60  # the mall preset's max_skew and max_age


@pytest.fixture
def verifier(vector_config, tmp_path):
    v = open_verifier(vector_config, tmp_path / "state")
    assert (v.policy().max_skew, v.policy().max_age) == (SKEW, AGE)
    yield v
    v.close()


def token(iat: int = NOW, ttl: int = 60, nonce: bytes | None = None) -> str:
    """A green, recently tested subject the mall allows whenever the token itself is good."""
    return seal(body_bytes(nat_at=iat - 3600), iat=iat, ttl=ttl, nonce=nonce)


def outcome(v, text: str, now: int) -> tuple[str, str]:
    r = v.verify(text, now=now)
    return r.decision, r.reason


@pytest.mark.parametrize("ahead, expected", [(SKEW - 1, (ALLOW, R.OK)), (SKEW, (ALLOW, R.OK)),
                                             (SKEW + 1, (DENY, R.NOT_YET_VALID))])
def test_iat_ahead_of_now(verifier, ahead, expected):
    assert outcome(verifier, token(iat=NOW + ahead), NOW) == expected


@pytest.mark.parametrize("ttl, fresh_for", [(30, 30), (AGE, AGE), (90, AGE), (1, 1), (0, 0)],
                         ids=["ttl < max_age", "ttl = max_age", "ttl > max_age", "ttl 1", "ttl 0"])
def test_fresh_until_iat_plus_min_of_ttl_and_max_age(verifier, ttl, fresh_for):
    assert outcome(verifier, token(ttl=ttl), NOW + fresh_for) == (ALLOW, R.OK)
    assert outcome(verifier, token(ttl=ttl), NOW + fresh_for + 1) == (DENY, R.EXPIRED)


def test_max_age_from_the_hubs_policy_bundle(verifier):
    """The venue's own max_age, not a constant: 20 s here, under the token's 60 s ttl."""
    verifier.hub_policy["mall"] = {"max_age": 20, "max_skew": 5}
    assert outcome(verifier, token(), NOW + 20) == (ALLOW, R.OK)
    assert outcome(verifier, token(), NOW + 21) == (DENY, R.EXPIRED)
    assert outcome(verifier, token(iat=NOW + 5), NOW) == (ALLOW, R.OK)
    assert outcome(verifier, token(iat=NOW + 6), NOW) == (DENY, R.NOT_YET_VALID)


def test_fractional_now_is_judged_exactly(verifier):
    assert outcome(verifier, token(), NOW + AGE + 0.5) == (DENY, R.EXPIRED)
    assert outcome(verifier, token(iat=NOW + SKEW), NOW - 0.5) == (DENY, R.NOT_YET_VALID)


@pytest.mark.parametrize("iat, expected", [
    (NOT_BEFORE - 1, (DENY, R.ISSUER_REVOKED)), (NOT_BEFORE, (ALLOW, R.OK)),
    (NOT_AFTER, (ALLOW, R.OK)), (NOT_AFTER + 1, (DENY, R.ISSUER_REVOKED))],
    ids=["not_before - 1", "not_before", "not_after", "not_after + 1"])
def test_issuer_window_is_inclusive(verifier, iat, expected):
    """The window holds ``iat``; ``now`` is the token's own second, so freshness never decides."""
    assert outcome(verifier, token(iat=iat), iat) == expected


def test_no_trusted_time_is_clock_untrusted_and_still_committed(verifier):
    """A wall clock behind the stored floor: refused without a guess, the event stamped with
    the wall clock and marked untrusted, no nonce spent."""
    verifier.clock = ClockGuard(verifier.store, wall=lambda: 1.0, synchronised=lambda: False)
    text = token()
    before = verifier.store.last_seq()
    started = time.time()
    r = verifier.verify(text)
    assert (r.decision, r.reason, r.status, r.name) == (DENY, R.CLOCK_UNTRUSTED, None, None)
    [event] = verifier.store.events(after_seq=before)
    assert (event["clock"], event["reason"]) == ("untrusted", R.CLOCK_UNTRUSTED)
    assert started <= event["at"] <= time.time()
    assert outcome(verifier, text, NOW) == (ALLOW, R.OK)


def test_an_unparsed_code_has_no_envelope(verifier):
    """A refusal before parsing carries no envelope at all; one after parsing carries it."""
    a = verifier.assess("https://example.org", NOW, verifier.policy())
    assert (a.decision, a.reason, a.env, a.body) == (DENY, R.NOT_HEALTH_CODE, None, None)
    a = verifier.assess(token(iat=NOW + SKEW + 1), NOW, verifier.policy())
    assert (a.reason, a.env.iat, a.body) == (R.NOT_YET_VALID, NOW + SKEW + 1, None)


def test_unknown_data_key_after_freshness(verifier):
    """dkid 2 is not in the data-key file; judged only once the token is fresh."""
    text = seal(body_bytes(), dkid=2)
    assert outcome(verifier, text, NOW) == (DENY, R.UNKNOWN_DATA_KEY)
    assert outcome(verifier, text, NOW + AGE + 1) == (DENY, R.EXPIRED)


# --- replay -------------------------------------------------------------------------------

def test_same_token_twice_is_replayed_and_both_are_committed(verifier):
    text = token()
    before = verifier.store.last_seq()
    first, second = verifier.verify(text, now=NOW), verifier.verify(text, now=NOW + 1)
    assert (first.decision, first.reason) == (ALLOW, R.OK)
    assert (second.decision, second.reason) == (DENY, R.REPLAYED)
    assert second.seq == first.seq + 1 and second.name == first.name and second.status == 0
    events = verifier.store.events(after_seq=before)
    assert [(e["decision"], e["reason"], e["at"], e["clock"], e["method"]) for e in events] == \
        [(ALLOW, R.OK, NOW, "trusted", "qr"), (DENY, R.REPLAYED, NOW + 1, "trusted", "qr")]
    assert all(e["subject"] for e in events)


def test_replay_is_judged_by_nonce_not_by_text(verifier):
    """Another token (other iat) with a used nonce is a replay; another nonce is not."""
    nonce = fresh_nonce()
    assert outcome(verifier, token(nonce=nonce), NOW) == (ALLOW, R.OK)
    assert outcome(verifier, token(iat=NOW + 1, nonce=nonce), NOW + 1) == (DENY, R.REPLAYED)
    assert outcome(verifier, token(iat=NOW + 1), NOW + 1) == (ALLOW, R.OK)


def test_a_refused_token_spends_no_nonce(verifier):
    """Presented too early, then in time: the second look is the first real use."""
    text = token(iat=NOW + SKEW + 1)
    assert outcome(verifier, text, NOW) == (DENY, R.NOT_YET_VALID)
    assert outcome(verifier, text, NOW + 1) == (ALLOW, R.OK)
    assert outcome(verifier, text, NOW + 2) == (DENY, R.REPLAYED)


@pytest.mark.parametrize("ttl", [30, 90])
def test_nonce_kept_until_iat_plus_ttl_plus_max_skew(verifier, ttl):
    """Purging at the keep-until keeps the nonce, a second later drops it; by then the token is
    expired anyway, so a purged nonce never lets it in again."""
    text = token(ttl=ttl)
    keep_until = NOW + ttl + SKEW
    assert outcome(verifier, text, NOW) == (ALLOW, R.OK)
    assert verifier.store.purge_nonces(keep_until) == 0
    assert outcome(verifier, text, NOW) == (DENY, R.REPLAYED)     # still remembered
    assert outcome(verifier, text, keep_until) == (DENY, R.EXPIRED)
    assert verifier.store.purge_nonces(keep_until + 1) == 1
    assert outcome(verifier, text, keep_until + 1) == (DENY, R.EXPIRED)
    assert outcome(verifier, text, NOW + min(ttl, 60) + 1) == (DENY, R.EXPIRED)


def test_keep_until_follows_the_venues_max_skew(verifier):
    verifier.hub_policy["mall"] = {"max_skew": 100}
    text = token(ttl=60)
    assert outcome(verifier, text, NOW) == (ALLOW, R.OK)
    assert verifier.store.purge_nonces(NOW + 160) == 0
    assert verifier.store.purge_nonces(NOW + 161) == 1


def test_only_the_terminals_own_time_is_persisted(verifier):
    """``now`` stands in for trusted time (audits, tests): it must not become the clock guard's
    stored floor, or a later real clock would look like it went back. The terminal's own time is
    persisted with the event."""
    verifier.verify(token(iat=NOW + 10**6), now=NOW + 10**6)
    assert verifier.store.get_meta("clock_floor") is None
    started = time.time()
    r = verifier.verify(token())
    assert r.reason == R.EXPIRED  # the token's NOW is long past
    assert float(verifier.store.get_meta("clock_floor")) >= started
