"""Venue policy: presets, reason order, allow-skips, overrides (docs/protocol/policy.md)."""
from __future__ import annotations

import pytest

from terminal import reasons as R
from terminal.policy import PRESETS, HealthStatus, Policy, decide, validate_overrides

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
