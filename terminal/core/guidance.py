"""A person presenting a code the camera cannot read: what to tell them, and when to give up.

*Presenting* at the camera begins with the first frame in which a QR code is found — decoded,
or located by ``drivers.qrview.look`` without decoding. From then:

- read: the decision answers the person; the watch starts again once no code has been read
  for ``gap`` seconds (the camera's ``gap``: the code has left, ``QrPresentations``);
- not decoded for ``hint_after`` seconds (and again every ``hint_after`` while it lasts): a hint
  from what the newest frame shows (:func:`advice`) — too small: 请将手机拿近一些; too dark:
  请调亮手机屏幕; a reflection, blur or anything else: 请将健康码对准扫描区 (the cause is
  counted in the metrics, ``gate_guidance_total``);
- not decoded ``give_up_after`` seconds (10 s) after it began: *unreadable* — the decide thread
  commits a ``review`` event with reason ``unreadable`` and the panel says 请人工核验, so nobody
  is left without an answer; then, as after a decision, quiet until the view is free;
- no code found for ``gap`` seconds, in at least ``GONE_FRAMES`` frames in a row: the person has
  gone; nothing is committed.

:class:`CodeWatch` is confined to the camera's thread and told every frame's time, so tests
drive it with made-up times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.qrview import View

# Hint keys: their sentences are in terminal.screen.texts.
AIM = "guide_aim"
CLOSER = "guide_closer"
BRIGHTER = "guide_brighter"

HINT_AFTER = 0.7       # s without a decode before the first hint, and between hints
GIVE_UP_AFTER = 10.0   # s from presenting to the unreadable review

SMALL = 0.30           # code narrower than this share of the frame's short side: too far away
DARK = 160.0           # light modules darker than this grey level: screen too dim
WASHED = 0.10          # this share of the code's cells burnt out flat: a reflection
BLURRED = 0.80         # sharpness (qrview.View) below this: out of focus or moving
GONE_FRAMES = 3        # frames in a row without a code (and gap seconds) before the person has gone


def advice(view: View, short_side: int) -> tuple[str, str]:
    """What is wrong (``small`` | ``dark`` | ``glare`` | ``blur`` | ``other``) and the hint for
    it, in the order that helps most: distance first (a closer code is also larger against
    blur), then the screen's brightness. Re-aiming the phone moves a reflection, steadies it
    and centres it: one hint for the rest."""
    if view.width_px < SMALL * short_side:
        return "small", CLOSER
    if view.white < DARK:
        return "dark", BRIGHTER
    if view.washed >= WASHED:
        return "glare", AIM
    if view.sharpness < BLURRED:
        return "blur", AIM
    return "other", AIM


@dataclass(frozen=True)
class Hint:
    cause: str             # what advice() saw
    key: str               # what the screen says


@dataclass(frozen=True)
class Unreadable:
    since: float           # when presenting began (the first frame with a code)


class CodeWatch:
    def __init__(self, gap: float, hint_after: float = HINT_AFTER, give_up_after: float = GIVE_UP_AFTER):
        self.gap = gap
        self.hint_after = hint_after
        self.give_up_after = give_up_after
        self.since: float | None = None     # presenting began, nothing read yet
        self._gave_up = False               # unreadable sent: quiet until the view is free
        self._last_code = -math.inf         # the newest frame in which a code was read or found
        self._misses = 0                    # frames since then that showed none
        self._last_hint = 0.0

    def frame(self, ts: float, *, reading: bool, found: bool, view: View | None,
              short_side: int) -> Hint | Unreadable | None:
        """One frame taken at ``ts``. ``reading``: a code has been read within the last ``gap``
        seconds (``QrPresentations.in_view``), so its decision answers whoever holds it; ``found``:
        a code was located in this frame; ``view``: how it looks (``drivers.qrview.look``; None
        when not measured this frame)."""
        if reading or found:
            self._last_code, self._misses = ts, 0
        else:
            self._misses += 1
        # Gone: no code for gap seconds, seen in frames (a camera loop slowed down by a busy CPU
        # may take fewer frames than that, and one late frame is no proof the person left).
        if reading or ts - self._last_code > self.gap and self._misses >= GONE_FRAMES:
            self.since, self._gave_up = None, False
            return None
        if self._gave_up:
            return None
        if self.since is None:
            if not found:
                return None
            self.since = self._last_hint = ts
        if ts - self.since >= self.give_up_after:
            since, self.since, self._gave_up = self.since, None, True
            return Unreadable(since)
        if view is not None and ts - self._last_hint >= self.hint_after:
            self._last_hint = ts
            return Hint(*advice(view, short_side))
        return None
