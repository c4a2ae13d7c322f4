"""The QR decoder chain on rendered camera frames, and on input that is not a frame at all."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from drivers import qrdecode
from sim.camera import LEVELS, degraded_frame, qr_modules, sample_text

TEXT = sample_text(np.random.default_rng(42))
CLEAN = LEVELS["clean"]


def code_image(text: str, module: int = 4, quiet: int = 4) -> np.ndarray:
    """A flat black-on-white code, grey 8-bit."""
    m = qr_modules(text)
    img = np.where(m, 0, 255).astype(np.uint8)
    img = np.pad(img, quiet, constant_values=255)
    return np.repeat(np.repeat(img, module, 0), module, 1)


def test_health_code_text_is_alphanumeric_version_8() -> None:
    # The shape the task is about: ~210 Base45 characters fit QR version 8 at level M.
    assert len(TEXT) == 209 and TEXT.startswith("SDHC1:")
    assert qr_modules(TEXT).shape == (49, 49)


@pytest.mark.parametrize("seed", range(4))
def test_clean_frame_decodes(seed: int) -> None:
    result = qrdecode.decode(degraded_frame(TEXT, CLEAN, seed))
    assert result.texts == [TEXT]
    assert result.step == "zxing"       # a clean frame costs only the cheap first pass
    assert result.ms > 0


# One degradation at a time, strong but within what a door camera sees.
DEGRADATIONS = {
    "defocus": dict(defocus=(1.0, 1.0)),
    "small": dict(code_px=(140, 140)),
    "tilt": dict(tilt_deg=30, roll_deg=60),
    "shake": dict(shake_px=3.0),
    "glare": dict(glare=(0.4, 0.4)),
    "dim screen": dict(brightness=(0.4, 0.4)),
    "moire": dict(moire=(0.35, 0.35)),
    "noise": dict(noise=10.0),
    "jpeg": dict(jpeg_quality=50),
    "yellow code": dict(colors=(("yellow", 1.0),)),
    "red code": dict(colors=(("red", 1.0),)),
}


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_degraded_frames_decode(name: str) -> None:
    cond = replace(CLEAN, **DEGRADATIONS[name])
    decoded = sum(qrdecode.decode(degraded_frame(TEXT, cond, [7, i])).texts == [TEXT] for i in range(3))
    assert decoded >= 2, f"{name}: only {decoded}/3 frames decoded"


def test_sharpen_step_reads_small_blurred_codes_the_plain_pass_misses() -> None:
    # The reason the second step exists: a small, soft code. Among a handful of such frames
    # the chain must read strictly more than the plain zxing pass.
    cond = replace(LEVELS["hard"], glare=(0.0, 0.0), moire=(0.0, 0.0))
    frames = [degraded_frame(TEXT, cond, [3, i]) for i in range(12)]
    plain = sum(TEXT in qrdecode.decode(f, steps=("zxing",)).texts for f in frames)
    chain = sum(TEXT in qrdecode.decode(f).texts for f in frames)
    assert chain > plain


def test_empty_frame_gives_no_texts() -> None:
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    result = qrdecode.decode(frame)
    assert result.texts == [] and result.step is None


def test_same_code_twice_is_reported_once_and_two_codes_both() -> None:
    other = sample_text(np.random.default_rng(43))
    a, b = code_image(TEXT), code_image(other)
    canvas = np.full((a.shape[0] + 40, 2 * a.shape[1] + 60), 255, np.uint8)
    canvas[20:20 + a.shape[0], 20:20 + a.shape[1]] = a
    same = canvas.copy()
    same[20:20 + a.shape[0], 40 + a.shape[1]:40 + 2 * a.shape[1]] = a
    assert qrdecode.decode(same).texts == [TEXT]
    canvas[20:20 + b.shape[0], 40 + a.shape[1]:40 + 2 * a.shape[1]] = b
    assert sorted(qrdecode.decode(canvas).texts) == sorted([TEXT, other])


@pytest.mark.parametrize("convert", [
    lambda g: g,                                               # grey
    lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR),             # BGR
    lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGRA),            # BGRA
    lambda g: g[:, :, None],                                   # (h, w, 1)
    lambda g: g.astype(np.float32) / 255.0,                    # float 0..1
    lambda g: g.astype(np.float64),                            # float 0..255
    lambda g: g.astype(np.uint16) * 257,                       # 16-bit
    lambda g: g.astype(np.int32),
    lambda g: g > 128,                                         # bool
    lambda g: np.asfortranarray(g),                            # not C-contiguous
    lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)[:, ::-1][:, ::-1],   # strided view
], ids=["grey", "bgr", "bgra", "hw1", "float01", "float255", "uint16", "int32", "bool",
        "fortran", "strided"])
def test_any_pixel_layout_decodes(convert) -> None:
    assert qrdecode.decode(convert(code_image(TEXT))).texts == [TEXT]


@pytest.mark.parametrize("junk", [
    None, "frame", b"\x00" * 100, [[0, 255], [255, 0]], 3.5,
    np.zeros(0, np.uint8), np.zeros((0, 640, 3), np.uint8), np.zeros((480, 640, 5), np.uint8),
    np.zeros((4, 4, 4, 4), np.uint8), np.zeros((10, 10), np.uint8), np.array(["a", "b"]),
    np.full((64, 64), np.nan, np.float32), np.full((64, 64), np.inf), np.zeros((64, 64), np.complex64),
])
def test_junk_gives_no_texts(junk) -> None:
    result = qrdecode.decode(junk)
    assert result.texts == [] and result.step is None


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=48)))
def test_random_arrays_never_raise(arr: np.ndarray) -> None:
    result = qrdecode.decode(arr)
    assert isinstance(result.texts, list) and all(isinstance(t, str) for t in result.texts)
