"""Kiosk screen: texts for every reason, layout at several panel sizes, backends."""
from __future__ import annotations

import dataclasses
import itertools
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageDraw

from terminal import config as cfgmod
from terminal.core import guidance as G
from terminal.core import reasons
from terminal.core.policy import ALLOW, DECISIONS, DENY, REVIEW
from terminal.screen import (FontError, FramebufferError, FramebufferScreen, NullScreen, Panel,
                             PngScreen, Renderer, open_screen)
from terminal.screen import fonts, render, texts
from terminal.screen.framebuffer import (FIX_SIZE, VAR_SIZE, Bitfield, FbGeometry, pack_pixels)

SIZES = [(800, 480), (1024, 600), (1280, 720), (1280, 800), (600, 1024)]
METHODS = ["qr", "id_card", "ss_card", None]
T = datetime(2024, 5, 1, 12, 0, 5)


@pytest.fixture(scope="module")
def renderers() -> dict[tuple[int, int], Renderer]:
    return {size: Renderer(size) for size in SIZES}


@pytest.fixture(scope="module")
def r800(renderers) -> Renderer:
    return renderers[(800, 480)]


# ---- texts -------------------------------------------------------------------------------------

def test_every_reason_code_has_its_own_sentence():
    for code in reasons.ALL:
        assert texts.REASON_TEXT.get(code), code
        for decision, method in itertools.product(DECISIONS, METHODS):
            said = texts.reason_text(code, decision, method)
            assert said and said != texts.reason_text("no-such-reason", decision, method), code


def test_sentences_follow_decision_and_method():
    assert texts.reason_text(reasons.EXPIRED, DENY, "qr") == "截图或过期码，请刷新健康码"
    assert texts.reason_text(reasons.REPLAYED, DENY, "qr") == "此码已使用，请刷新健康码"
    assert "等候工作人员" in texts.reason_text(reasons.RED_CODE, REVIEW, "qr")
    assert "等候" not in texts.reason_text(reasons.RED_CODE, DENY, "qr")
    assert texts.reason_text(reasons.OK, ALLOW, "qr") == "健康码绿码"
    assert texts.reason_text(reasons.OK, ALLOW, "id_card") == "身份核验通过"
    assert texts.reason_text(reasons.OK, ALLOW, "ss_card") == "身份核验通过"
    assert [texts.method_label(m) for m in METHODS] == ["健康码", "身份证", "社保卡", ""]


def test_unknown_reason_and_decision_get_generic_words():
    assert texts.reason_text("zzz", DENY) != texts.reason_text("zzz", ALLOW)
    assert texts.screen_decision("maybe") == REVIEW
    assert texts.reason_text("zzz", "maybe") == texts.reason_text("zzz", REVIEW)


def test_fixed_texts_have_no_tofu(r800):
    every = "".join([*texts.REASON_TEXT.values(), *texts.HEADLINES.values(), *texts.GUIDANCE.values(),
                     *texts.METHOD_LABELS.values(), texts.IDLE_PROMPT, render._ELLIPSIS,
                     texts.GATE_FAULT, *texts.ALARM_TEXT.values(),
                     *(texts.idle_prompt(*w) for w in itertools.product((True, False), repeat=3)),
                     texts.date_text(T), "0123456789:·*", "一二三四五六日",
                     *(texts.reason_text(c, d, m) for c, d, m in
                       itertools.product(reasons.ALL, DECISIONS, METHODS))])
    assert fonts.missing_glyphs(fonts.font(r800.font_path, 24), every) == ""


def test_tofu_detection_sees_missing_glyphs(r800):
    f = fonts.font(r800.font_path, 24)
    assert fonts.missing_glyphs(f, "请\U000F0000通\U000F0001") == "\U000F0000\U000F0001"


def test_clean_drops_what_cannot_be_drawn():
    assert texts.clean("张\x00*\u200b\n\t三\ud800") == "张* 三"
    assert texts.clean(None) == ""
    long = texts.clean("长" * 10_000)
    assert len(long) == texts.MAX_CHARS and long.endswith("…")


def test_date_and_clock():
    assert texts.clock_text(T) == "12:00:05"
    assert texts.date_text(T) == "2024年5月1日 星期三"


# ---- fonts -------------------------------------------------------------------------------------

def test_font_falls_back_from_a_bad_preference(r800, tmp_path):
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    assert fonts.find_cjk_font(str(junk)) == r800.font_path
    assert fonts.covers_cjk(r800.font_path) and not fonts.covers_cjk(str(junk))


FC_MATCH = ["fc-match", "-f", "%{file}", "sans:lang=zh-cn"]


def test_fc_match_is_the_fallback(mocker):
    """No known font path: the real fontconfig is asked for a Chinese sans font, and its answer taken."""
    mocker.patch.object(fonts, "KNOWN_FONTS", ())
    run = mocker.spy(fonts.subprocess, "run")
    path = fonts.find_cjk_font()
    assert [c.args[0] for c in run.call_args_list] == [FC_MATCH]
    assert Path(path).is_file() and fonts.covers_cjk(path)


@pytest.mark.parametrize("fc_match", [
    FileNotFoundError(2, "No such file or directory", "fc-match"),  # fontconfig not installed
    subprocess.TimeoutExpired(FC_MATCH, 10),                        # fontconfig hangs
    "",                                                              # no match at all
    "/nonexistent/font.ttf",                                         # names a file that is not there
    "junk",                                                          # names a file that is no font
])
def test_no_cjk_font_is_a_clear_error_at_startup(mocker, tmp_path, fc_match):
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"\0" * 64)
    mocker.patch.object(fonts, "KNOWN_FONTS", (str(junk),))
    # the subprocess boundary: fontconfig's answer, or its failure
    answer = subprocess.CompletedProcess(FC_MATCH, 0, stdout=str(junk) if fc_match == "junk" else fc_match, stderr="")
    run = mocker.patch.object(fonts.subprocess, "run", autospec=True,
                              side_effect=fc_match if isinstance(fc_match, BaseException) else None,
                              return_value=answer)
    with pytest.raises(FontError, match="fonts-wqy-microhei"):
        Renderer((800, 480))
    assert [c.args[0] for c in run.call_args_list] == [FC_MATCH]


# ---- rendering -------------------------------------------------------------------------------

def _inside(box, w, h) -> bool:
    left, top, right, bottom = box
    return 0 <= left < right <= w and 0 <= top < bottom <= h


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_layout(layout, renderer: Renderer) -> None:
    """Every text is inside the panel, apart from the others, and draws only inside its box."""
    w, h = layout.size
    for a, b in itertools.combinations(layout.items, 2):
        assert not _overlap(a.box, b.box), (a, b)
    for m in layout.marks:   # the outcome's mark: on the panel, clear of every text
        assert _inside(m.box, w, h), m
        assert not [it for it in layout.items if _overlap(m.box, it.box)], m
    pad = 300
    for it in layout.items:
        assert _inside(it.box, w, h), it
        # Draw on a canvas larger than the panel: nothing may land outside the claimed box.
        canvas = Image.new("L", (w + 2 * pad, h + 2 * pad))
        ImageDraw.Draw(canvas).text((it.origin[0] + pad, it.origin[1] + pad), it.text,
                                    font=fonts.font(renderer.font_path, it.size), fill=255,
                                    stroke_width=it.stroke, stroke_fill=255)
        ink = canvas.getbbox()
        assert ink is not None, it
        l, t, r, b = (v - pad for v in ink)
        assert it.box[0] - 1 <= l and it.box[1] - 1 <= t and r <= it.box[2] + 1 \
            and b <= it.box[3] + 1, (it, (l, t, r, b))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("decision", DECISIONS)
def test_result_layout_is_legible(renderers, size, decision):
    r = renderers[size]
    w, h = size
    for reason, method, alarm in itertools.product(reasons.ALL, METHODS, (None, "身份证读卡器故障")):
        lay = r.layout_result(Panel(decision, reason, "欧***", method, alarm, T))
        _check_layout(lay, r)
        head = lay.role("headline")
        assert "".join(i.text for i in head) == texts.HEADLINES[decision]
        for line in head:  # readable from two metres
            assert line.box[3] - line.box[1] >= h / 6, (size, line)
        assert "".join(i.text for i in lay.role("reason")) == \
            texts.reason_text(reason, decision, method)
        assert [i.text for i in lay.role("time")] == ["12:00:05"]
        assert bool(lay.role("alarm")) == bool(alarm)


def _corners(im: Image.Image, top: bool) -> list:
    w, h = im.size
    pts = [(2, h - 3), (w - 3, h - 3)] + ([(2, 2), (w - 3, 2)] if top else [])
    return [im.getpixel(p) for p in pts]


def test_every_decision_reason_and_method_renders(r800):
    for decision, reason, method in itertools.product(DECISIONS, reasons.ALL, METHODS):
        alarm = "存储空间不足" if reason in reasons.TOKEN_REASONS else None
        panel = Panel(decision, reason, "张*", method, alarm, T)
        im = r800.result(panel)
        assert im.size == (800, 480) and im.mode == "RGB"
        bg, fg = render.STYLES[decision]
        assert set(_corners(im, top=alarm is None)) == {bg}
        if alarm:
            assert im.getpixel((2, 2)) == render.RESULT_BANNER[0]
        head = r800.layout_result(panel).role("headline")[0]
        area = im.crop(head.box)
        colours = {c for _, c in area.getcolors(maxcolors=1 << 16)}
        assert bg in colours and fg in colours  # not uniform: the headline is really drawn


def test_unknown_decision_looks_like_review(r800):
    im = r800.result(Panel("maybe", "??", None, None))
    assert set(_corners(im, top=True)) == {render.STYLES[REVIEW][0]}


def _luminance(rgb) -> float:
    def lin(c: int) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("pair", [*render.STYLES.values(), render.IDLE_STYLE,
                                  render.RESULT_BANNER, render.IDLE_BANNER])
def test_strong_contrast(pair):
    a, b = sorted(map(_luminance, pair))
    assert (b + 0.05) / (a + 0.05) >= 4.5


def test_white_on_green_and_red_black_on_amber():
    assert render.STYLES[ALLOW][1] == render.STYLES[DENY][1] == render.WHITE
    assert render.STYLES[REVIEW][1] == render.BLACK
    g, r, a = (render.STYLES[d][0] for d in (ALLOW, DENY, REVIEW))
    assert g[1] > max(g[0], g[2]) and r[0] > max(r[1], r[2]) and a[0] > a[1] > a[2]


@pytest.mark.parametrize("size", SIZES)
def test_idle_screen(renderers, size):
    r = renderers[size]
    for venue, alarm in [("XX市第一人民医院 门诊楼东门", None), ("", "存储空间不足"),
                         ("某" * 500, "身份证读卡器故障" * 20)]:
        lay = r.layout_idle(venue, T, alarm)
        _check_layout(lay, r)
        assert [i.text for i in lay.role("clock")] == ["12:00:05"]
        assert "".join(i.text for i in lay.role("prompt")) == texts.IDLE_PROMPT
        assert [i.text for i in lay.role("date")] == ["2024年5月1日 星期三"]
        if len(venue) > 100:  # cannot fit: shortened, and says so
            assert lay.role("venue")[-1].text.endswith("…")
            assert lay.role("alarm")[-1].text.endswith("…")
        im = r.draw(lay)
        bg = render.IDLE_STYLE[0]
        assert set(_corners(im, top=alarm is None)) == {bg}
        clock = lay.role("clock")[0]
        assert len(im.crop(clock.box).getcolors(maxcolors=1 << 16)) > 1


@pytest.mark.parametrize("size", SIZES)
def test_guidance_screen(renderers, size):
    r = renderers[size]
    for key, sentence in texts.GUIDANCE.items():
        for alarm in (None, "身份证读卡器故障"):
            lay = r.layout_guide(key, alarm)
            _check_layout(lay, r)
            assert "".join(i.text for i in lay.role("guide")) == sentence
            assert [i.text for i in lay.role("alarm")] == ([alarm] if alarm else [])
            assert set(_corners(r.draw(lay), top=alarm is None)) == {render.IDLE_STYLE[0]}  # not a decision
    assert "".join(i.text for i in r.layout_guide("guide_unknown").role("guide")) == "请将健康码对准扫描区"
    only_qr = r.layout_guide(G.CLOSER, None, texts.idle_prompt(True, False, False))
    assert "".join(i.text for i in only_qr.role("prompt")) == "请出示健康码"   # the inputs that work


def test_a_hint_never_covers_a_decision(keyset, tmp_path):
    """ScreenLoop.guide: a decision on the panel (or asked for) stays; after it, hints show."""
    from types import SimpleNamespace

    from terminal import config as cfgmod
    from terminal.screen.loop import ScreenLoop
    from waiting import wait_for

    shown = []
    backend = SimpleNamespace(size=(800, 480), show=shown.append, close=lambda: None)
    path = keyset / "screen.toml"
    path.write_text((keyset / "config.toml").read_text() + '\n[screen]\nkind = "png"\nresult_seconds = 0.6\n')
    cfg = cfgmod.load(path)
    devices = SimpleNamespace(ok=lambda name: None, fail=lambda name, why: None)
    loop = ScreenLoop(cfg, backend, alarms=list, devices=devices, prompt=lambda: texts.idle_prompt(True, False, False))
    drawn = []
    for name in ("result", "guide"):
        real = getattr(loop.renderer, name)
        setattr(loop.renderer, name, lambda *a, _real=real, _name=name: drawn.append(_name) or _real(*a))
    result = SimpleNamespace(decision=REVIEW, reason=reasons.UNREADABLE, name=None, method="qr", gate=None)
    loop.start()
    try:
        loop.show_result(result)
        loop.guide("guide_closer")           # before the decision is even drawn: it is not replaced
        assert wait_for(lambda: drawn == ["result"])
        loop.guide("guide_closer")           # while it is up: ignored
        assert wait_for(lambda: loop._until and time_left(loop) <= 0, timeout=3)
        loop.guide("guide_closer")           # after it: shown
        assert wait_for(lambda: drawn == ["result", "guide"])
        assert wait_for(lambda: shown[-1] is not None)
        loop.show_result(result)             # and a decision replaces a hint at once
        assert wait_for(lambda: drawn == ["result", "guide", "result"])
    finally:
        loop.stop()


def time_left(loop) -> float:
    import time
    return loop._result_until - time.monotonic()


def test_the_idle_prompt_names_only_the_inputs_that_work(r800):
    """Issue #12 finding 7."""
    assert {w: texts.idle_prompt(*w) for w in itertools.product((True, False), repeat=3)} == {
        (True, True, True): "请出示健康码或刷身份证/社保卡", (True, True, False): "请出示健康码或刷身份证",
        (True, False, True): "请出示健康码或刷社保卡", (True, False, False): "请出示健康码",
        (False, True, True): "请刷身份证/社保卡", (False, True, False): "请刷身份证",
        (False, False, True): "请刷社保卡", (False, False, False): "设备故障，请联系工作人员"}
    lay = r800.layout_idle("药店", T, None, texts.idle_prompt(False, False, False))
    assert "".join(i.text for i in lay.role("prompt")) == "设备故障，请联系工作人员"


def test_an_allow_at_a_shut_gate_is_never_shown_as_walk_through(r800):
    """Issue #12 finding 1: gate "fault" turns an allow's panel amber, 请联系工作人员开门; the gate
    changes nothing for a deny or a review."""
    shut = r800.layout_result(Panel(ALLOW, "ok", "张*", "qr", gate="fault"))
    assert "".join(i.text for i in shut.role("headline")) == "请联系工作人员开门"
    assert shut.background == render.STYLES[REVIEW][0]
    assert [i.text for i in shut.role("reason")] == ["健康码绿码"]
    opened = r800.layout_result(Panel(ALLOW, "ok", "张*", "qr", gate="opened"))
    assert "".join(i.text for i in opened.role("headline")) == "请通行"
    assert opened.background == render.STYLES[ALLOW][0]
    for decision in (DENY, REVIEW):
        lay = r800.layout_result(Panel(decision, "red_code", None, "qr", gate="fault"))
        assert "".join(i.text for i in lay.role("headline")) == texts.HEADLINES[decision]


def test_empty_name_and_unknown_method(r800):
    assert [i.text for i in r800.layout_result(Panel(ALLOW, "ok", "", "qr")).role("name")] \
        == ["健康码"]
    assert [i.text for i in r800.layout_result(Panel(ALLOW, "ok", "张*", "x")).role("name")] \
        == ["张*"]
    assert r800.layout_result(Panel(DENY, "??", None, None)).role("name") == []


printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
odd = st.one_of(st.none(), printable, st.text(max_size=50))


@settings(max_examples=60)
@given(decision=odd, reason=odd, name=odd, method=odd, alarm=odd, venue=odd,
       size=st.sampled_from(SIZES + [(240, 240), (1920, 1080), (320, 1280)]))
def test_odd_input_never_raises(renderers, decision, reason, name, method, alarm, venue, size):
    r = renderers.get(size) or renderers.setdefault(size, Renderer(size))
    idle = r.layout_idle(venue, T, alarm)
    for lay in (r.layout_result(Panel(decision, reason, name, method, alarm, T)), idle):
        for it in lay.items:
            assert _inside(it.box, *size), it
        assert r.draw(lay).size == size
    # Caller text is shown whole, or visibly cut: a prefix of it ending in an ellipsis.
    for role, given_text in (("venue", venue), ("alarm", alarm)):
        whole = texts.clean(given_text).replace(" ", "")
        shown = "".join(i.text for i in idle.role(role)).replace(" ", "")
        assert shown == whole or (shown.endswith("…") and whole.startswith(shown[:-1])), \
            (role, shown, whole)


def test_samples_for_the_lead(r800):
    out = Path("/tmp/screen-samples")
    out.mkdir(exist_ok=True)
    r800.result(Panel(ALLOW, reasons.OK, "张*", "qr", None, T)).save(out / "allow.png")
    r800.result(Panel(DENY, reasons.EXPIRED, "欧***", "qr", "身份证读卡器故障", T)).save(
        out / "deny.png")
    r800.result(Panel(REVIEW, reasons.RED_CODE, "张*", "id_card", None, T)).save(out / "review.png")
    r800.idle("XX市第一人民医院 门诊楼东门", T, "存储空间不足").save(out / "idle.png")
    for name in ("allow", "deny", "review", "idle"):
        with Image.open(out / f"{name}.png") as sample:
            assert sample.size == (800, 480)


# ---- framebuffer -----------------------------------------------------------------------------

def _solid(colour, size=(4, 3)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("fmt, colour, pixel", [
    ("RGB565", (255, 0, 0), (0xF800).to_bytes(2, sys.byteorder)),
    ("RGB565", (0, 255, 0), (0x07E0).to_bytes(2, sys.byteorder)),
    ("RGB565", (0, 0, 255), (0x001F).to_bytes(2, sys.byteorder)),
    ("RGB565", (0x12, 0x34, 0x56), (((0x12 >> 3) << 11) | ((0x34 >> 2) << 5) | (0x56 >> 3))
     .to_bytes(2, sys.byteorder)),
    ("BGRX", (255, 0, 0), (0x00FF0000).to_bytes(4, sys.byteorder)),
    ("BGRA", (0x12, 0x34, 0x56), (0xFF123456).to_bytes(4, sys.byteorder)),
    ("RGBX", (0x12, 0x34, 0x56), (0x00563412).to_bytes(4, sys.byteorder)),
    ("XRGB", (0x12, 0x34, 0x56), (0x56341200).to_bytes(4, sys.byteorder)),
    ("BGR", (0x12, 0x34, 0x56), (0x123456).to_bytes(3, sys.byteorder)),
    ("RGB", (0x12, 0x34, 0x56), (0x563412).to_bytes(3, sys.byteorder)),
])
def test_pixel_formats(fmt, colour, pixel):
    g = FbGeometry.for_format(fmt, 4, 3)
    rows = pack_pixels(_solid(colour), g)
    assert rows.shape == (3, 4 * len(pixel))
    assert rows.tobytes() == pixel * 12


def test_memory_bytes_on_little_endian():  # the kiosk CPUs (x86, ARM) are little-endian
    red = _solid((255, 0, 0), (1, 1))
    assert pack_pixels(red, FbGeometry.for_format("RGB565", 1, 1)).tobytes() == b"\x00\xf8"
    assert pack_pixels(red, FbGeometry.for_format("BGRX", 1, 1)).tobytes() == b"\x00\x00\xff\x00"


def test_framebuffer_writes_rows_at_the_stride(tmp_path):
    # 3x2 visible, RGB565, 16-byte lines, panned to row 1 column 1 of a larger virtual screen.
    g = FbGeometry(xres=3, yres=2, bits_per_pixel=16, red=Bitfield(11, 5), green=Bitfield(5, 6),
                   blue=Bitfield(0, 5), transp=Bitfield(0, 0), line_length=16, xoffset=1,
                   yoffset=1)
    target = tmp_path / "fb"
    target.write_bytes(b"\xaa" * 64)
    im = Image.new("RGB", (3, 2))
    im.putdata([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (255, 0, 0)])
    fb = FramebufferScreen(str(target), geometry=g)
    assert fb.size == (3, 2)
    fb.show(im)
    fb.close()
    data = target.read_bytes()
    px = lambda v: v.to_bytes(2, sys.byteorder)  # noqa: E731
    row1 = b"\xaa" * 2 + px(0xF800) + px(0x07E0) + px(0x001F) + b"\xaa" * 8
    row2 = b"\xaa" * 2 + px(0xFFFF) + px(0x0000) + px(0xF800) + b"\xaa" * 8
    assert data == b"\xaa" * 16 + row1 + row2 + b"\xaa" * 16


def test_framebuffer_resizes_to_its_own_resolution(tmp_path):
    target = tmp_path / "fb"
    target.write_bytes(b"")
    fb = FramebufferScreen(str(target), geometry=FbGeometry.for_format("BGRX", 8, 4))
    fb.show(_solid((0, 0, 255), (800, 480)))
    fb.close()
    assert target.read_bytes() == (0xFF).to_bytes(4, sys.byteorder) * 32


def _var(xres, yres, bpp, red, green, blue, transp, xoffset=0, yoffset=0) -> bytes:
    words = [0] * 40
    words[0:8] = [xres, yres, xres, yres * 2, xoffset, yoffset, bpp, 0]
    for i, (off, length) in zip((8, 11, 14, 17), (red, green, blue, transp)):
        words[i:i + 3] = [off, length, 0]
    return struct.pack("=40I", *words)


def _fix(ident: bytes, line_length: int, visual: int = 2) -> bytes:
    """linux/fb.h layout by hand: on 64-bit, unsigned long is 8 bytes and line_length sits at 48."""
    word = struct.calcsize("L")
    buf = bytearray(80 if word == 8 else 68)
    buf[0:len(ident)] = ident
    base = 16 + word  # after id[16] and smem_start
    struct.pack_into("=4I", buf, base, 1 << 20, 0, 0, visual)          # smem_len, type, aux, visual
    struct.pack_into("=3H", buf, base + 16, 1, 1, 0)                    # pan/wrap steps
    struct.pack_into("=I", buf, base + 24, line_length)                 # after 2 bytes of padding
    return bytes(buf)


def test_ioctl_structs_parse():
    assert VAR_SIZE == 160 and FIX_SIZE == (80 if struct.calcsize("L") == 8 else 68)
    g = FbGeometry.from_ioctl(_var(1024, 600, 32, (16, 8), (8, 8), (0, 8), (24, 8), yoffset=600),
                              _fix(b"simplefb", 4096))
    assert (g.xres, g.yres, g.bits_per_pixel, g.line_length, g.yoffset) == (1024, 600, 32, 4096, 600)
    assert (g.red, g.green, g.blue, g.transp) == (Bitfield(16, 8), Bitfield(8, 8), Bitfield(0, 8),
                                                  Bitfield(24, 8))
    assert g.id == "simplefb" and g.visual == 2
    g.check()
    assert FbGeometry.from_ioctl(_var(800, 480, 16, (11, 5), (5, 6), (0, 5), (0, 0)),
                                 _fix(b"fb", 1600)) == \
        dataclasses.replace(FbGeometry.for_format("RGB565", 800, 480), id="fb")


@pytest.mark.parametrize("var, fix, message", [
    (_var(800, 480, 8, (0, 8), (0, 8), (0, 8), (0, 0)), _fix(b"x", 800), "bits per pixel"),
    (_var(800, 480, 32, (16, 8), (8, 8), (0, 8), (0, 0)), _fix(b"x", 3200, visual=3), "true colour"),
    (_var(800, 480, 32, (16, 8), (8, 8), (0, 8), (0, 0)), _fix(b"x", 1000), "line length"),
    (_var(800, 480, 16, (12, 5), (5, 6), (0, 5), (0, 0)), _fix(b"x", 1600), "outside"),
])
def test_unsupported_framebuffers_are_refused(var, fix, message):
    with pytest.raises(FramebufferError, match=message):
        FbGeometry.from_ioctl(var, fix).check()


def test_short_ioctl_data():
    with pytest.raises(FramebufferError, match="short"):
        FbGeometry.from_ioctl(b"\0" * 10, b"\0" * FIX_SIZE)


def test_not_a_framebuffer_or_missing(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with pytest.raises(FramebufferError, match="not a framebuffer"):
        FramebufferScreen(str(plain))
    with pytest.raises(FramebufferError, match="cannot open"):
        FramebufferScreen(str(tmp_path / "fb9"))


def test_framebuffer_survives_a_vanished_device(tmp_path, caplog):
    target = tmp_path / "fb"
    target.write_bytes(b"")
    fb = FramebufferScreen(str(target), geometry=FbGeometry.for_format("RGB", 2, 2))
    fb.close()          # as if the fd went bad
    target.unlink()     # ...and the device disappeared
    assert fb.error is None
    fb.show(_solid((1, 2, 3), (2, 2)))
    assert "retrying" in caplog.text and "No such file" in fb.error   # the screen loop's screen_down
    target.write_bytes(b"")  # back
    fb.show(_solid((1, 2, 3), (2, 2)))
    assert fb.error is None
    fb.close()
    assert target.read_bytes() == (0x030201).to_bytes(3, sys.byteorder) * 4


# ---- PNG / null backends and the factory ------------------------------------------------------

def _numbered(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != "latest.png")


def test_png_screen_rotates_and_keeps_latest(tmp_path):
    scr = PngScreen(tmp_path / "shots", keep=3)
    colours = [(i * 40, 0, 0) for i in range(5)]
    for c in colours:
        scr.show(_solid(c))
    files = _numbered(tmp_path / "shots")
    assert [f[:6] for f in files] == ["000003", "000004", "000005"]
    assert Image.open(tmp_path / "shots" / files[-1]).getpixel((0, 0)) == colours[-1]
    assert Image.open(tmp_path / "shots" / "latest.png").getpixel((0, 0)) == colours[-1]
    scr.close()
    # A restart continues the numbering and still honours the limit.
    again = PngScreen(tmp_path / "shots", keep=2)
    assert [f[:6] for f in _numbered(tmp_path / "shots")] == ["000004", "000005"]
    again.show(_solid((9, 9, 9)))
    assert [f[:6] for f in _numbered(tmp_path / "shots")] == ["000005", "000006"]


def test_png_screen_survives_a_write_failure(tmp_path, caplog):
    d = tmp_path / "shots"
    scr = PngScreen(d, keep=5)
    d.rmdir()
    d.write_bytes(b"")  # the directory is gone and a file is in its way: every write fails
    scr.show(_solid((1, 1, 1)))
    assert "cannot write" in caplog.text and "cannot write" in scr.error
    d.unlink()
    d.mkdir()
    scr.show(_solid((2, 2, 2)))
    assert scr.error is None
    assert Image.open(d / "latest.png").getpixel((0, 0)) == (2, 2, 2)
    assert [f[:6] for f in _numbered(d)] == ["000001"]  # the failed image took no number


def test_open_screen_factory(tmp_path):
    png = open_screen("png", path=str(tmp_path / "p"), width=1024, height=600)
    assert isinstance(png, PngScreen) and png.size == (1024, 600)
    none = open_screen("none")
    assert isinstance(none, NullScreen) and none.size == (800, 480)
    none.show(_solid((0, 0, 0)))
    assert none.shown == 1
    with pytest.raises(ValueError, match="needs a path"):
        open_screen("png")
    with pytest.raises(ValueError, match="unknown screen kind"):
        open_screen("hologram")
    with pytest.raises(FramebufferError, match="cannot open"):
        open_screen("framebuffer", path=str(tmp_path / "nofb"))


def test_rendered_image_roundtrip_through_framebuffer(r800, tmp_path):
    target = tmp_path / "fb"
    target.write_bytes(b"")
    fb = FramebufferScreen(str(target), geometry=FbGeometry.for_format("BGRX", 800, 480))
    im = r800.result(Panel(DENY, reasons.EXPIRED, "张*", "qr", None, T))
    fb.show(im)
    fb.close()
    raw = np.frombuffer(target.read_bytes(), dtype="=u4").reshape(480, 800)
    back = np.stack([(raw >> 16) & 0xFF, (raw >> 8) & 0xFF, raw & 0xFF], axis=-1).astype(np.uint8)
    assert np.array_equal(back, np.asarray(im))


def test_png_path_is_relative_to_the_config_file_not_the_cwd(keyset, tmp_path, monkeypatch):
    """README: relative paths are relative to the config file — [screen] path too (issue #12, 6)."""
    from terminal import config as cfgmod
    from terminal.screen import open_screen
    conf = keyset / "config.toml"
    text = conf.read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf.write_text(text + "\n[screen]\nkind = 'png'\npath = 'shots'\n")
    cfg = cfgmod.load(conf)
    assert cfg.screen.path == str(keyset / "shots")
    open_screen(cfg.screen.kind, cfg.screen.path).show(_solid((1, 2, 3)))
    assert (keyset / "shots" / "latest.png").is_file() and not (elsewhere / "shots").exists()
    # absolute paths stay as written; no path: the PNG default under state_dir, as before
    conf.write_text(text + f"\n[screen]\nkind = 'framebuffer'\npath = '{tmp_path / 'fb'}'\n")
    assert cfgmod.load(conf).screen.path == str(tmp_path / "fb")
    conf.write_text(text + "\n[screen]\nkind = 'png'\n")
    assert cfgmod.load(conf).screen.path == str((keyset / "state").resolve() / "screen")


# ---- a screen for everyone: shape as well as colour, the instruction first, large print --------

BOTH = [(800, 480), (1280, 800)]


def _sign_mask(renderer: Renderer, decision: str, size: int = 200) -> np.ndarray:
    """The mark's sign alone, as a boolean picture at a common size: its shape, not its colours."""
    lay = renderer.layout_result(Panel(decision, reasons.OK, "张*", "qr", None, T))
    (mark,) = lay.marks
    im = renderer.draw(lay).crop(mark.box).resize((size, size), Image.NEAREST)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    in_disc = x ** 2 + y ** 2 < (0.45 * size) ** 2
    return np.all(np.asarray(im) == mark.sign, axis=2) & in_disc


@pytest.mark.parametrize("size", SIZES)
def test_each_outcome_has_its_own_mark(renderers, size):
    r = renderers[size]
    w, h = size
    for decision in DECISIONS:
        lay = r.layout_result(Panel(decision, reasons.OK, "张*", "qr", None, T))
        (mark,) = lay.marks
        bg, fg = render.STYLES[decision]
        assert (mark.decision, mark.disc, mark.sign) == (decision, fg, bg)
        side = mark.box[2] - mark.box[0]
        assert side == mark.box[3] - mark.box[1] >= min(w, h) * 0.25   # large: read from metres away
        _check_layout(lay, r)
    masks = {d: _sign_mask(r, d) for d in DECISIONS}
    for d, m in masks.items():
        assert 0.03 < m.mean() < 0.3, d     # a sign is drawn inside the disc, not a blot
    for a, b in itertools.combinations(DECISIONS, 2):
        assert (masks[a] ^ masks[b]).mean() > 0.05, (a, b)   # the shapes differ, not just colours


def test_the_mark_needs_no_font(r800, mocker):
    """Drawn from lines and discs: a font that draws nothing leaves the mark as it was."""
    before = {d: _sign_mask(r800, d) for d in DECISIONS}
    mocker.patch.object(ImageDraw.ImageDraw, "text")
    for d in DECISIONS:
        assert np.array_equal(_sign_mask(r800, d), before[d]), d


def test_an_unknown_decision_and_a_shut_gate_get_the_review_mark(r800):
    (mark,) = r800.layout_result(Panel("maybe", "??")).marks
    assert mark.decision == REVIEW
    (mark,) = r800.layout_result(Panel(ALLOW, reasons.OK, gate="fault")).marks   # 请联系工作人员开门
    assert (mark.decision, mark.disc) == (REVIEW, render.STYLES[REVIEW][1])


def _text_height(item) -> int:
    return item.box[3] - item.box[1]


@pytest.mark.parametrize("size", BOTH + [(600, 1024)])
@pytest.mark.parametrize("large", [False, True])
def test_the_instruction_is_the_largest_text_on_the_idle_screen(size, large):
    r = Renderer(size, large_print=large)
    for venue, alarm in [("XX市第一人民医院 门诊楼东门", None), ("药店", "身份证读卡器故障")]:
        lay = r.layout_idle(venue, T, alarm)
        _check_layout(lay, r)
        prompt = lay.role("prompt")
        assert "".join(i.text for i in prompt) == texts.IDLE_PROMPT
        others = [i for i in lay.items if i.role != "prompt"]
        assert min(map(_text_height, prompt)) > max(map(_text_height, others))
        assert min(i.size for i in prompt) > max(i.size for i in others)


@pytest.mark.parametrize("size", BOTH)
def test_large_print_enlarges_and_still_fits(renderers, size):
    normal, large = renderers[size], Renderer(size, large_print=True)
    for decision, reason in itertools.product(DECISIONS, reasons.ALL):
        for alarm in (None, "身份证读卡器故障"):
            panel = Panel(decision, reason, "欧***", "id_card", alarm, T)
            big, small = large.layout_result(panel), normal.layout_result(panel)
            _check_layout(big, large)
            assert min(i.size for i in big.role("reason")) > max(i.size for i in small.role("reason"))
            assert big.role("time") == []
            assert "".join(i.text for i in big.role("headline")) == texts.HEADLINES[decision]
    big, small = large.layout_idle("某医院", T), normal.layout_idle("某医院", T)
    assert min(i.size for i in big.role("prompt")) > max(i.size for i in small.role("prompt"))
    assert big.role("date") == [] and big.role("clock")


def test_large_print_setting(keyset):
    text = (keyset / "config.toml").read_text()
    (keyset / "lp.toml").write_text(text + "\n[screen]\nlarge_print = true\n")
    assert cfgmod.load(keyset / "lp.toml").screen.large_print is True
    assert cfgmod.load(keyset / "config.toml").screen.large_print is False
    (keyset / "lp.toml").write_text(text + '\n[screen]\nlarge_print = "yes"\n')
    with pytest.raises(cfgmod.ConfigError, match="screen.large_print must be true or false"):
        cfgmod.load(keyset / "lp.toml")
