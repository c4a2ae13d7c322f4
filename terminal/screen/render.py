"""Kiosk screens as Pillow images: a result panel (allow / deny / review) and the idle screen.

Layout is computed first (:class:`Layout`: coloured rectangles and placed text lines, each with
its ink box on the panel) and then drawn, so tests can check geometry without reading pixels.
Every text is fitted into its slot: the largest size whose ink box fits (measured with the font's
own bbox), wrapped onto a second line where the slot allows, and ellipsised at the floor size.

Result panel (any resolution; portrait puts the mark beside the name and reason instead)::

    +--------------------------------+
    | alarm banner (only if alarm)   |   black strip, yellow text
    |  (✗)        禁止通行            |   mark (drawn shapes), headline >= 1/6 of the panel height
    |         张*  ·  健康码          |   masked name, method
    |   截图或过期码，请刷新健康码     |   reason, one or two lines
    |                       12:00:05 |   time of the check (not in large print)
    +--------------------------------+

The outcome is told by shape as well as colour, for those who cannot tell green from red: a
disc with a tick (allow), a cross (deny) or an exclamation mark (review), drawn as polygons —
no font glyph, so no font can turn it into a box. The idle screen's largest text is the
instruction, not the clock. ``large_print`` gives the name, reason and instruction more room
and drops the secondary lines (time of the check, date).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageDraw

from terminal.core.policy import ALLOW, DENY, REVIEW
from terminal.screen import texts
from terminal.screen.fonts import find_cjk_font, font

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), panel pixels

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
# Panel colour, text colour: white on green / red, black on amber (WCAG contrast >= 4.5).
STYLES: dict[str, tuple[RGB, RGB]] = {
    ALLOW: ((0x0B, 0x7A, 0x35), WHITE),
    DENY: ((0xC6, 0x28, 0x28), WHITE),
    REVIEW: ((0xFF, 0xB0, 0x00), BLACK),
}
IDLE_STYLE: tuple[RGB, RGB] = ((0x0D, 0x2B, 0x4E), WHITE)
# The alarm banner must stand out from the panel under it.
RESULT_BANNER: tuple[RGB, RGB] = (BLACK, (0xFF, 0xD4, 0x00))
IDLE_BANNER: tuple[RGB, RGB] = ((0xFF, 0xB0, 0x00), BLACK)

DEFAULT_SIZE = (800, 480)
_REF = 100          # size at which text is measured before scaling to the slot
_ELLIPSIS = "…"
_BREAK_AFTER = "，,、；;：: /"
_BREAK_BEFORE = "或"
_CJK_SAMPLE = "国"  # lines share the vertical extent of a full CJK glyph, so "12:00" sits like "请通行"


@dataclass(frozen=True)
class Panel:
    """One verification result as the screen shows it. ``name`` arrives already masked (``张*``)."""
    decision: str                 # allow / deny / review
    reason: str                   # a code from terminal.core.reasons
    name: str | None = None
    method: str | None = None     # qr / id_card / ss_card
    alarm: str | None = None      # e.g. "身份证读卡器故障"
    time: datetime | None = None
    gate: str | None = None       # the event's gate: "fault" shows an allow as GATE_FAULT, amber


@dataclass(frozen=True)
class TextItem:
    role: str
    text: str
    size: int
    stroke: int
    origin: tuple[int, int]   # where the text is drawn (anchor "la")
    box: Box                  # its ink on the panel
    fill: RGB


@dataclass(frozen=True)
class Mark:
    """The outcome as a shape: a disc of ``disc`` colour with the decision's sign cut in ``sign``."""
    decision: str             # allow: tick, deny: cross, review: exclamation mark
    box: Box                  # the disc's square on the panel
    disc: RGB
    sign: RGB


@dataclass(frozen=True)
class Layout:
    size: tuple[int, int]
    background: RGB
    rects: tuple[tuple[Box, RGB], ...]
    items: tuple[TextItem, ...]
    marks: tuple[Mark, ...] = ()

    def role(self, name: str) -> list[TextItem]:
        return [i for i in self.items if i.role == name]


@dataclass(frozen=True)
class _Fit:
    size: int
    stroke: int
    lines: tuple[str, ...]


class Renderer:
    """Draws panels at one resolution with one font. Construction fails fast without a CJK font."""

    def __init__(self, size: tuple[int, int] = DEFAULT_SIZE, font_path: str | None = None,
                 large_print: bool = False) -> None:
        w, h = size
        if w < 120 or h < 120:
            raise ValueError(f"panel {w}x{h} is too small to be legible")
        self.size = (int(w), int(h))
        self.large_print = large_print
        self.font_path = find_cjk_font(font_path)
        self._fit = functools.lru_cache(maxsize=512)(self._fit_uncached)
        ref = font(self.font_path, _REF)
        _, self._cjk_top, _, self._cjk_bottom = ref.getbbox(_CJK_SAMPLE)

    # ---- public ---------------------------------------------------------------------------

    def result(self, panel: Panel) -> Image.Image:
        return self.draw(self.layout_result(panel))

    def idle(self, venue: str | None, now: datetime, alarm: str | None = None,
             prompt: str = texts.IDLE_PROMPT) -> Image.Image:
        return self.draw(self.layout_idle(venue, now, alarm, prompt))

    def draw(self, layout: Layout) -> Image.Image:
        im = Image.new("RGB", layout.size, layout.background)
        d = ImageDraw.Draw(im)
        for box, colour in layout.rects:
            d.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        for mark in layout.marks:
            draw_mark(d, mark)
        for it in layout.items:
            d.text(it.origin, it.text, font=font(self.font_path, it.size), fill=it.fill,
                   stroke_width=it.stroke, stroke_fill=it.fill)
        return im

    def layout_result(self, panel: Panel) -> Layout:
        w, h = self.size
        decision = texts.screen_decision(panel.decision)
        gate_shut = decision == ALLOW and panel.gate == "fault"
        bg, fg = STYLES[REVIEW if gate_shut else decision]
        rects: list[tuple[Box, RGB]] = []
        items: list[TextItem] = []
        top = self._banner(panel.alarm, RESULT_BANNER, rects, items)
        mark, head, who, why, when = self._result_slots(top)
        headline = texts.GATE_FAULT if gate_shut else texts.HEADLINES[decision]
        items += self._place("headline", headline, head, fg, max_lines=2,
                             stroke=0.025, line_gap=0.08)
        name = texts.clean(panel.name)
        label = texts.method_label(panel.method)
        items += self._place("name", "  ·  ".join(s for s in (name, label) if s), who, fg,
                             max_size=round((who[3] - who[1]) * 0.85))
        reason = texts.reason_text(texts.clean(panel.reason), decision, panel.method)
        items += self._place("reason", reason, why, fg, max_lines=2,
                             max_size=round((why[3] - why[1]) * (0.7 if self.large_print else 0.5)))
        marks = (Mark(REVIEW if gate_shut else decision, mark, fg, bg),)  # a shut gate: "!"
        if panel.time is not None and when is not None:
            items += self._place("time", texts.clock_text(panel.time), when, fg,
                                 max_size=round(min((when[3] - when[1]) * 0.7, min(w, h) * 0.08)),
                                 align="right")
        return Layout(self.size, bg, tuple(rects), tuple(items), marks)

    def _result_slots(self, top: int) -> tuple[Box, Box, Box, Box, Box | None]:
        """Where the mark, headline, name, reason and time go below ``top``. Landscape: the mark
        left of the headline. Portrait, whose headline needs the whole width: left of the name,
        on a taller name row. Large print: no time line, its room to the reason."""
        w, h = self.size
        mx, my = self._margins()
        landscape = w >= h
        shares = {(True, False): (0.44, 0.16, 0.27, 0.13), (True, True): (0.42, 0.18, 0.40),
                  (False, False): (0.44, 0.22, 0.22, 0.12), (False, True): (0.42, 0.22, 0.36)}
        head, who, why, *rest = self._stack((mx, top + my, w - mx, h - my),
                                            shares[(landscape, self.large_print)])
        when = rest[0] if rest else None
        gap = round(min(w, h) * 0.03)
        beside = head if landscape else who
        side = min(beside[3] - beside[1], round((w - 2 * mx) * 0.3))
        y = (beside[1] + beside[3] - side) // 2
        mark = (mx, y, mx + side, y + side)
        if landscape:
            # The headline may use nearly the full width: it is what is read from two metres.
            head = (mark[2] + gap, head[1], w - round(w * 0.02), head[3])
        else:
            head = (round(w * 0.02), head[1], w - round(w * 0.02), head[3])
            who = (mark[2] + gap, who[1], who[2], who[3])
        return mark, head, who, why, when

    def layout_idle(self, venue: str | None, now: datetime, alarm: str | None = None,
                    prompt: str = texts.IDLE_PROMPT) -> Layout:
        """``prompt``: what to present, naming only the inputs that work (``texts.idle_prompt``)."""
        w, h = self.size
        bg, fg = IDLE_STYLE
        rects: list[tuple[Box, RGB]] = []
        items: list[TextItem] = []
        top = self._banner(alarm, IDLE_BANNER, rects, items)
        place, ask, clock, date = self._idle_slots(top)
        said = self._place("prompt", texts.clean(prompt), ask, fg, max_lines=2,
                           max_size=round((ask[3] - ask[1]) * 0.44))
        # The instruction is the largest text on the screen: the others stay below its size.
        cap = round(min(i.size for i in said) * 0.75) if said else h

        def capped(slot: Box, share: float) -> int:
            return min(cap, round((slot[3] - slot[1]) * share))
        items += self._place("venue", texts.clean(venue), place, fg, max_lines=2, max_size=capped(place, 0.5))
        items += said
        items += self._place("clock", texts.clock_text(now), clock, fg, max_size=capped(clock, 1.0))
        if date is not None:
            items += self._place("date", texts.date_text(now), date, fg, max_size=capped(date, 0.8))
        return Layout(self.size, bg, tuple(rects), tuple(items))

    def _idle_slots(self, top: int) -> tuple[Box, Box, Box, Box | None]:
        """Venue, instruction, clock and date (none in large print) from the top down."""
        w, h = self.size
        mx, my = self._margins()
        shares = (0.16, 0.58, 0.26) if self.large_print else (0.18, 0.44, 0.24, 0.14)
        place, prompt, clock, *date = self._stack((mx, top + my, w - mx, h - my), shares)
        return place, prompt, clock, (date[0] if date else None)

    # ---- layout helpers -------------------------------------------------------------------

    def _margins(self) -> tuple[int, int]:
        w, h = self.size
        m = round(min(w, h) * 0.04)
        return m, m

    def _banner(self, alarm: str | None, style: tuple[RGB, RGB], rects: list, items: list) -> int:
        """Draw the alarm strip if there is an alarm; return where the content starts."""
        text = texts.clean(alarm)
        if not text:
            return 0
        w, h = self.size
        bh = round(min(h * 0.11, w * 0.09))
        rects.append(((0, 0, w, bh), style[0]))
        pad = round(bh * 0.15)
        items += self._place("alarm", text, (pad * 2, pad, w - pad * 2, bh - pad), style[1])
        return bh

    def _stack(self, box: Box, fractions: tuple[float, ...]) -> list[Box]:
        """Split ``box`` vertically into slots of the given shares, with small gaps between."""
        left, top, right, bottom = box
        gap = round(self.size[1] * 0.015)
        room = max(0, bottom - top - gap * (len(fractions) - 1))
        total = sum(fractions)
        out, y = [], top
        for f in fractions:
            hgt = round(room * f / total)
            out.append((left, y, right, min(bottom, y + hgt)))
            y += hgt + gap
        return out

    def _place(self, role: str, text: str, box: Box, fill: RGB, *, max_lines: int = 1,
               max_size: int | None = None, stroke: float = 0.0, line_gap: float = 0.18,
               align: str = "center") -> list[TextItem]:
        left, top, right, bottom = box
        bw, bh = right - left, bottom - top
        if not text or bw < 4 or bh < 4:
            return []
        fit = self._fit(text, bw, bh, max_lines, max_size or bh, stroke, line_gap)
        if not fit.lines:
            return []
        f = font(self.font_path, fit.size)
        gap = round(fit.size * line_gap)
        ext = [self._line_extent(f, ln, fit.stroke) for ln in fit.lines]
        block = sum(b - t for _, t, _, b in ext) + gap * (len(ext) - 1)
        y = top + (bh - block) // 2
        out = []
        for line, (l, t, r, b) in zip(fit.lines, ext):
            lw = r - l
            x = {"left": left, "right": right - lw}.get(align, left + (bw - lw) // 2)
            il, it, ir, ib = f.getbbox(line, stroke_width=fit.stroke)
            ox, oy = x - l, y - t
            out.append(TextItem(role, line, fit.size, fit.stroke, (ox, oy),
                                (ox + il, oy + it, ox + ir, oy + ib), fill))
            y += (b - t) + gap
        return out

    def _line_extent(self, f, line: str, stroke: int) -> Box:
        """Ink box of a line, stretched vertically to a full CJK glyph's height."""
        l, t, r, b = f.getbbox(line, stroke_width=stroke)
        scale = f.size / _REF
        return (l, min(t, round(self._cjk_top * scale) - stroke), r,
                max(b, round(self._cjk_bottom * scale) + stroke))

    def _fits(self, lines: tuple[str, ...], size: int, stroke: int, bw: int, bh: int,
              line_gap: float) -> bool:
        f = font(self.font_path, size)
        ext = [self._line_extent(f, ln, stroke) for ln in lines]
        height = sum(b - t for _, t, _, b in ext) + round(size * line_gap) * (len(ext) - 1)
        return height <= bh and all(r - l <= bw for l, _, r, _ in ext)

    def _fit_uncached(self, text: str, bw: int, bh: int, max_lines: int, max_size: int,
                      stroke_ratio: float, line_gap: float) -> _Fit:
        best: _Fit | None = None
        for n in range(1, max_lines + 1):
            lines = _split(text, n)
            if lines is None:
                break
            size = self._largest(lines, bw, bh, max_size, stroke_ratio, line_gap)
            # A second line only if it buys clearly bigger text.
            if size and (best is None or size > best.size * 1.15):
                best = _Fit(size, round(size * stroke_ratio), lines)
        floor = max(12, round(min(self.size) / 24))  # smaller is not worth showing
        if best is not None and best.size >= min(floor, max_size):
            return best
        return self._ellipsised(text, bw, bh, max_lines, max(1, min(floor, max_size)),
                                stroke_ratio, line_gap)

    def _largest(self, lines: tuple[str, ...], bw: int, bh: int, max_size: int,
                 stroke_ratio: float, line_gap: float) -> int:
        """Largest size at which ``lines`` fit: scaled from a measurement at _REF, then checked."""
        ref = font(self.font_path, _REF)
        stroke = round(_REF * stroke_ratio)
        ext = [self._line_extent(ref, ln, stroke) for ln in lines]
        width = max(r - l for l, _, r, _ in ext)
        height = sum(b - t for _, t, _, b in ext) + _REF * line_gap * (len(ext) - 1)
        size = int(min(max_size, bw * _REF / max(1, width), bh * _REF / max(1, height)))
        while size > 0 and not self._fits(lines, size, round(size * stroke_ratio), bw, bh, line_gap):
            size -= max(1, size // 50)
        return size

    def _ellipsised(self, text: str, bw: int, bh: int, max_lines: int, size: int,
                    stroke_ratio: float, line_gap: float) -> _Fit:
        """Too long even at the floor size: fill the lines greedily and end with an ellipsis."""
        stroke = round(size * stroke_ratio)
        f = font(self.font_path, size)
        # As many lines as the slot's height holds, so the last one is the one that says "…".
        while max_lines > 1 and not self._fits((_CJK_SAMPLE,) * max_lines, size, stroke, bw, bh,
                                               line_gap):
            max_lines -= 1
        lines: list[str] = []
        rest = text
        while rest and len(lines) < max_lines:
            last = len(lines) == max_lines - 1
            n = _longest_prefix(f, rest, bw, stroke, _ELLIPSIS if last else "")
            line = rest[:n] if n == len(rest) or not last else rest[:n].rstrip() + _ELLIPSIS
            if n == 0 and not last or not self._fits((*lines, line), size, stroke, bw, bh,
                                                     line_gap):
                break
            lines.append(line)
            rest = "" if last else rest[n:].lstrip()
        if not lines:  # the slot cannot hold one glyph: show nothing rather than spill
            return _Fit(size, stroke, ())
        return _Fit(size, stroke, tuple(lines))


def draw_mark(d: ImageDraw.ImageDraw, mark: Mark) -> None:
    """The disc and its sign, from straight strokes with round ends (no font involved)."""
    left, top, right, bottom = mark.box
    size = min(right - left, bottom - top)
    if size < 8:
        return
    d.ellipse((left, top, left + size - 1, top + size - 1), fill=mark.disc)
    stroke = max(2, round(size * 0.11))

    def at(fx: float, fy: float) -> tuple[float, float]:
        return left + fx * size, top + fy * size

    def line(*points: tuple[float, float]) -> None:
        pts = [at(*p) for p in points]
        d.line(pts, fill=mark.sign, width=stroke, joint="curve")
        for x, y in (pts[0], pts[-1]):  # round ends
            d.ellipse((x - stroke / 2, y - stroke / 2, x + stroke / 2, y + stroke / 2), fill=mark.sign)

    if mark.decision == ALLOW:
        line((0.27, 0.52), (0.43, 0.68), (0.74, 0.35))
    elif mark.decision == DENY:
        line((0.32, 0.32), (0.68, 0.68))
        line((0.68, 0.32), (0.32, 0.68))
    else:
        line((0.5, 0.22), (0.5, 0.58))
        x, y = at(0.5, 0.76)
        r = stroke * 0.65
        d.ellipse((x - r, y - r, x + r, y + r), fill=mark.sign)


def _longest_prefix(f, text: str, width: int, stroke: int, suffix: str) -> int:
    """How many leading characters of ``text`` (plus ``suffix``) fit in ``width``."""
    def ok(n: int) -> bool:
        seg = text[:n] if n == len(text) else text[:n] + suffix
        l, _, r, _ = f.getbbox(seg, stroke_width=stroke)
        return r - l <= width
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split(text: str, n: int) -> tuple[str, ...] | None:
    """``text`` on ``n`` lines (1 or 2), broken where a reader expects it; None if it can't be."""
    if n == 1:
        return (text,)
    if n != 2 or len(text) < 2:
        return None
    half = len(text) / 2

    def allowed(i: int) -> bool:  # never inside a Latin word or a number
        return not (text[i - 1].isascii() and text[i - 1].isalnum()
                    and text[i].isascii() and text[i].isalnum())

    natural = [i for i in range(1, len(text))
               if allowed(i) and (text[i - 1] in _BREAK_AFTER or text[i] in _BREAK_BEFORE)]
    balanced = [i for i in natural if abs(i - half) <= len(text) * 0.35]
    plain = [i for i in range(1, len(text)) if allowed(i)] or list(range(1, len(text)))
    i = min(balanced or plain, key=lambda k: (abs(k - half), -k))  # ties: longer first line
    a, b = text[:i].rstrip(), text[i:].lstrip()
    return (a, b) if a and b else None
