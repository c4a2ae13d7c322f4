"""A QR code in view that did not decode: what the picture shows about why.

The camera's thread calls :func:`look` now and then on a frame the decoder chain
(``drivers.qrdecode``) read nothing from, with the symbols the chain's zxing steps located
anyway (``Decoded.found``: zxing-cpp reports symbols it found but could not decode, at no extra
cost). When they located no QR code, ``cv2.QRCodeDetector().detect`` (finder patterns only,
~11 ms) has a look; when that finds none either but the chain located part of one
(``Decoded.partial``), the view is of that part, and the code's size is unknown.

Then four numbers over the code's bounding box, together well under a millisecond: its width,
the light modules' grey level, the share of it washed out by a reflection, and the variance
of the Laplacian relative to the box's contrast at one fixed size (low: blurred). What they
mean for the person in front of the camera is decided by ``terminal.core.guidance``.
:func:`look` never raises: a frame it cannot use gives None.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drivers.qrdecode import Quad, to_gray

CELLS = 6           # the code's box is judged in CELLS×CELLS cells for washed-out light
SATURATED = 245     # grey level of a burnt-out pixel (sensor noise keeps some just below 255)
FLAT = 0.5          # a washed cell keeps less than this share of the whole code's contrast
SHARP_SIDE = 128    # px: sharpness is measured with the box scaled to this side


@dataclass(frozen=True)
class View:
    width_px: float | None   # the code's side on the frame, mean of the located quadrilateral's sides; None: unknown
    white: float         # the light modules' grey level (90th percentile over the code's box), 0-255
    washed: float        # share of the box's cells burnt out and flat: a reflection on the screen
    sharpness: float     # var(Laplacian) / var(grey), the box scaled to SHARP_SIDE px: low is blurred
    found_by: str        # "zxing" (the decoder chain located it) | "opencv" | "partial" | "given"


def detect(gray: np.ndarray) -> Quad | None:
    """OpenCV's finder-pattern search: the corners of a QR code in ``gray``, or None."""
    ok, points = cv2.QRCodeDetector().detect(gray)
    if ok and points is not None and np.asarray(points).size == 8:
        return np.asarray(points, np.float64).reshape(4, 2)
    return None


def measure(gray: np.ndarray, quad: np.ndarray, found_by: str = "given") -> View | None:
    """The numbers over ``quad``'s bounding box (clipped to the frame); None if it is empty.
    ``found_by="partial"``: the quad is part of a code, whose width is then unknown."""
    sides = [math.dist(quad[i], quad[(i + 1) % 4]) for i in range(4)]
    h, w = gray.shape
    x0, y0 = np.clip(np.floor(quad.min(axis=0)).astype(int), 0, (w, h))
    x1, y1 = np.clip(np.ceil(quad.max(axis=0)).astype(int) + 1, 0, (w, h))
    box = gray[y0:y1, x0:x1]
    if box.shape[0] < CELLS or box.shape[1] < CELLS:
        return None
    # Everything at one fixed size: a small code must not look "sharper", and the statistics
    # cost the same for any code.
    fixed = cv2.resize(box, (SHARP_SIDE, SHARP_SIDE), interpolation=cv2.INTER_AREA
                       if min(box.shape) > SHARP_SIDE else cv2.INTER_LINEAR)
    var = float(fixed.var())
    sharpness = float(cv2.Laplacian(fixed, cv2.CV_32F).var()) / var if var > 0 else 0.0
    # Every cell of a CELLS×CELLS grid over a QR code holds dark and light modules. A reflection
    # burns a cell's light ones out and lifts its dark ones: bright and flat. A bright screen
    # is bright but keeps its contrast; a dim one is flat but not bright. (Averaged down to
    # 8 px per cell first: sensor noise is no contrast.)
    small = cv2.resize(fixed, (CELLS * 8, CELLS * 8), interpolation=cv2.INTER_AREA)
    cells = small.reshape(CELLS, 8, CELLS, 8).transpose(0, 2, 1, 3).reshape(CELLS * CELLS, 64)
    lo, hi = cells.min(axis=1).astype(int), cells.max(axis=1).astype(int)
    box_lo, white = np.percentile(small, (5, 90))
    washed = (hi >= SATURATED) & (hi - lo < FLAT * (int(small.max()) - box_lo))
    return View(width_px=None if found_by == "partial" else sum(sides) / 4, white=float(white),
                washed=float(np.count_nonzero(washed)) / washed.size, sharpness=sharpness,
                found_by=found_by)


def look(frame: object, found: Sequence[Quad] = (), partial: Sequence[Quad] = ()) -> View | None:
    """How the QR code in ``frame`` looks: the first of ``found`` (``Decoded.found``), else one
    OpenCV detects, else the first of ``partial`` (``Decoded.partial``); None: no code in view,
    or a frame that cannot be used."""
    gray = to_gray(frame)
    if gray is None:
        return None
    try:
        if found:
            return measure(gray, np.asarray(found[0], np.float64), "zxing")
        quad = detect(gray)
        if quad is not None:
            return measure(gray, quad, "opencv")
        return measure(gray, np.asarray(partial[0], np.float64), "partial") if partial else None
    except Exception:   # noqa: BLE001 - a library choking on one frame costs that frame's hint only
        return None
