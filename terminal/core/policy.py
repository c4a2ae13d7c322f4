"""Venue policy (docs/protocol/policy.md): presets per venue type, field overrides, the reason order.

The same policy decides whatever brought the health status in (QR token, ID card,
social-security card): :func:`decide` takes a :class:`HealthStatus`, not a token.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from terminal.core import reasons as R

ALLOW, DENY, REVIEW = "allow", "deny", "review"
DECISIONS = (ALLOW, DENY, REVIEW)


@dataclass(frozen=True)
class Policy:
    max_age: int = 60             # seconds a QR token stays fresh
    max_skew: int = 30            # seconds a token's iat may be ahead of the terminal's clock
    red: str = DENY
    yellow: str = DENY
    star: str = DENY
    close_contact: str = DENY
    nat_hours: int = 72           # a negative sample must be at most this old; 0 = not required
    vax_min_doses: int = 0        # fewer doses is vaccination_required; 0 = not required
    offline_unknown: str = REVIEW  # a card the hub cannot answer for and the cache does not know
    status_cache_hours: int = 24  # how long a hub answer for a card may stand in during an outage
    override_seconds: int = 60    # a staff credential may confirm a review this long after it

    def with_overrides(self, overrides: Mapping[str, object]) -> "Policy":
        return replace(self, **overrides)


DECISION_FIELDS = ("red", "yellow", "star", "close_contact", "offline_unknown")
INT_FIELDS = {"max_age": (0, 86400), "max_skew": (0, 3600), "nat_hours": (0, 24 * 365),
              "vax_min_doses": (0, 9), "status_cache_hours": (0, 24 * 365),
              "override_seconds": (1, 3600)}
FIELD_NAMES = tuple(f.name for f in fields(Policy))

PRESETS: dict[str, Policy] = {
    # medical institutions are exempt from the crowded-place limits; red/yellow go to the fever clinic
    "hospital": Policy(red=REVIEW, yellow=REVIEW, star=ALLOW, nat_hours=0),
    "pharmacy": Policy(nat_hours=72),
    "school": Policy(nat_hours=48),
    "bus": Policy(nat_hours=48),
    "mall": Policy(nat_hours=72),
    "government": Policy(nat_hours=72),
    "scenic": Policy(nat_hours=72),
    "worksite": Policy(nat_hours=48),
    "station": Policy(nat_hours=48),
}
VENUES = tuple(PRESETS)


def validate_overrides(raw: dict) -> dict:
    """Check a mapping of policy fields; raise ValueError naming the first bad field."""
    out = {}
    for key, value in raw.items():
        if key in DECISION_FIELDS:
            if value not in DECISIONS:
                raise ValueError(f"{key}: must be one of {', '.join(DECISIONS)}, not {value!r}")
        elif key in INT_FIELDS:
            lo, hi = INT_FIELDS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{key}: must be an integer from {lo} to {hi}, not {value!r}")
        else:
            raise ValueError(f"{key}: unknown policy field (known: {', '.join(FIELD_NAMES)})")
        out[key] = value
    return out


@dataclass(frozen=True)
class HealthStatus:
    """What the platform says of a person, from a token body or a hub answer for a card."""
    status: int       # 0 green, 1 yellow, 2 red
    flags: int        # bit0 star, bit1 close contact, bit2 monitored
    nat_at: int       # Unix seconds of the last sampling; 0 = none
    nat_result: int   # 0 none, 1 negative, 2 positive, 3 pending
    vax_doses: int


def decide(policy: Policy, h: HealthStatus, now: float) -> tuple[str, str]:
    """(decision, reason): the first check whose decision is not ``allow`` wins."""
    checks = (
        (h.status == 2, policy.red, R.RED_CODE),
        (bool(h.flags & 0x02), policy.close_contact, R.CLOSE_CONTACT),
        (h.status == 1, policy.yellow, R.YELLOW_CODE),
        (h.nat_result == 2, DENY, R.NAT_POSITIVE),
        (bool(h.flags & 0x01), policy.star, R.STAR_CODE),
        (policy.nat_hours > 0 and (h.nat_at == 0 or h.nat_result in (0, 3)), DENY, R.NAT_MISSING),
        (policy.nat_hours > 0 and h.nat_result == 1 and now - h.nat_at > policy.nat_hours * 3600,
         DENY, R.NAT_EXPIRED),
        (h.vax_doses < policy.vax_min_doses, DENY, R.VACCINATION_REQUIRED),
    )
    for applies, decision, reason in checks:
        if applies and decision != ALLOW:
            return decision, reason
    return ALLOW, R.OK
