"""QR codes in a camera frame: a chain of decoders, cheapest first.

Each step turns the grey frame into something a library reads; the chain stops at the first
step that finds anything, so a clean frame costs one fast pass and only a hard or empty frame
pays for the rest. Steps, and why each is there (``benchmarks/bench_decode.py`` measures them
on degraded virtual-camera frames, one core):

    zxing        zxing-cpp on the grey frame, ~1 ms: reads nearly every clean to moderate frame.
    zxing-sharp  unsharp mask (σ 1.5 px, amount 1.5), then 2× bilinear upscale, then zxing-cpp,
                 ~3 ms: small, blurred, shaken codes (2-3 px per module) that zxing's sampling
                 grid misses at native size. On "hard" frames it lifts the share read from
                 ~23 % to ~60 %; on "moderate" from ~81 % to ~95 %.
    zbar         pyzbar on the grey frame, ~7 ms: a different detector (scan lines rather than
                 finder-pattern search), the last resort. It rarely adds a frame (1 of 150
                 "hard") but it makes the chain never worse than zbar alone.

Measured and left out because they added no frame over the steps above: CLAHE (loses
frames to amplified noise), darkest-channel grey for coloured codes, adaptive-threshold
binarisation for zbar, zxing's global-histogram binariser, 3× upscaling, upscaling without
sharpening, and cropping to a region of interest (zxing's full-frame pass is already
cheaper than finding the region).

:func:`decode` never raises: empty arrays, odd dtypes and channel counts give no texts. Besides
the texts it returns where the zxing steps located symbols, decoded or not, for
``drivers.qrview``: QR codes (``found``), and the small symbols of the QR family (Micro QR,
rMQR) that zxing reports where one finder pattern of a blurred or tilted code stands out
(``partial``): no health code is one of those, but they show that a code is in view — on the
hard camera level half of the presentations that end up needing a hint are located only
that way in their first frames — though not how large it is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import zxingcpp
from pyzbar import pyzbar

UPSCALE_MAX_SIDE = 1400     # a 1280×720 frame is upscaled less than a 640×480 one
MIN_SIDE = 21               # a version-1 QR code has 21 modules


Quad = np.ndarray           # a symbol's corners, 4×2 frame px: top left, top right, bottom right, bottom left


@dataclass(frozen=True)
class Decoded:
    texts: list[str]        # distinct texts, in the order found
    ms: float               # wall time of the whole chain
    step: str | None        # the step that found them; None when nothing was found
    found: tuple[Quad, ...] = ()   # every QR code the zxing steps located, read or not
    partial: tuple[Quad, ...] = ()  # Micro QR / rMQR symbols they located: part of a code in view


def to_gray(frame: object) -> np.ndarray | None:
    """8-bit single-channel view of ``frame`` (grey, BGR, BGRA; any numeric dtype), or None."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        return None
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        return None
    if min(frame.shape[:2]) < MIN_SIDE:
        return None
    img = frame
    if img.dtype != np.uint8:
        if img.dtype == np.bool_:
            img = img.astype(np.uint8) * 255
        elif np.issubdtype(img.dtype, np.floating):
            img = np.clip(np.nan_to_num(img, nan=0.0, posinf=255.0, neginf=0.0), 0.0, 255.0)
            if img.max(initial=0.0) <= 1.0:     # floats in 0..1
                img = img * 255.0
            img = img.astype(np.uint8)
        elif np.issubdtype(img.dtype, np.integer):
            if img.dtype.itemsize > 1 and img.max(initial=0) > 255:   # 16-bit sensor data
                img = (img.astype(np.float64) * (255.0 / float(img.max()))).astype(np.uint8)
            else:
                img = np.clip(img, 0, 255).astype(np.uint8)
        else:
            return None
    if img.ndim == 3:
        c = img.shape[2]
        img = np.ascontiguousarray(img)
        img = img[:, :, 0] if c == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if c == 3 else cv2.COLOR_BGRA2GRAY)
    return np.ascontiguousarray(img)


def _zxing(gray: np.ndarray, downscale: bool = True, scale: float = 1.0) -> tuple[list[str], list[Quad], list[Quad]]:
    # Symbols found but not decoded come back too (at no extra cost): where a code is that
    # does not read is what drivers.qrview needs to say why.
    found = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode, try_rotate=False,
                                   try_downscale=downscale, return_errors=True)
    codes: list[Quad] = []
    parts: list[Quad] = []
    for r in found:
        quad = np.array([(c.x, c.y) for c in (r.position.top_left, r.position.top_right,
                                              r.position.bottom_right, r.position.bottom_left)], np.float64) / scale
        # The QR family shares one format; the version tells them apart: "1".."40" a QR code,
        # "M1".."M4" Micro QR, "R…" rMQR.
        (codes if str((r.extra or {}).get("Version", "")).isdigit() else parts).append(quad)
    return [r.text for r in found if r.valid], codes, parts


def _zbar(gray: np.ndarray) -> tuple[list[str], list[Quad], list[Quad]]:
    out = []
    for r in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE]):
        try:
            out.append(r.data.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(r.data.decode("latin-1"))
    return out, [], []


def sharpened(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """Unsharp mask, then upscaled (2×, less for a large frame): the image and its scale."""
    # Sharpen first, at native size: 4× cheaper than blurring the upscaled image and as good.
    blurred = cv2.GaussianBlur(gray, (0, 0), 1.5)
    sharp = cv2.addWeighted(gray, 2.5, blurred, -1.5, 0)
    scale = max(1.0, min(2.0, UPSCALE_MAX_SIDE / max(gray.shape)))
    return cv2.resize(sharp, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR), scale


def _zxing_sharp(gray: np.ndarray) -> tuple[list[str], list[Quad], list[Quad]]:
    big, scale = sharpened(gray)
    return _zxing(big, downscale=False, scale=scale)


STEPS: dict[str, Callable[[np.ndarray], tuple[list[str], list[Quad], list[Quad]]]] = {
    "zxing": _zxing,
    "zxing-sharp": _zxing_sharp,
    "zbar": _zbar,
}


def decode(frame: object, steps: tuple[str, ...] = tuple(STEPS)) -> Decoded:
    """Run the chain on one frame; stop at the first step that reads a code."""
    t0 = time.perf_counter()
    gray = to_gray(frame)
    found: list[Quad] = []
    partial: list[Quad] = []
    if gray is not None:
        for name in steps:
            try:
                texts, codes, parts = STEPS[name](gray)
            except Exception:   # noqa: BLE001 - a library choking on one frame must not stop the terminal
                continue
            found += codes
            partial += parts
            if texts:
                return Decoded(list(dict.fromkeys(texts)), (time.perf_counter() - t0) * 1000, name,
                               tuple(found), tuple(partial))
    return Decoded([], (time.perf_counter() - t0) * 1000, None, tuple(found), tuple(partial))
