"""The one way a test waits for another thread: on a condition, with a deadline.

The suite runs on a loaded 2-core CI machine: a fixed sleep either flakes (too short) or passes
without the thing having happened (nothing checks it did). A deadline here is a failure bound,
never a measurement, so it is generous.
"""
from __future__ import annotations

import time
from typing import Callable

DEADLINE = 30.0


def wait_for(cond: Callable[[], object], what: str = "the condition", timeout: float = DEADLINE,
             step: float = 0.005) -> bool:
    """Poll ``cond`` until it is true; AssertionError naming ``what`` if it is not by ``timeout``.
    Returns True, so ``assert wait_for(...)`` reads as the check it is."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)
    return True
