"""Venue policy: presets, reason order, allow-skips, overrides (docs/protocol/policy.md)."""
from __future__ import annotations

import pytest

from terminal.core import reasons as R
from terminal.core.policy import PRESETS, HealthStatus, Policy, decide, validate_overrides

NOW = 1_800_000_000
H = 3600


def status(status=0, flags=0, nat_at=NOW - 10 * H, nat_result=1, vax=3):
    return HealthStatus(status, flags, nat_at, nat_result, vax)


def test_presets_match_spec_table():
    table = {  # venue: red, yellow, star, nat_hours
        "hospital": ("review", "review", "allow", 0), "pharmacy": ("deny", "deny", "deny", 72),
        "school": ("deny", "deny", "deny", 48), "bus": ("deny", "deny", "deny", 48),
        "mall": ("deny", "deny", "deny", 72), "government": ("deny", "deny", "deny", 72),
        "scenic": ("deny", "deny", "deny", 72), "worksite": ("deny", "deny", "deny", 48),
        "station": ("deny", "deny", "deny", 48),
    }
    assert set(PRESETS) == set(table)
    for venue, (red, yellow, star, nat) in table.items():
        p = PRESETS[venue]
        assert (p.red, p.yellow, p.star, p.nat_hours) == (red, yellow, star, nat)
        assert (p.max_age, p.max_skew, p.close_contact, p.vax_min_doses, p.offline_unknown,
                p.status_cache_hours) == (60, 30, "deny", 0, "review", 24)


@pytest.mark.parametrize("h, expected", [
    (status(), ("allow", R.OK)),
    (status(status=2, flags=3, nat_result=2), ("deny", R.RED_CODE)),
    (status(status=1, flags=2), ("deny", R.CLOSE_CONTACT)),
    (status(status=1, flags=1, nat_result=2), ("deny", R.YELLOW_CODE)),
    (status(flags=1, nat_result=2), ("deny", R.NAT_POSITIVE)),
    (status(flags=1, nat_at=0, nat_result=0), ("deny", R.STAR_CODE)),
    (status(nat_at=0, nat_result=0), ("deny", R.NAT_MISSING)),
    (status(nat_result=3), ("deny", R.NAT_MISSING)),
    (status(nat_result=0), ("deny", R.NAT_MISSING)),
    (status(nat_at=NOW - 73 * H, vax=0), ("deny", R.NAT_EXPIRED)),
    (status(nat_at=NOW - 72 * H), ("allow", R.OK)),
])
def test_reason_order_at_a_mall(h, expected):
    assert decide(PRESETS["mall"], h, NOW) == expected


def test_hospital_reviews_red_and_skips_allowed_checks():
    hospital = PRESETS["hospital"]
    assert decide(hospital, status(status=2), NOW) == ("review", R.RED_CODE)
    assert decide(hospital, status(status=1), NOW) == ("review", R.YELLOW_CODE)
    # star is allow at a hospital: skipped, and no NAT is required there
    assert decide(hospital, status(flags=1, nat_at=0, nat_result=0), NOW) == ("allow", R.OK)
    # close contact is still denied
    assert decide(hospital, status(flags=2), NOW) == ("deny", R.CLOSE_CONTACT)


def test_overrides():
    p = PRESETS["bus"].with_overrides(validate_overrides({"vax_min_doses": 2, "star": "review"}))
    assert decide(p, status(vax=1), NOW) == ("deny", R.VACCINATION_REQUIRED)
    assert decide(p, status(flags=1), NOW) == ("review", R.STAR_CODE)
    assert decide(Policy(nat_hours=0), status(nat_at=0, nat_result=0), NOW) == ("allow", R.OK)


@pytest.mark.parametrize("bad, word", [
    ({"red": "maybe"}, "red"), ({"max_age": -1}, "max_age"), ({"max_age": True}, "max_age"),
    ({"nat_hours": "72"}, "nat_hours"), ({"colour": "red"}, "colour"),
])
def test_bad_overrides_name_the_field(bad, word):
    with pytest.raises(ValueError, match=word):
        validate_overrides(bad)


def test_defaults_match_spec_fields_table():
    p = Policy()
    assert (p.max_age, p.max_skew, p.red, p.yellow, p.star, p.close_contact, p.nat_hours, p.vax_min_doses,
            p.offline_unknown, p.status_cache_hours) == (60, 30, "deny", "deny", "deny", "deny", 72, 0,
                                                         "review", 24)


# Every check on both sides: each row is the smallest step across one check's edge, at a policy
# that denies everything (nat_hours 72, two doses required).
STRICT = Policy(nat_hours=72, vax_min_doses=2)


@pytest.mark.parametrize("h, expected", [
    (status(status=0), ("allow", R.OK)),
    (status(status=1), ("deny", R.YELLOW_CODE)),
    (status(status=2), ("deny", R.RED_CODE)),
    (status(flags=0x04), ("allow", R.OK)),             # monitored only: no check of its own
    (status(flags=0x02), ("deny", R.CLOSE_CONTACT)),
    (status(flags=0x01), ("deny", R.STAR_CODE)),
    (status(nat_result=1), ("allow", R.OK)),
    (status(nat_result=2), ("deny", R.NAT_POSITIVE)),
    (status(nat_result=0), ("deny", R.NAT_MISSING)),   # result none, though a date is on record
    (status(nat_result=3), ("deny", R.NAT_MISSING)),   # pending
    (status(nat_at=0, nat_result=1), ("deny", R.NAT_MISSING)),  # "negative" with no sample on record
    (status(nat_at=NOW - 72 * H), ("allow", R.OK)),     # exactly nat_hours old
    (status(nat_at=NOW - 72 * H - 1), ("deny", R.NAT_EXPIRED)),  # one second older
    (status(nat_at=NOW), ("allow", R.OK)),
    (status(vax=2), ("allow", R.OK)),
    (status(vax=1), ("deny", R.VACCINATION_REQUIRED)),
    (status(vax=0), ("deny", R.VACCINATION_REQUIRED)),
])
def test_each_check_on_both_sides(h, expected):
    assert decide(STRICT, h, NOW) == expected


def test_nat_hours_is_counted_in_hours():
    one = Policy(nat_hours=1)
    assert decide(one, status(nat_at=NOW - H), NOW) == ("allow", R.OK)
    assert decide(one, status(nat_at=NOW - H - 1), NOW) == ("deny", R.NAT_EXPIRED)
    # the smallest requirement still requires a sample
    assert decide(one, status(nat_at=0, nat_result=0), NOW) == ("deny", R.NAT_MISSING)
    # a fractional terminal time: half a second past the limit is past it
    assert decide(one, status(nat_at=NOW - H), NOW + 0.5) == ("deny", R.NAT_EXPIRED)


@pytest.mark.parametrize("h", [
    status(nat_at=0, nat_result=0), status(nat_at=0, nat_result=1), status(nat_result=3),
    status(nat_result=0), status(nat_at=1, nat_result=1),
])
def test_nat_hours_zero_requires_no_sample(h):
    assert decide(Policy(nat_hours=0), h, NOW) == ("allow", R.OK)


def test_nat_positive_is_denied_even_where_no_sample_is_required():
    assert decide(Policy(nat_hours=0), status(nat_result=2), NOW) == ("deny", R.NAT_POSITIVE)
    assert decide(PRESETS["hospital"], status(nat_result=2), NOW) == ("deny", R.NAT_POSITIVE)


@pytest.mark.parametrize("venue", sorted(PRESETS))
def test_no_vaccination_required_by_default(venue):
    """vax_min_doses 0 = not required: a person with no dose at all passes every preset."""
    p = PRESETS[venue]
    assert decide(p, status(vax=0), NOW) == ("allow", R.OK)
    assert decide(p.with_overrides({"vax_min_doses": 1}), status(vax=0), NOW) == \
        ("deny", R.VACCINATION_REQUIRED)
    assert decide(p.with_overrides({"vax_min_doses": 1}), status(vax=1), NOW) == ("allow", R.OK)


def test_reason_order_and_allow_skips_to_the_next():
    """docs/protocol/policy.md: red, close contact, yellow, NAT positive, star, NAT missing, NAT expired,
    vaccination, ok — the first check that applies and is not ``allow`` wins."""
    p = STRICT
    red_all = status(status=2, flags=3, nat_at=0, nat_result=2, vax=0)
    assert decide(p, red_all, NOW) == ("deny", R.RED_CODE)
    p = p.with_overrides({"red": "allow"})
    assert decide(p, red_all, NOW) == ("deny", R.CLOSE_CONTACT)
    yellow_all = status(status=1, flags=3, nat_at=0, nat_result=2, vax=0)
    assert decide(p, yellow_all, NOW) == ("deny", R.CLOSE_CONTACT)
    p = p.with_overrides({"close_contact": "allow"})
    assert decide(p, red_all, NOW) == ("deny", R.NAT_POSITIVE)     # red allowed, and not yellow
    assert decide(p, yellow_all, NOW) == ("deny", R.YELLOW_CODE)
    p = p.with_overrides({"yellow": "allow"})
    assert decide(p, yellow_all, NOW) == ("deny", R.NAT_POSITIVE)
    star_all = status(status=1, flags=3, nat_at=0, nat_result=0, vax=0)
    assert decide(p, star_all, NOW) == ("deny", R.STAR_CODE)
    p = p.with_overrides({"star": "allow"})
    assert decide(p, star_all, NOW) == ("deny", R.NAT_MISSING)
    old = status(status=1, flags=3, nat_at=NOW - 73 * H, nat_result=1, vax=0)
    assert decide(p, old, NOW) == ("deny", R.NAT_EXPIRED)
    fresh = status(status=1, flags=3, nat_result=1, vax=0)
    assert decide(p, fresh, NOW) == ("deny", R.VACCINATION_REQUIRED)
    assert decide(p, status(status=1, flags=3, vax=2), NOW) == ("allow", R.OK)


@pytest.mark.parametrize("field, h, reason", [
    ("red", status(status=2), R.RED_CODE),
    ("yellow", status(status=1), R.YELLOW_CODE),
    ("star", status(flags=0x01), R.STAR_CODE),
    ("close_contact", status(flags=0x02), R.CLOSE_CONTACT),
])
@pytest.mark.parametrize("decision", ["allow", "deny", "review"])
def test_every_decision_of_every_field(field, h, reason, decision):
    p = Policy().with_overrides(validate_overrides({field: decision}))
    assert getattr(p, field) == decision
    assert decide(p, h, NOW) == ((decision, reason) if decision != "allow" else ("allow", R.OK))


@pytest.mark.parametrize("decision", ["allow", "deny", "review"])
def test_offline_unknown_takes_every_decision(decision):
    assert validate_overrides({"offline_unknown": decision}) == {"offline_unknown": decision}
    assert Policy().with_overrides({"offline_unknown": decision}).offline_unknown == decision


@pytest.mark.parametrize("field", ["red", "yellow", "star", "close_contact", "offline_unknown"])
@pytest.mark.parametrize("bad", ["Allow", "", "ok", None, 1, True])
def test_decision_fields_refuse_anything_else(field, bad):
    with pytest.raises(ValueError) as e:
        validate_overrides({field: bad})
    assert str(e.value) == f"{field}: must be one of allow, deny, review, not {bad!r}"


LIMITS = {"max_age": (0, 86400), "max_skew": (0, 3600), "nat_hours": (0, 8760), "vax_min_doses": (0, 9),
          "status_cache_hours": (0, 8760), "override_seconds": (1, 3600)}


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_int_fields_accept_both_bounds(field):
    lo, hi = LIMITS[field]
    for value in (lo, hi):
        assert validate_overrides({field: value}) == {field: value}
        assert getattr(Policy().with_overrides({field: value}), field) == value


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_int_fields_refuse_outside_bounds_and_other_types(field):
    lo, hi = LIMITS[field]
    for bad in (lo - 1, hi + 1, True, False, float(lo), float(hi), str(lo), None):
        with pytest.raises(ValueError) as e:
            validate_overrides({field: bad})
        assert str(e.value) == f"{field}: must be an integer from {lo} to {hi}, not {bad!r}"


def test_validate_overrides_keeps_every_good_field_and_names_the_first_bad():
    good = {"red": "review", "max_age": 30, "nat_hours": 0, "offline_unknown": "deny"}
    assert validate_overrides(good) == good
    assert validate_overrides({}) == {}
    with pytest.raises(ValueError) as e:
        validate_overrides({"max_age": 30, "colour": "red", "red": "maybe"})
    assert str(e.value) == ("colour: unknown policy field (known: max_age, max_skew, red, yellow, star, "
                            "close_contact, nat_hours, vax_min_doses, offline_unknown, status_cache_hours, "
                            "override_seconds)")


def test_policies_and_statuses_are_frozen():
    """Presets are shared by every presentation (and threads): an override makes a new Policy."""
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["mall"].red = "allow"
    with pytest.raises(dataclasses.FrozenInstanceError):
        status().status = 0
    p = PRESETS["mall"].with_overrides({"red": "review"})
    assert (p.red, PRESETS["mall"].red) == ("review", "deny")
