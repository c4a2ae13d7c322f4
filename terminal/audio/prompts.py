"""What the terminal says: the fixed set of spoken prompts, and which one an outcome gets.

Every sentence is rendered to a WAV file once (terminal/audio/bank.py) — never on the decision
path — so the set is closed: an outcome maps to one of these keys, never to new text.

The voice announces the outcome, not the person's health: a red code, a close contact or a
positive test are all 健康码异常 out loud — the queue behind hears that the gate is shut and
why in general; the screen, read by the person at the gate, gives the detail.
"""
from __future__ import annotations

from dataclasses import dataclass

from terminal.core import reasons as R
from terminal.core.policy import ALLOW, DENY, REVIEW

# The decision-like outcome of a staff member releasing a pending review (docs/protocol/staff.md).
STAFF_OVERRIDE = R.STAFF_OVERRIDE


@dataclass(frozen=True)
class Prompt:
    key: str
    text: str           # the sentence espeak-ng speaks
    tone: str | None    # the tone (terminal/audio/tones.py) it starts with; None for guidance


PROMPTS: dict[str, Prompt] = {p.key: p for p in (
    Prompt("allow", "请通行", ALLOW),
    Prompt("staff_override", "工作人员已放行", ALLOW),
    Prompt("open_by_staff", "请联系工作人员开门", REVIEW),
    Prompt("review", "请人工核验", REVIEW),
    Prompt("deny", "禁止通行", DENY),
    Prompt("deny_invalid", "禁止通行，无效健康码", DENY),
    Prompt("deny_refresh", "禁止通行，请刷新健康码", DENY),
    Prompt("deny_health", "禁止通行，健康码异常", DENY),
    Prompt("deny_nat", "禁止通行，核酸不符合要求", DENY),
    Prompt("deny_vaccine", "禁止通行，疫苗接种未达要求", DENY),
    Prompt("deny_status", "禁止通行，无法查询健康状态", DENY),
    # A staff credential refused (docs/protocol/staff.md): said to the staff member, as on screen.
    Prompt("deny_staff", "工作人员凭证无效", DENY),
    Prompt("deny_no_review", "没有待核验人员", DENY),
    Prompt("device_fault", "设备故障，请联系工作人员", DENY),
    # Camera guidance: said while a code is in view but cannot be read (no decision yet).
    Prompt("guide_aim", "请将健康码对准扫描区", None),
    Prompt("guide_closer", "请将手机拿近一些", None),
    Prompt("guide_brighter", "请调亮手机屏幕", None),
)}

# One prompt per group of deny reasons (terminal/core/reasons.py); a reason not listed is 禁止通行.
DENY_GROUPS: dict[str, tuple[str, ...]] = {
    "deny_invalid": (R.NOT_HEALTH_CODE, R.UNSUPPORTED_VERSION, R.BAD_FORMAT, R.UNKNOWN_ISSUER,
                     R.ISSUER_REVOKED, R.BAD_SIGNATURE, R.UNKNOWN_DATA_KEY),
    "deny_refresh": (R.NOT_YET_VALID, R.EXPIRED, R.REPLAYED),
    "deny_health": (R.RED_CODE, R.YELLOW_CODE, R.STAR_CODE, R.CLOSE_CONTACT, R.NAT_POSITIVE),
    "deny_nat": (R.NAT_MISSING, R.NAT_EXPIRED),
    "deny_vaccine": (R.VACCINATION_REQUIRED,),
    "deny_status": (R.STATUS_UNAVAILABLE,),
    "deny_no_review": (R.NO_PENDING_REVIEW, R.REVIEW_EXPIRED),
    # The terminal's own clock is wrong: nothing the person can fix.
    "device_fault": (R.CLOCK_UNTRUSTED,),
}
_DENY_PROMPT = {reason: key for key, group in DENY_GROUPS.items() for reason in group}

# Screen-only notices (terminal/screen/texts.py) that are spoken too.
NOTICE_PROMPTS = {"system_error": "device_fault"}


def outcome_prompt(decision: str, reason: str, *, gate_ok: bool = True, method: str | None = None) -> str:
    """The prompt key for an outcome. ``gate_ok`` False (the relay is out of order) turns an
    allow into 请联系工作人员开门: the terminal never says 请通行 at a gate that stays shut.
    Anything but allow and deny (review, an unknown decision) asks for a person, like the screen.
    A staff credential refused for what it is (``method`` staff, a token reason: forged, expired,
    used) is 工作人员凭证无效, never the health code's sentence."""
    if decision == ALLOW:
        if not gate_ok:
            return "open_by_staff"
        return "staff_override" if reason == STAFF_OVERRIDE else "allow"
    if decision == DENY:
        if method == "staff" and _DENY_PROMPT.get(reason) in ("deny_invalid", "deny_refresh"):
            return "deny_staff"
        return _DENY_PROMPT.get(reason, "deny")
    return "review"


SPEECH, TONE, SILENT = "speech", "tone", "silent"
MODES = (SPEECH, TONE, SILENT)
# Said whatever the settings: the person must act, and a tone alone would not say how.
_ALWAYS_SPOKEN = ("open_by_staff", "device_fault")


def mode_for(key: str, decision: str, modes: dict[str, str]) -> str:
    """How an outcome's prompt is played, from ``modes`` (decision → speech / tone / silent,
    [audio] on_allow / on_deny / on_review). A staff override ends a review, so it is played
    as reviews are."""
    if key in _ALWAYS_SPOKEN:
        return SPEECH
    if key == "staff_override":
        return modes[REVIEW]
    return modes[decision if decision in (ALLOW, DENY) else REVIEW]
