"""What the kiosk says, in plain Chinese a passer-by understands.

Every reason code in :mod:`terminal.core.reasons` has a sentence here (tests iterate ``reasons.ALL``);
a few read differently depending on the decision (a red code sent to staff at a hospital is
not the red code turned away at a mall) or the method (a card carries no "green code").
"""
from __future__ import annotations

import unicodedata
from datetime import datetime

from terminal.core import guidance
from terminal.core import reasons as R
from terminal.core.policy import ALLOW, DENY, REVIEW

HEADLINES = {ALLOW: "请通行", DENY: "禁止通行", REVIEW: "请人工核验"}
# An allow whose gate did not open (relay down): never 请通行 at a shut gate (fleet.md).
GATE_FAULT = "请联系工作人员开门"

METHOD_LABELS = {"qr": "健康码", "id_card": "身份证", "ss_card": "社保卡", "staff": "工作人员"}

NOTHING_WORKS = "设备故障，请联系工作人员"

# The alarm banner (terminal/alarms.py names); an alarm not here is not the passer-by's business
# (hub_unreachable: the terminal decides offline; clock_untrusted: each decision says so).
ALARM_TEXT = {
    "camera_down": "摄像头故障",
    "id_card_down": "身份证读卡器故障",
    "ss_card_down": "社保卡读卡器故障",
    "scanner_down": "扫码器故障",
    "relay_down": "闸机继电器故障",
    "audio_down": "扬声器故障",
    "disk_low": "存储空间不足",
}

REASON_TEXT = {
    R.OK: "健康码绿码",
    R.NOT_HEALTH_CODE: "非健康码，请出示健康码",
    R.UNSUPPORTED_VERSION: "健康码版本不支持，请更新后重试",
    R.BAD_FORMAT: "无法识别此码，请重新出示健康码",
    R.UNKNOWN_ISSUER: "非认可的健康码，请联系工作人员",
    R.ISSUER_REVOKED: "此健康码已失效，请联系工作人员",
    R.BAD_SIGNATURE: "无效健康码",
    R.CLOCK_UNTRUSTED: "终端时间异常，请联系工作人员",
    R.NOT_YET_VALID: "健康码尚未生效，请刷新健康码",
    R.EXPIRED: "截图或过期码，请刷新健康码",
    R.UNKNOWN_DATA_KEY: "无法读取此码，请刷新健康码",
    R.REPLAYED: "此码已使用，请刷新健康码",
    R.RED_CODE: "红码，请配合工作人员",
    R.CLOSE_CONTACT: "密切接触者，请配合工作人员",
    R.YELLOW_CODE: "黄码，请配合工作人员",
    R.NAT_POSITIVE: "核酸检测阳性，请配合工作人员",
    R.STAR_CODE: "行程卡带星，请配合工作人员",
    R.NAT_MISSING: "无有效核酸检测记录",
    R.NAT_EXPIRED: "核酸检测已超时效",
    R.VACCINATION_REQUIRED: "疫苗接种未达要求",
    R.STATUS_UNAVAILABLE: "无法查询健康状态，请人工核验",
    R.UNREADABLE: "未能读取健康码或证件，请等候工作人员",
    R.STAFF_OVERRIDE: "工作人员已放行",
    R.NO_PENDING_REVIEW: "没有待核验人员",
    R.REVIEW_EXPIRED: "没有待核验人员",
}
# A staff credential refused for what it is (forged, expired, used, unreadable): one sentence.
STAFF_INVALID = "工作人员凭证无效"

# Screen-only notices: not decisions, so never in an event; shown on an amber panel.
CARD_UNREAD = "card_unread"
SYSTEM_ERROR = "system_error"
REASON_TEXT.update({
    CARD_UNREAD: "读卡失败，请重新刷卡",
    SYSTEM_ERROR: "系统异常，请联系工作人员",
})

# Hints while a code in view does not read (terminal.core.guidance): on the idle colours, not a decision.
GUIDANCE = {
    guidance.AIM: "请将健康码对准扫描区",
    guidance.CLOSER: "请将手机拿近一些",
    guidance.BRIGHTER: "请调亮手机屏幕",
}

# Where the decision changes what the person should do next.
_BY_DECISION = {
    (R.RED_CODE, REVIEW): "红码，请在此等候工作人员引导",
    (R.CLOSE_CONTACT, REVIEW): "密切接触者，请在此等候工作人员引导",
    (R.NAT_POSITIVE, REVIEW): "核酸检测阳性，请在此等候工作人员引导",
    (R.STATUS_UNAVAILABLE, DENY): "无法查询健康状态，请联系工作人员",
    (R.STATUS_UNAVAILABLE, ALLOW): "暂时无法查询健康状态",
}
# A card is looked up by identity: there is no code colour to announce.
_BY_METHOD = {
    (R.OK, "id_card"): "身份核验通过",
    (R.OK, "ss_card"): "身份核验通过",
}
# An unknown reason code (a newer core, a typo) still gets a sentence fitting the decision.
_GENERIC = {ALLOW: "核验通过", DENY: "无法核验，请联系工作人员", REVIEW: "请等候工作人员核验"}


def alarm_banner(names) -> list[str]:
    """The banner's words for the alarms ``names``, in their order."""
    return [ALARM_TEXT[n] for n in names if n in ALARM_TEXT]


def idle_prompt(qr: bool, id_card: bool, ss_card: bool) -> str:
    """What the idle screen asks for: only the inputs that work now."""
    cards = "/".join(label for label, ok in (("身份证", id_card), ("社保卡", ss_card)) if ok)
    if qr:
        return "请出示健康码" + (f"或刷{cards}" if cards else "")
    return f"请刷{cards}" if cards else NOTHING_WORKS


IDLE_PROMPT = idle_prompt(True, True, True)  # 请出示健康码或刷身份证/社保卡


def screen_decision(decision: str) -> str:
    """The decision the screen shows: anything unknown looks like a review (gate shut, call staff)."""
    return decision if decision in HEADLINES else REVIEW


def reason_text(reason: str, decision: str, method: str | None = None) -> str:
    decision = screen_decision(decision)
    if method == "staff" and reason in R.TOKEN_REASONS and reason != R.CLOCK_UNTRUSTED:
        return STAFF_INVALID
    return (_BY_METHOD.get((reason, method)) or _BY_DECISION.get((reason, decision))
            or REASON_TEXT.get(reason) or _GENERIC[decision])


def method_label(method: str | None) -> str:
    return METHOD_LABELS.get(method or "", "")


def clock_text(t: datetime) -> str:
    return t.strftime("%H:%M:%S")


def date_text(t: datetime) -> str:
    return f"{t.year}年{t.month}月{t.day}日 星期{'一二三四五六日'[t.weekday()]}"


_DROP = {"Cc", "Cf", "Cs", "Co", "Cn"}
MAX_CHARS = 120  # longer caller text is cut (with an ellipsis) before it is measured


def clean(text: object) -> str:
    """Caller text made drawable: no control/format/unassigned characters, whitespace collapsed."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    s = s[:MAX_CHARS * 4]
    out = " ".join("".join(" " if c.isspace() else ("" if unicodedata.category(c) in _DROP else c)
                           for c in s).split())
    return out if len(out) <= MAX_CHARS else out[:MAX_CHARS - 1] + "…"
