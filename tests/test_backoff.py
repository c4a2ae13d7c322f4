"""drivers.backoff: the one jittered exponential backoff (hub link, serial links, camera, sim)."""
from __future__ import annotations

import random
import statistics

import pytest

from drivers.backoff import backoff_delay


def test_backoff_is_fully_jittered_bounded_and_grows():
    rng = random.Random(1)
    for attempt in range(12):
        bound = min(60.0, 1.0 * 2 ** attempt)
        xs = [backoff_delay(attempt, base=1.0, cap=60.0, rng=rng) for _ in range(2000)]
        assert all(0 <= x <= bound for x in xs)
        # full jitter: spread over the whole interval, not clustered at its end
        assert min(xs) < 0.05 * bound and max(xs) > 0.95 * bound
        assert statistics.mean(xs) == pytest.approx(bound / 2, rel=0.1)
    assert backoff_delay(10_000, cap=60.0) <= 60.0


def test_backoff_spreads_a_crowd():
    """Thousands of terminals losing the broker at once do not come back in lockstep."""
    rng = random.Random(2)
    delays = sorted(backoff_delay(0, base=2.0, rng=rng) for _ in range(5000))
    per_100ms = [sum(1 for d in delays if i / 10 <= d < (i + 1) / 10) for i in range(20)]
    assert max(per_100ms) < 2 * 5000 / 20


@pytest.mark.parametrize("attempt, bound", [(0, 0.2), (1, 0.4), (4, 3.2), (5, 5.0), (10_000, 5.0)])
def test_a_floor_keeps_the_delay_in_its_upper_part(attempt, bound):
    """The devices' backoff (floor 0.5): between half the bound and the bound, spread over both
    ends, the bound doubling per attempt up to the cap (5.0 reached at attempt 5: 0.2·2^5 = 6.4)."""
    rng = random.Random(3)
    xs = [backoff_delay(attempt, base=0.2, cap=5.0, floor=0.5, rng=rng) for _ in range(2000)]
    assert all(bound / 2 <= x <= bound for x in xs)
    assert min(xs) < 0.52 * bound and max(xs) > 0.98 * bound
