"""The ID-card reader the daemon polls: find -> select -> read, one card per placement.

One read is ``20 01`` (find), ``20 02`` (select), ``30 01`` (text + photo); what the text
says is :mod:`drivers.idcard.card`'s business.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from drivers.cards import CardRead, CardRemoved, CardUnreadable, ReaderError
from drivers.idcard.card import parse_text, split_read_answer
from drivers.idcard.protocol import Command, SamError, SamProtocol, Status
from drivers.polled_reader import PolledReader
from drivers.serial_link import SerialLink


class IdCardReader(PolledReader):
    """A GA/T 467 SAM module on a serial line, polled for cards (see drivers.cards)."""

    def __init__(self, url: str, baudrate: int = 115200, *, timeout: float = 0.5,
                 read_timeout: float = 1.5, retries: int = 2, poll_interval: float = 0.1,
                 backoff_min: float = 0.2, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(SerialLink(url, baudrate, backoff_min=backoff_min, backoff_max=backoff_max,
                                    clock=clock),
                         poll_interval=poll_interval, clock=clock)
        self.protocol = SamProtocol(self.link, timeout=timeout, retries=retries, clock=clock)
        self.read_timeout = read_timeout

    def read_round(self) -> CardRead | None:
        """One find/select/read round; None if no card or the card was already returned.

        A SAM that does not answer find or select raises its SamError (a ReaderError)."""
        found = self.protocol.request(Command.FIND_CARD)
        if found.status == Status.FIND_FAILED:
            self._presented = False
            return None
        if found.status != Status.CARD_FOUND:
            raise ReaderError(f"find card answered {found.name}")
        if self._presented:
            return None
        selected = self.protocol.request(Command.SELECT_CARD)
        if selected.status == Status.SELECT_FAILED:
            return None  # the card moved off between find and select: not a placement yet
        if selected.status != Status.OK:
            raise ReaderError(f"select card answered {selected.name}")
        try:
            read = self.protocol.request(Command.READ_TEXT_PHOTO, timeout=self.read_timeout)
        except SamError as e:
            raise CardRemoved(f"card removed during read ({e})") from None
        if read.status == Status.READ_FAILED:
            raise CardRemoved("card removed during read (READ_FAILED)")
        # From here on the outcome belongs to this placement, good or bad: a card that
        # does not parse is reported once, not again at every poll while it lies there.
        self._presented = True
        if read.status != Status.OK:
            raise CardUnreadable(f"card read failed: {read.name}")
        return parse_text(split_read_answer(read.data)).to_card_read()
