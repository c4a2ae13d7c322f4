"""Reason codes (docs/protocol/token.md §7, docs/protocol/policy.md, docs/protocol/devices.md §4):
stable strings, in the order checks run."""

OK = "ok"
NOT_HEALTH_CODE = "not_health_code"
UNSUPPORTED_VERSION = "unsupported_version"
BAD_FORMAT = "bad_format"
UNKNOWN_ISSUER = "unknown_issuer"
ISSUER_REVOKED = "issuer_revoked"
BAD_SIGNATURE = "bad_signature"
CLOCK_UNTRUSTED = "clock_untrusted"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
UNKNOWN_DATA_KEY = "unknown_data_key"
REPLAYED = "replayed"

RED_CODE = "red_code"
CLOSE_CONTACT = "close_contact"
YELLOW_CODE = "yellow_code"
NAT_POSITIVE = "nat_positive"
STAR_CODE = "star_code"
NAT_MISSING = "nat_missing"
NAT_EXPIRED = "nat_expired"
VACCINATION_REQUIRED = "vaccination_required"
STATUS_UNAVAILABLE = "status_unavailable"

# Staff override (docs/protocol/staff.md): a staff credential confirmed the review event named
# by ``ref``; or there was no review to confirm, or it was older than override_seconds.
STAFF_OVERRIDE = "staff_override"
NO_PENDING_REVIEW = "no_pending_review"
REVIEW_EXPIRED = "review_expired"

# The terminal's own: a person presented and no code or card could be read (terminal.core.guidance).
UNREADABLE = "unreadable"

TOKEN_REASONS = (NOT_HEALTH_CODE, UNSUPPORTED_VERSION, BAD_FORMAT, UNKNOWN_ISSUER, ISSUER_REVOKED,
                 BAD_SIGNATURE, CLOCK_UNTRUSTED, NOT_YET_VALID, EXPIRED, UNKNOWN_DATA_KEY, REPLAYED)
POLICY_REASONS = (RED_CODE, CLOSE_CONTACT, YELLOW_CODE, NAT_POSITIVE, STAR_CODE, NAT_MISSING,
                  NAT_EXPIRED, VACCINATION_REQUIRED, STATUS_UNAVAILABLE)
STAFF_REASONS = (STAFF_OVERRIDE, NO_PENDING_REVIEW, REVIEW_EXPIRED)
TERMINAL_REASONS = (UNREADABLE,)
ALL = (OK,) + TOKEN_REASONS + POLICY_REASONS + STAFF_REASONS + TERMINAL_REASONS

# Not a verification's outcome: the reason of a maintenance event (method "maintenance"), a gate
# pulsed by a remote gate_test (docs/protocol/hub.md, Remote commands).
GATE_TEST = "gate_test"
