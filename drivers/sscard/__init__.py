"""Social-security card reader: STX framing (:mod:`.framing`), the reader's commands
(:mod:`.protocol`), the APDU sequence that reads EF05/EF06 (:mod:`.card`), and the
:class:`~drivers.cards.CardReader` the daemon polls (:mod:`.reader`)."""
from drivers.sscard.reader import SsCardReader

__all__ = ["SsCardReader"]
