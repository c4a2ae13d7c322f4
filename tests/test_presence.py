"""Something in front of the camera (drivers/presence.py): the changed share of the frame's
cells against the learned empty scene, each limit on both sides, on made-up frames and times."""
from __future__ import annotations

import numpy as np

from drivers import presence as P
from drivers.presence import Presence

H, W = 480, 640
CELL_W, CELL_H = W // P.GRID[0], H // P.GRID[1]        # 10 × 10 px per cell


def scene(level: float = 90.0) -> np.ndarray:
    """An even counter: every cell at ``level``."""
    return np.full((H, W), level, np.uint8)


def with_patch(cells: int, delta: float, base: float = 90.0) -> np.ndarray:
    """The scene with ``cells`` whole cells (row by row from the top left) changed by ``delta``."""
    frame = np.full((H, W), base, np.float32)
    for i in range(cells):
        r, c = divmod(i, P.GRID[0])
        frame[r * CELL_H:(r + 1) * CELL_H, c * CELL_W:(c + 1) * CELL_W] += delta
    return np.clip(frame, 0, 255).astype(np.uint8)


def learned(p: Presence | None = None, frames: int = 3) -> Presence:
    p = p or Presence()
    for i in range(frames):
        assert p.update(scene(), i * 0.1) is None
    return p


CELLS = P.GRID[0] * P.GRID[1]
ENOUGH = int(np.ceil(P.SHARE * CELLS))                   # the fewest changed cells that count


def test_nothing_there_in_a_still_noisy_scene():
    p, rng = Presence(), np.random.default_rng(1)
    for i in range(100):                                 # sensor noise of σ 8 levels: averaged out
        noisy = np.clip(90 + rng.normal(0, 8, (H, W)), 0, 255).astype(np.uint8)
        assert p.update(noisy, i / 15) is None


def test_the_share_of_changed_cells_both_sides():
    assert learned().update(with_patch(ENOUGH - 1, 60), 1.0) is None
    assert learned().update(with_patch(ENOUGH, 60), 1.0) == 1.0


def test_the_change_a_cell_needs_both_sides():
    assert learned().update(with_patch(CELLS // 4, P.DIFF), 1.0) is None     # exactly DIFF: not more than it
    assert learned().update(with_patch(CELLS // 4, P.DIFF + 1), 1.0) == 1.0
    assert learned().update(with_patch(CELLS // 4, -(P.DIFF + 1)), 1.0) == 1.0   # darker counts too


def test_since_is_when_it_came_and_ends_when_it_goes():
    p = learned()
    phone = with_patch(CELLS // 5, 120)
    assert [p.update(phone, t) for t in (1.0, 1.5, 2.0)] == [1.0, 1.0, 1.0]
    assert p.update(scene(), 2.5) is None and p.since is None
    assert p.update(phone, 3.0) == 3.0                   # the next person: a presence of their own


def test_the_background_follows_slow_light_not_a_phone():
    p = learned()
    for i in range(200):                                 # dusk: the counter 60 levels darker over 13 s
        assert p.update(scene(90 - 0.3 * i), 1 + i / 15) is None
    assert p.update(with_patch(CELLS // 5, 120, base=30), 20.0) == 20.0
    # while something is there, the background learns nothing of it
    q = learned()
    for i in range(100):
        assert q.update(with_patch(CELLS // 5, 120), 1 + i / 15) == 1.0
    assert q.update(scene(), 10.0) is None


def test_something_left_in_view_becomes_part_of_the_scene():
    p = learned()
    bag = with_patch(CELLS // 5, 120)
    assert p.update(bag, 1.0) == 1.0
    assert p.update(bag, 1.0 + P.ABSORB_S - 0.01) == 1.0
    assert p.update(bag, 1.0 + P.ABSORB_S) is None       # learned: the bag is the scene now
    assert p.update(bag, 40.0) is None
    assert p.update(scene(), 41.0) == 41.0               # and taking it away is a change


def test_frames_it_cannot_use_change_nothing():
    p = learned()
    assert p.update(with_patch(CELLS // 5, 120), 1.0) == 1.0
    for junk in (None, "frame", np.zeros((0, 0)), np.zeros((10, 10), np.uint8)):
        assert p.update(junk, 2.0) == 1.0
    assert Presence().update(None, 0.0) is None
    # a colour frame of the same scene is the same scene; a new frame size starts afresh
    assert learned().update(np.dstack([scene()] * 3), 1.0) is None
    q = learned()
    assert q.update(np.full((240, 320), 200, np.uint8), 1.0) is None and q.update(np.full((240, 320), 200, np.uint8), 1.1) is None
