"""drivers.polled_reader: the poll loop both card readers share, and the options they share."""
from __future__ import annotations

import pytest

from drivers.cards import CardRead
from drivers.idcard.reader import IdCardReader
from drivers.polled_reader import PolledReader
from drivers.serial_link import LinkDown, SerialLink
from drivers.sscard.reader import SsCardReader

CARD = CardRead(kind="id_card", name="张三", id_number="11010519491231002X")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Scripted(PolledReader):
    """Rounds that return or raise what they are given, in order; the clock moves 1 s a round."""

    def __init__(self, *rounds):
        self.clock = Clock()
        super().__init__(SerialLink("/nonexistent/ttyX"), poll_interval=0.001, clock=self.clock)
        self.rounds = list(rounds)
        self.latch_seen: list[bool] = []

    def read_round(self) -> CardRead | None:
        self.latch_seen.append(self._presented)
        self.clock.now += 1.0
        step = self.rounds.pop(0)
        if isinstance(step, Exception):
            raise step
        if step is not None:
            self._presented = True
        return step


def test_a_card_ends_the_poll_and_the_latch_is_the_rounds_to_keep():
    reader = Scripted(None, CARD, None)
    assert reader.poll(10) == CARD
    assert reader.rounds == [None] and reader.latch_seen == [False, False]
    assert reader.poll(0) is None and reader.latch_seen[-1] is True


def test_a_lost_port_clears_the_latch_and_is_raised_only_if_still_down_at_the_end():
    reader = Scripted(CARD, LinkDown("gone"), None)
    assert reader.poll(0) == CARD
    assert reader.poll(1.5) is None               # down, then back before the deadline
    assert reader.latch_seen == [False, True, False]
    reader = Scripted(None, LinkDown("gone"))
    with pytest.raises(LinkDown, match="gone"):
        reader.poll(1.5)                          # still down when the wait ended
    assert reader.rounds == []


@pytest.mark.parametrize("cls", [IdCardReader, SsCardReader])
def test_both_readers_take_the_same_clock_and_backoff(cls):
    clock = Clock()
    reader = cls("/nonexistent/ttyX", timeout=0.2, retries=1, poll_interval=0.01,
                 backoff_min=1.0, backoff_max=2.0, clock=clock)
    with pytest.raises(LinkDown, match="cannot open"):
        reader.poll(0)
    with pytest.raises(LinkDown, match=r"\(retrying\)"):
        reader.poll(0)                            # the clock has not moved: still backing off
    clock.now += 1.0                              # the first delay is 0.5-1.0 s
    with pytest.raises(LinkDown, match="cannot open"):
        reader.poll(0)
    clock.now += 0.99                             # the second is 1.0-2.0 s: not over yet
    with pytest.raises(LinkDown, match=r"\(retrying\)"):
        reader.poll(0)
    reader.close()
