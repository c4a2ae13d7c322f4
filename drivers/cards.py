"""The one interface every card reader offers (ID-card SAM, social-security reader).

A reader is polled by the daemon: ``poll(timeout)`` returns a :class:`CardRead` once per
*presentation* (a card put on the reader), ``None`` when nothing new happened. A card left on
the reader is not returned again until it has been removed and presented again.

Failures a caller must tell apart: :class:`CardError` (this card, this time), :class:`ReaderError`
(the reader answers nonsense or nothing), :class:`drivers.serial_link.LinkDown` (the port is
gone; the link reopens by itself with backoff).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

CardKind = Literal["id_card", "ss_card"]


@dataclass(frozen=True)
class CardRead:
    """What a card says about its holder. Personal data: log only masked forms.

    ``id_number`` is the 18-character GB 11643 number when the card carries one (resident ID
    cards, HK/Macau/Taiwan residence permits), else the card's own number (foreign permanent
    resident card).
    ``extra`` holds kind-specific fields as plain strings (e.g. ``card_type``, ``nation``,
    ``ss_number``); photo and fingerprint bytes are never part of a read.
    """

    kind: CardKind
    name: str
    id_number: str
    sex: str | None = None          # "男" / "女" / "未知" / "未说明"
    birth_date: str | None = None   # "YYYY-MM-DD"
    valid_from: str | None = None   # "YYYY-MM-DD"
    valid_to: str | None = None     # "YYYY-MM-DD" or "长期"
    extra: dict[str, str] = field(default_factory=dict)


class CardError(Exception):
    """A read went wrong in a way the caller can report (card pulled out, unreadable...)."""


class CardRemoved(CardError):
    """The card left the reader before the read completed; nothing was read."""


class CardUnreadable(CardError):
    """The card answered, but what it said is not a valid card (bad check digit, bad date...)."""


class ReaderError(Exception):
    """The reader itself misbehaves: no answer, not the expected device, a wrong baud rate."""


class CardReader(Protocol):
    def poll(self, timeout: float) -> CardRead | None:
        """Wait up to ``timeout`` s for a newly presented card; ``None`` if none.

        Raises :class:`CardError` for a failed read, :class:`ReaderError` for a reader that
        does not answer properly, ``LinkDown`` if the port was still down when the
        wait ended (the link reopens with backoff; poll never busy-loops on a missing port).
        ``poll(0)`` makes one round at once: a port that cannot be opened fails fast.
        """
        ...

    def close(self) -> None:
        ...
