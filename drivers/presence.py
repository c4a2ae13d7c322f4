"""Something in front of the camera: the frame differs from the learned empty scene.

Scan engines in presentation mode wake on the same cue: a change in the field of view. Here it
tells ``terminal.core.guidance`` when a person started presenting, so that a code the decoders
only locate a few frames later (a phone still moving, a badly lit screen) is timed from when it
came into view, not from when it was first located.

The frame is averaged down to a ``GRID`` of cells (the mean of ~10×10 px: sensor noise averages
out) and compared with a background kept the same way. Present: at least ``SHARE`` of the cells
differ from the background by more than ``DIFF`` grey levels. While nothing is present the
background follows the scene slowly (daylight, a lamp switched on); something that stays in
view for ``ABSORB_S`` without going (a bag on the counter, a camera knocked askew) becomes part
of the scene. ~0.2 ms per 640×480 frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from drivers.qrdecode import to_gray

GRID = (64, 48)     # cells across, down
DIFF = 20.0         # grey levels a cell must change by to count
SHARE = 0.02        # share of the cells that must change: a phone at the door covers 10-40 %
LEARN = 0.05        # weight of each empty frame in the background
ABSORB_S = 30.0     # s present without a break: the scene has changed, learn it


class Presence:
    """Confined to the camera's thread; told every frame and its time."""

    def __init__(self) -> None:
        self._background: np.ndarray | None = None
        self._shape: tuple[int, ...] = ()                # the frames' size: a new one starts afresh
        self.since: float | None = None      # when the current presence began; None: nothing there

    def update(self, frame: object, ts: float) -> float | None:
        """One frame taken at ``ts`` (any size; grey, BGR or BGRA): returns :attr:`since`. A
        frame that cannot be used (``drivers.qrdecode.to_gray``) changes nothing."""
        gray = to_gray(frame)
        if gray is None:
            return self.since
        small = cv2.resize(gray, GRID, interpolation=cv2.INTER_AREA).astype(np.float32)
        if self._background is None or gray.shape != self._shape:
            self._background, self._shape, self.since = small, gray.shape, None
            return None
        changed = np.count_nonzero(np.abs(small - self._background) > DIFF) / small.size
        if changed < SHARE:
            self.since = None
            cv2.accumulateWeighted(small, self._background, LEARN)
        elif self.since is None:
            self.since = ts
        elif ts - self.since >= ABSORB_S:
            self._background, self.since = small, None
        return self.since
