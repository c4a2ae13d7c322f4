"""The poll loop every card reader shares (see :class:`drivers.cards.CardReader`).

A reader kind implements one round, :meth:`PolledReader.read_round`: ask the device whether
a card is there and read it if it is new. The base repeats rounds until a card or the
deadline, and owns the once-per-placement latch: ``_presented`` is True while the card last
returned (or reported as failed) still lies on the reader, so it is not read again until it
has been taken off. The round sets and clears it, since only the device knows when a card
left; a lost port clears it here, because a card may have been swapped while it was down.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from drivers.cards import CardRead
from drivers.serial_link import LinkDown, SerialLink


class PolledReader:
    def __init__(self, link: SerialLink, *, poll_interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self.link = link
        self.poll_interval = poll_interval
        self._clock = clock
        self._presented = False

    def read_round(self) -> CardRead | None:
        """One look at the reader: the card newly placed on it, or None."""
        raise NotImplementedError

    def poll(self, timeout: float) -> CardRead | None:
        deadline = self._clock() + timeout
        while True:
            down: LinkDown | None = None
            try:
                card = self.read_round()
            except LinkDown as e:
                self._presented = False  # whatever was on it, the next session reads afresh
                down, card = e, None
            if card is not None:
                return card
            remaining = deadline - self._clock()
            if remaining <= 0:
                if down is not None:
                    raise down
                return None
            time.sleep(min(self.poll_interval, remaining))

    def close(self) -> None:
        self.link.close()
