"""Guidance at the camera: what a frame with an unread code shows (drivers/qrview.py), the hint
it gives (terminal/core/guidance.py), and the 10 s unreadable timeout, on made-up frame times."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from drivers.qrdecode import decode
from drivers.qrview import View, measure
from drivers.qrview import look as look_at
from sim.camera import qr_modules
from terminal.core import guidance as G
from terminal.core.guidance import CodeWatch, Hint, Unreadable, advice
from waiting import wait_for

TEXT = "SDHC1:" + "7" * 200


def code_frame(width: float, *, white: float = 1.0, blur: float = 0.0, glare: float = 0.0,
               scramble: bool = False) -> np.ndarray:
    """A 640×480 grey frame: a code ``width`` px wide (with its quiet zone) on a dim counter;
    ``white``: the screen's white level; ``glare``: a reflection's peak over the code's upper
    left, in units of full scale; ``scramble``: a third of the data modules flipped (found by
    its finder patterns, never decoded)."""
    m = qr_modules(TEXT).copy()
    n = m.shape[0]
    if scramble:
        data = np.ones_like(m)
        data[:9, :9] = data[:9, -9:] = data[-9:, :9] = False
        data[6, :] = data[:, 6] = False
        m ^= (np.random.default_rng(1).random(m.shape) < 0.35) & data
    w = round(width)
    frame = np.full((480, 640), 90.0, np.float32)
    code = cv2.resize(np.where(m, 20.0, 255.0 * white).astype(np.float32), (w, w), interpolation=cv2.INTER_NEAREST)
    q = round(4 * width / n)
    x0, y0 = 320 - w // 2, 240 - w // 2
    frame[y0 - q:y0 + w + q, x0 - q:x0 + w + q] = 255.0 * white
    frame[y0:y0 + w, x0:x0 + w] = code
    if glare:
        yy, xx = np.ogrid[0:480, 0:640]
        frame += glare * 255 * np.exp(-(((xx - x0 - 0.3 * w) / (0.3 * w)) ** 2 + ((yy - y0 - 0.3 * w) / (0.3 * w)) ** 2))
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    return np.clip(frame, 0, 255).astype(np.uint8)


def look(frame: np.ndarray) -> View | None:
    """As the camera thread looks: with where the decoder chain located a code."""
    return look_at(frame, decode(frame).found)


def view(**changes) -> View:
    fine = dict(width_px=200.0, white=230.0, washed=0.0, sharpness=2.0, found_by="zxing")
    return View(**{**fine, **changes})


# --- the measurements, on synthetic frames: each condition on both sides of its threshold ----------

def test_too_small_is_the_code_width_against_the_frame():
    small, enough = look(code_frame(130)), look(code_frame(160))
    assert small.width_px == pytest.approx(130, abs=3) and enough.width_px == pytest.approx(160, abs=3)
    assert advice(small, 480) == ("small", G.CLOSER)      # 130 < 0.30 × 480 = 144
    assert advice(enough, 480) == ("other", G.AIM)
    assert advice(small, 400) == ("other", G.AIM)         # the same code on a smaller frame is big enough


def test_too_dark_is_the_light_modules_grey_level():
    dim, bright = look(code_frame(200, white=0.55)), look(code_frame(200, white=0.8))
    assert dim.white < G.DARK <= bright.white
    assert advice(dim, 480) == ("dark", G.BRIGHTER) and advice(bright, 480) == ("other", G.AIM)


def test_glare_is_cells_burnt_out_flat_and_a_bright_screen_is_not():
    glare, faint = look(code_frame(200, glare=1.2)), look(code_frame(200, glare=0.6))
    assert glare.washed >= G.WASHED > faint.washed
    assert advice(glare, 480) == ("glare", G.AIM) and advice(faint, 480) == ("other", G.AIM)
    assert look(code_frame(200, white=1.0)).washed == 0.0   # white modules at full scale: not glare


def test_blur_is_edges_per_unit_of_contrast_at_one_size():
    blurred, sharp = look(code_frame(200, blur=2.5)), look(code_frame(200, blur=0.8))
    assert blurred.sharpness < G.BLURRED <= sharp.sharpness
    assert advice(blurred, 480) == ("blur", G.AIM) and advice(sharp, 480) == ("other", G.AIM)
    # a small code is not judged sharper or blurrier for being small
    assert look(code_frame(150)).sharpness == pytest.approx(look(code_frame(240)).sharpness, rel=0.35)


def test_a_code_that_never_decodes_is_still_found():
    frame = code_frame(200, scramble=True)
    d = decode(frame)
    assert d.texts == [] and d.found                       # the decoders located it
    v = look_at(frame, d.found)
    assert v.found_by == "zxing" and v.width_px == pytest.approx(200, abs=4)
    v = look_at(frame)                                     # OpenCV's finder patterns find it too
    assert v.found_by == "opencv" and v.width_px == pytest.approx(200, abs=4)


def test_no_code_and_junk_give_no_view():
    assert look(np.full((480, 640), 90, np.uint8)) is None and look_at(np.full((480, 640), 90, np.uint8)) is None
    for junk in (None, np.zeros((0, 0)), np.zeros((10, 10), np.uint8), "frame"):
        assert look_at(junk) is None and look_at(junk, [np.zeros((4, 2))]) is None
    assert measure(np.zeros((480, 640), np.uint8), np.array([[700, 500], [710, 500], [710, 510], [700, 510]],
                                                            float)) is None   # off the frame


def test_advice_thresholds_both_sides():
    assert advice(view(width_px=G.SMALL * 480 - 0.1), 480)[1] == G.CLOSER
    assert advice(view(width_px=G.SMALL * 480), 480)[1] == G.AIM
    assert advice(view(white=G.DARK - 0.1), 480)[1] == G.BRIGHTER
    assert advice(view(white=G.DARK), 480)[1] == G.AIM
    assert advice(view(washed=G.WASHED), 480)[0] == "glare"
    assert advice(view(washed=G.WASHED - 0.01), 480)[0] == "other"
    assert advice(view(sharpness=G.BLURRED - 0.01), 480)[0] == "blur"
    assert advice(view(sharpness=G.BLURRED), 480)[0] == "other"
    # distance first, then brightness
    assert advice(view(width_px=100, white=50, washed=1, sharpness=0), 480) == ("small", G.CLOSER)
    assert advice(view(white=50, washed=1, sharpness=0), 480) == ("dark", G.BRIGHTER)


def test_a_code_located_only_in_part_has_no_size_to_judge():
    # zxing reports a blurred, tilted code's finder pattern as a small Micro QR symbol: a code is
    # in view, its size unknown. On the hard level's frames of this presentation it happens.
    from sim.camera import sample_text
    from sim.crowd import ScenarioCamera
    cam = ScenarioCamera(level="hard", fps=1e6, seed=700278)
    cam.open()
    cam.show(sample_text(np.random.default_rng([7, 278])), 12)
    partial = [(f, d) for f, d in ((f, decode(f)) for f in (cam.read() for _ in range(12)))
               if d.partial and not d.found and not d.texts]
    assert partial
    frame, d = partial[0]
    assert all(q.shape == (4, 2) for q in d.partial)
    v = look_at(frame, d.found, d.partial)
    assert v is not None and v.found_by in ("opencv", "partial")
    # with nothing but the part (OpenCV finds no code in noise): its light, not its size
    noise = np.random.default_rng(5).integers(100, 240, (480, 640)).astype(np.uint8)
    v = look_at(noise, (), d.partial)
    assert v.found_by == "partial" and v.width_px is None and v.white > G.DARK
    assert advice(v, 480) == ("other", G.AIM)
    assert look_at(noise, (), ()) is None


def test_unknown_width_is_never_too_small():
    assert advice(view(width_px=None), 480) == ("other", G.AIM)
    assert advice(view(width_px=None, white=90), 480) == ("dark", G.BRIGHTER)


# --- the watch: hints and the unreadable timeout, on made-up times ---------------------------------

def run(watch: CodeWatch, frames) -> list[tuple[float, object]]:
    """Feed (ts, reading, view) frames; the steps that came out, with their times."""
    out = []
    for ts, reading, v in frames:
        step = watch.frame(ts, reading=reading, found=v is not None, view=v, short_side=480)
        if step is not None:
            out.append((ts, step))
    return out


def steady(start: float, end: float, every: float = 0.1, v: View | None = None):
    """A code in view, found but not read, from ``start`` to ``end`` inclusive."""
    n = round((end - start) / every)
    return [(start + i * every, False, v or view()) for i in range(n + 1)]


def test_unreadable_at_ten_seconds_exactly_not_before():
    w = CodeWatch(gap=1.5)
    steps = run(w, [(100.0, False, view()), (109.999, False, view())])
    assert not any(isinstance(s, Unreadable) for _, s in steps)
    assert run(w, [(110.0, False, view())]) == [(110.0, Unreadable(100.0))]
    # once: quiet while the same code is in view
    assert run(w, steady(110.1, 125.0)) == []


def test_the_timeout_counts_through_frames_without_a_code_shorter_than_gap():
    w = CodeWatch(gap=1.5)
    found = [100.0, 101.4, 102.8, 104.2, 105.6, 107.0, 108.4, 109.8]   # 1.4 s apart, nothing between
    frames = sorted([(t, False, view()) for t in found] + [(t + 0.7, False, None) for t in found[:-1]])
    steps = run(w, frames)                 # hints from the newest view, nothing given up
    assert len(steps) >= 10 and all(s == Hint("other", G.AIM) for _, s in steps) and w.since == 100.0
    assert run(w, [(110.0, False, None)]) == [(110.0, Unreadable(100.0))]


def test_a_code_gone_longer_than_gap_starts_afresh():
    w = CodeWatch(gap=1.5)
    run(w, steady(100.0, 105.0))
    assert run(w, [(106.4, False, None), (106.5, False, None), (106.6, False, None)]) == []  # gone 1.6 s
    assert w.since is None
    steps = run(w, steady(107.0, 116.9))
    assert steps and not any(isinstance(s, Unreadable) for _, s in steps)
    assert run(w, [(117.0, False, view())]) == [(117.0, Unreadable(107.0))]


def test_one_late_frame_without_a_code_is_not_proof_the_person_left():
    """A camera loop slowed down by a busy CPU: frames 2 s apart, one of them without the code."""
    w = CodeWatch(gap=1.5)
    frames = [(100.0, False, view()), (102.0, False, None), (104.0, False, view()), (106.0, False, None),
              (107.0, False, None), (108.0, False, view())]
    assert not any(isinstance(s, Unreadable) for _, s in run(w, frames)) and w.since == 100.0
    assert run(w, [(110.0, False, None)]) == [(110.0, Unreadable(100.0))]
    # three frames in a row without a code, gap seconds after the last: gone
    w = CodeWatch(gap=1.5)
    run(w, [(100.0, False, view()), (101.0, False, None), (101.2, False, None)])
    assert w.since == 100.0                                 # 1.2 s: not yet gap seconds
    run(w, [(101.6, False, None)])
    assert w.since is None


def test_gone_needs_both_gap_seconds_and_three_frames():
    w = CodeWatch(gap=1.5)
    run(w, [(100.0, False, view()), (100.4, False, None), (100.8, False, None), (101.2, False, None)])
    assert w.since == 100.0                                 # three frames, but 1.2 s: still there
    w = CodeWatch(gap=1.5)                                  # binary fractions: exact times
    run(w, [(100.0, False, view()), (100.5, False, None), (101.0, False, None), (101.5, False, None)])
    assert w.since == 100.0                                 # exactly gap seconds: not more than gap
    run(w, [(101.625, False, None)])
    assert w.since is None


def test_a_hint_at_hint_after_exactly():
    w = CodeWatch(gap=1.5, hint_after=0.75)
    assert run(w, [(100.0, False, view()), (100.625, False, view())]) == []
    assert run(w, [(100.75, False, view())]) == [(100.75, Hint("other", G.AIM))]


def test_a_code_being_read_is_answered_by_its_decision():
    w = CodeWatch(gap=1.5)
    run(w, steady(100.0, 105.0))
    frames = [(105.0 + 0.5 * i, True, None) for i in range(20)]   # read from 105 s on, for 10 s
    assert run(w, frames) == []
    assert w.since is None
    # after it: a new, unread code starts its own 10 s
    assert run(w, [(115.5, False, view())]) == []
    assert run(w, [(125.5, False, view())]) == [(125.5, Unreadable(115.5))]


def test_hints_after_0_7_s_and_every_0_7_s_while_unread():
    w = CodeWatch(gap=1.5)
    small = view(width_px=100)
    steps = run(w, steady(100.0, 102.5, every=0.125, v=small))   # binary fractions: exact times
    assert [ts for ts, _ in steps] == [100.75, 101.5, 102.25]
    assert all(s == Hint("small", G.CLOSER) for _, s in steps)
    # a hint comes from the newest view, at most VIEW_FRESH old (binary fractions: exact times)
    w = CodeWatch(gap=1.5)
    assert run(w, [(100.0, False, view(white=90)), (100.5, False, small), (100.75, False, None)]) == [
        (100.75, Hint("small", G.CLOSER))]
    w = CodeWatch(gap=1.5)
    assert run(w, [(100.0, False, small), (100.75, False, None)]) == [(100.75, Hint("small", G.CLOSER))]
    w = CodeWatch(gap=1.5, hint_after=1.25)                # exactly VIEW_FRESH old: still used
    assert run(w, [(100.0, False, small), (100.25, False, small), (101.25, False, None)]) == [
        (101.25, Hint("small", G.CLOSER))]
    w = CodeWatch(gap=1.5, hint_after=1.25)                # older: no hint until a new view
    assert run(w, [(100.0, False, small), (100.125, False, small), (101.25, False, None)]) == []
    assert run(w, [(101.375, False, view(white=90))]) == [(101.375, Hint("dark", G.BRIGHTER))]


def test_presenting_began_when_something_came_into_view_at_most_backdate_before():
    def began(present_since, ts=100.0):
        w = CodeWatch(gap=1.5)
        w.frame(ts, reading=False, found=True, view=None, short_side=480, present_since=present_since)
        return w.since
    assert began(None) == 100.0
    assert began(99.5) == 99.5
    assert began(100.0 - G.BACKDATE) == 100.0 - G.BACKDATE
    assert began(100.0 - G.BACKDATE - 0.5) == 100.0 - G.BACKDATE     # a queue keeps the view busy
    assert began(100.5) == 100.0                                     # never after the code was found
    # nothing found: presence alone starts nothing
    w = CodeWatch(gap=1.5)
    assert w.frame(100.0, reading=False, found=False, view=None, short_side=480, present_since=99.0) is None
    assert w.since is None
    # the hint and the review count from then
    w = CodeWatch(gap=1.5)
    small = view(width_px=100)
    assert w.frame(100.0, reading=False, found=True, view=small, short_side=480, present_since=99.5) is None
    assert w.frame(100.125, reading=False, found=True, view=small, short_side=480, present_since=99.5) is None
    assert w.frame(100.25, reading=False, found=True, view=small, short_side=480,
                   present_since=99.5) == Hint("small", G.CLOSER)    # 0.75 s after 99.5
    assert run(w, steady(100.5, 109.375, every=0.125)) and w.since == 99.5
    assert run(w, [(109.5, False, small)]) == [(109.5, Unreadable(99.5))]


def test_nothing_in_view_nothing_happens():
    w = CodeWatch(gap=1.5)
    assert run(w, [(t / 10, False, None) for t in range(0, 300)]) == []
    assert w.since is None


# --- the daemon: hints on the panel, then a review committed like any decision --------------------

class ScriptedGrabber:
    """A grabber handing the camera loop one frame after another at once, stamped on a made-up
    clock ``step`` seconds apart (ending well before now), so ten seconds of presenting take
    about one second of the test."""

    def __init__(self, images: np.ndarray | list[np.ndarray], frames: int, step: float):
        from drivers.camera import Frame
        images = images if isinstance(images, list) else [images] * frames
        self._frames = [Frame(images[i], i + 1, time.monotonic() - 30 + i * step) for i in range(frames)]
        self.error = None
        self.taken = 0

    def start(self):
        return self

    def stop(self):
        pass

    def latest(self, after: int = 0):
        return self._frames[0]

    def wait_newer(self, after: int = 0, timeout: float = 1.0):
        if after >= len(self._frames):
            time.sleep(min(timeout, 0.05))
            return None
        self.taken = after + 1
        return self._frames[after]


def test_the_daemon_guides_then_commits_an_unreadable_review(keyset, tmp_path):
    from terminal import config as cfgmod
    from terminal.daemon import Daemon
    from test_daemon import events

    config = keyset / "terminal.toml"
    config.write_text((keyset / "config.toml").read_text()
                      + f'\n[screen]\nkind = "png"\npath = "{tmp_path / "screens"}"\nresult_seconds = 0.5\n')
    grabber = ScriptedGrabber(code_frame(120, scramble=True), frames=48, step=0.25)   # 11.75 s of a code
    results, hints = [], []
    daemon = Daemon(cfgmod.load(config), camera=grabber, on_result=lambda p, r: results.append((p, r)),
                    on_guidance=hints.append)
    daemon.start()
    try:
        # generous: 48 frames through the decoders take ~1 s, far longer on a machine shared by many
        assert wait_for(lambda: grabber.taken == 48, timeout=90)
        assert wait_for(lambda: results, timeout=30)
        guided = daemon.metrics.registry.get_sample_value("gate_guidance_total", {"cause": "small"})
    finally:
        daemon.stop()
    [(p, r)] = results
    first = grabber._frames[0].ts
    assert p.unreadable and p.started_ns == int(first * 1e9) and p.text is None
    assert (r.method, r.decision, r.reason, r.name, r.id) == ("qr", "review", "unreadable", None, None)
    assert r.latency_ms >= 10_000                      # from presenting, not from the last frame
    assert hints and set(hints) == {G.CLOSER}          # a small code: move closer, every 0.75 s
    assert 12 <= len(hints) <= 14
    [e] = events(keyset)
    assert (e["method"], e["decision"], e["reason"], e["subject"]) == ("qr", "review", "unreadable", None)
    assert daemon.decided == 1 and guided == len(hints)


def test_the_review_counts_from_when_the_phone_came_into_view(keyset, tmp_path):
    """The phone is in view (moving: too blurred to locate) three frames before its code is
    located: presenting began with the first of them."""
    from terminal import config as cfgmod
    from terminal.daemon import Daemon

    config = keyset / "terminal.toml"
    config.write_text((keyset / "config.toml").read_text()
                      + f'\n[screen]\nkind = "png"\npath = "{tmp_path / "screens"}"\nresult_seconds = 0.5\n')
    counter, moving, held = (np.full((480, 640), 90, np.uint8), code_frame(120, scramble=True, blur=3),
                             code_frame(120, scramble=True))
    assert not decode(moving).found and not decode(moving).partial and decode(held).found
    images = [counter] * 8 + [moving] * 3 + [held] * 41
    grabber = ScriptedGrabber(images, frames=len(images), step=0.25)
    results = []
    daemon = Daemon(cfgmod.load(config), camera=grabber, on_result=lambda p, r: results.append((p, r)))
    daemon.start()
    try:
        assert wait_for(lambda: grabber.taken == len(images), timeout=90)
        assert wait_for(lambda: results, timeout=30)
    finally:
        daemon.stop()
    [(p, r)] = results
    assert p.unreadable and (r.decision, r.reason) == ("review", "unreadable")
    assert p.started_ns == int(grabber._frames[8].ts * 1e9)     # not frame 11, where it was located


# --- the simulated visitor does what the screen says -------------------------------------------------

def test_heeded_hints_make_the_camera_condition_milder():
    from sim.camera import LEVELS
    from sim.crowd import heeded
    hard = LEVELS["hard"]
    closer = heeded(hard, G.CLOSER, 150.0)
    assert closer.code_px == (pytest.approx(199.5), pytest.approx(210.0))
    assert heeded(hard, G.CLOSER, 250.0).code_px[1] == 300.0              # nobody holds it nearer
    brighter = heeded(hard, G.BRIGHTER, 150.0)
    assert brighter.brightness == (0.95, 1.0) and brighter.code_px == (150.0, 150.0)
    aimed = heeded(hard, G.AIM, 150.0)
    assert aimed.glare == (0.0, 0.0) and aimed.tilt_deg <= 8 and aimed.shake_px <= 0.5
    assert aimed.code_px == (150.0, 150.0) and aimed.noise == hard.noise   # the camera is the same


def test_the_person_at_the_camera_reacts_after_a_moment():
    from sim.crowd import ScenarioCamera
    cam = ScenarioCamera(level="hard", fps=1000, seed=3)
    cam.open()
    cam.react(G.CLOSER)                      # nobody there: nothing to do
    cam.show("SDHC1:ABC", 20)
    before = cam._current[0].base.code_px
    cam.react(G.CLOSER, after=0.2)
    cam.read()
    assert cam._current[0].base.code_px == before     # not yet: people take a moment
    assert wait_for(lambda: cam.read() is not None and cam._current[0].base.code_px > before * 1.3, timeout=5)
    assert cam._current[1] >= 2 and cam._current[0].text == "SDHC1:ABC"   # the same phone, moved
    cam.clear()
    assert cam._current is None and cam._reactions == []

