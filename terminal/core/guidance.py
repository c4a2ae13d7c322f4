"""A person presenting a code the camera cannot read: what to tell them, and when to give up.

*Presenting* at the camera begins with the first frame in which a QR code is found — decoded,
or located by ``drivers.qrview.look`` without decoding — or, when something came into view
before that (``drivers.presence``: a phone still moving, a screen too dim to locate the code
in at once), when it did, at most ``BACKDATE`` seconds earlier (a queue that keeps the view
busy does not make a code found now look long-presented). From then:

- read: the decision answers the person; the watch starts again once no code has been read
  for ``gap`` seconds (the camera's ``gap``: the code has left, ``QrPresentations``);
- not decoded for ``hint_after`` seconds (and again every ``hint_after`` while it lasts): a hint
  from what the newest frame that was looked at shows, if it is at most ``VIEW_FRESH`` seconds
  old (:func:`advice`) — too small: 请将手机拿近一些; too dark:
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
BACKDATE = 1.0         # s: presenting began at most this long before the code was first found
VIEW_FRESH = 1.0       # s: a hint may come from a view this old (codes on hard frames locate intermittently)

SMALL = 0.30           # code narrower than this share of the frame's short side: too far away
DARK = 160.0           # light modules darker than this grey level: screen too dim
WASHED = 0.10          # this share of the code's cells burnt out flat: a reflection
BLURRED = 0.80         # sharpness (qrview.View) below this: out of focus or moving
GONE_FRAMES = 3        # frames in a row without a code (and gap seconds) before the person has gone


def advice(view: View, short_side: int) -> tuple[str, str]:
    """What is wrong (``small`` | ``dark`` | ``glare`` | ``blur`` | ``other``) and the hint for
    it, in the order that helps most: distance first (a closer code is also larger against
    blur; not when only part of the code was located and its size is unknown), then the
    screen's brightness. Re-aiming the phone moves a reflection, steadies it
    and centres it: one hint for the rest."""
    if view.width_px is not None and view.width_px < SMALL * short_side:
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
        self._view: tuple[float, View] | None = None   # the newest view, and when its frame was taken

    def frame(self, ts: float, *, reading: bool, found: bool, view: View | None,
              short_side: int, present_since: float | None = None) -> Hint | Unreadable | None:
        """One frame taken at ``ts``. ``reading``: a code has been read within the last ``gap``
        seconds (``QrPresentations.in_view``), so its decision answers whoever holds it; ``found``:
        a code was located in this frame; ``view``: how it looks (``drivers.qrview.look``; None
        when not measured this frame); ``present_since``: when something came into view
        (``drivers.presence``), None if nothing is there."""
        if reading or found:
            self._last_code, self._misses = ts, 0
        else:
            self._misses += 1
        if view is not None:
            self._view = (ts, view)
        # Gone: no code for gap seconds, seen in frames (a camera loop slowed down by a busy CPU
        # may take fewer frames than that, and one late frame is no proof the person left).
        if reading or ts - self._last_code > self.gap and self._misses >= GONE_FRAMES:
            self.since, self._gave_up, self._view = None, False, None
            return None
        if self._gave_up:
            return None
        if self.since is None:
            if not found:
                return None
            began = ts if present_since is None else min(ts, max(present_since, ts - BACKDATE))
            self.since = self._last_hint = began
        if ts - self.since >= self.give_up_after:
            since, self.since, self._gave_up = self.since, None, True
            return Unreadable(since)
        if self._view is not None and ts - self._view[0] <= VIEW_FRESH and ts - self._last_hint >= self.hint_after:
            self._last_hint = ts
            return Hint(*advice(self._view[1], short_side))
        return None
