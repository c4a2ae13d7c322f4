"""The social-security card reader the daemon polls (docs/protocol/devices.md §2).

Each round: presence poll, and for a newly inserted card power on, the APDU sequence of
:mod:`drivers.sscard.card`, power off; one :class:`~drivers.cards.CardRead` per insertion.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from drivers import idnumber
from drivers.cards import CardRead, CardRemoved, ReaderError
from drivers.polled_reader import PolledReader
from drivers.serial_link import LinkDown, SerialLink
from drivers.sscard import card as sscard
from drivers.sscard.protocol import CardMute, ReaderProtocol

log = logging.getLogger(__name__)


class SsCardReader(PolledReader):
    """The social-security card reader at ``url`` (device path, pty, ``socket://``)."""

    def __init__(self, url: str, baudrate: int = 115200, *, timeout: float = 0.5,
                 retries: int = 2, poll_interval: float = 0.1, backoff_min: float = 0.2,
                 backoff_max: float = 5.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(SerialLink(url, baudrate, backoff_min=backoff_min, backoff_max=backoff_max,
                                    clock=clock),
                         poll_interval=poll_interval, clock=clock)
        self.protocol = ReaderProtocol(self.link, timeout=timeout, retries=retries, clock=clock)

    def read_round(self) -> CardRead | None:
        """One presence check, and the read if a new card is in."""
        if not self.protocol.card_present():
            self._presented = False
            return None
        if self._presented:
            return None
        # Mark it first: a card that fails to read is not retried until re-presented.
        self._presented = True
        return self._read()

    def _read(self) -> CardRead:
        try:
            self.protocol.power_on()
            try:
                card = sscard.read_card(self.protocol)
            finally:
                # Best effort: the card may be gone already, and the read stands either way.
                with contextlib.suppress(CardRemoved, CardMute, ReaderError, LinkDown):
                    self.protocol.power_off()
        except ReaderError:
            # The reader failed, not the card: read it again once the reader answers.
            self._presented = False
            raise
        log.info("social-security card read: %s %s", idnumber.mask_name(card.name),
                 idnumber.mask_id(card.ss_number))
        return card.to_card_read()
