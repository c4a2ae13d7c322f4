"""Jittered exponential backoff: the one retry delay of every reconnecting part of the terminal
(serial links, the camera, the hub link) and of the simulator.

Jitter, because what fails together must not retry together: a province of terminals after a
broker restart, or readers replugged at once, would otherwise come back in lockstep.
"""
from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 60.0, floor: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """A delay uniform in [floor·d, d], d = min(cap, base·2^attempt), ``attempt`` counted from 0.

    ``floor`` 0 is full jitter (the hub link: reconnects spread over the whole interval); 0.5
    keeps a device's retry from coming back almost at once, so a flapping one cannot spin a core.
    """
    d = min(cap, base * 2 ** min(attempt, 32))
    return (rng or random).uniform(floor * d, d)
