"""Social-security card reader: STX framing (:mod:`.framing`), the APDU sequence that reads
EF05/EF06 (:mod:`.apdu`), and the :class:`~drivers.cards.CardReader` the daemon polls
(:mod:`.reader`)."""
from drivers.sscard.reader import SsCardReader

__all__ = ["SsCardReader"]
