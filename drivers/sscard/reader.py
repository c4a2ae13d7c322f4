"""Social-security card reader on a serial line (docs/protocol/devices.md §2): commands and presentations.

Two layers over :mod:`drivers.sscard.framing`:

* :class:`ReaderProtocol` — one command in flight; the answer carries the same CMD:

      31 card present?   → 31 00 none | 31 01 present
      32 power on        → 32 <ATR>
      33 <APDU>          → 33 <response> SW1 SW2
      34 power off       → 34
      any                → 3F 01 no card | 3F 02 card mute | 3F 03 frame error

  Silence and frame errors are retried (the command is re-sent after dropping whatever the
  line held); a frame for another command, or one that cannot answer this one (no ATR, a
  presence byte other than 00/01), is a late answer to an earlier try and is skipped.

* :class:`SsCardReader` — the :class:`drivers.cards.CardReader` the daemon polls: presence
  poll, power on, the APDU sequence of :mod:`drivers.sscard.apdu`, power off; one
  :class:`~drivers.cards.CardRead` per insertion.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from terminal import idnumber
from drivers.cards import CardRead, CardRemoved, CardUnreadable, ReaderError
from drivers.serial_link import LinkDown, SerialLink
from drivers.sscard import apdu
from drivers.sscard.framing import Frame, FrameDecoder, encode

log = logging.getLogger(__name__)

CMD_PRESENT = 0x31
CMD_POWER_ON = 0x32
CMD_APDU = 0x33
CMD_POWER_OFF = 0x34
CMD_ERROR = 0x3F
ERR_NO_CARD = 0x01
ERR_CARD_MUTE = 0x02
ERR_FRAME = 0x03


class ReaderNotResponding(ReaderError):
    """The reader stayed silent or garbled through every retry."""


class CardMute(CardUnreadable):
    """A card is in the reader but does not answer it (inserted wrongly, dead chip)."""


def _any(data: bytes) -> bool:
    return True


class ReaderProtocol:
    """Request ↔ response with the reader; also the :class:`apdu.ApduChannel` to the card."""

    def __init__(self, link: SerialLink, *, timeout: float = 0.5, retries: int = 2):
        self._link = link
        self._decoder = FrameDecoder()
        self._timeout = timeout
        self._retries = retries
        # Counters for status and tests.
        self.timeouts = 0
        self.frame_errors = 0    # 3F 03 from the reader
        self.bad_answers = 0     # well-framed but meaningless answers
        self.stale_frames = 0    # answers to an earlier try

    @property
    def decoder(self) -> FrameDecoder:
        return self._decoder

    def request(self, cmd: int, data: bytes = b"",
                valid: Callable[[bytes], bool] = _any) -> bytes:
        """Send ``cmd data``; return the answer's DATA.

        Raises CardRemoved, CardMute, ReaderNotResponding, LinkDown (port gone)."""
        request = encode(cmd, data)
        for _ in range(self._retries + 1):
            # Whatever is buffered now answers nothing we are about to ask.
            self._link.reset_input()
            self._decoder.reset()
            self._link.write(request)
            answer = self._await(cmd, valid)
            if answer is None:
                self.timeouts += 1
            elif answer.cmd == CMD_ERROR:
                code = answer.data[0] if len(answer.data) == 1 else None
                if code == ERR_NO_CARD:
                    raise CardRemoved("no card in the reader")
                if code == ERR_CARD_MUTE:
                    raise CardMute("card does not answer")
                if code == ERR_FRAME:
                    self.frame_errors += 1
                else:
                    self.bad_answers += 1
            else:
                return answer.data
        raise ReaderNotResponding(f"{self._link.url}: no valid answer to command {cmd:02X} "
                                  f"after {self._retries + 1} tries")

    def _await(self, cmd: int, valid: Callable[[bytes], bool]) -> Frame | None:
        """The answer to ``cmd`` (or an error frame); None if none came in time."""
        deadline = time.monotonic() + self._timeout
        while (remaining := deadline - time.monotonic()) > 0:
            for frame in self._decoder.feed(self._link.read(4096, remaining)):
                if self._answers(frame, cmd, valid):
                    return frame
        # Timed out, maybe mid-frame: drop the partial frame so the next try starts in sync,
        # but take an answer that was hiding behind a corrupted header.
        for frame in self._decoder.resync():
            if self._answers(frame, cmd, valid):
                return frame
        return None

    def _answers(self, frame: Frame, cmd: int, valid: Callable[[bytes], bool]) -> bool:
        if frame.cmd == CMD_ERROR:
            return True
        if frame.cmd != cmd:
            self.stale_frames += 1   # a late answer to an earlier command
            return False
        if not valid(frame.data):
            self.bad_answers += 1    # a late answer to an earlier try, or a confused reader
            return False
        return True

    def card_present(self) -> bool:
        return self.request(CMD_PRESENT, valid=lambda d: d in (b"\x00", b"\x01")) == b"\x01"

    def power_on(self) -> bytes:
        """Power the card; return its ATR (ISO 7816-3: at least TS and T0)."""
        return self.request(CMD_POWER_ON, valid=lambda d: len(d) >= 2)

    def power_off(self) -> None:
        self.request(CMD_POWER_OFF)

    def transmit(self, command: bytes) -> bytes:
        return self.request(CMD_APDU, command, valid=lambda d: len(d) >= 2)


class SsCardReader:
    """The social-security card reader at ``url`` (device path, pty, ``socket://``)."""

    def __init__(self, url: str, baudrate: int = 115200, *, timeout: float = 0.5,
                 retries: int = 2, poll_interval: float = 0.1):
        self.link = SerialLink(url, baudrate)
        self.protocol = ReaderProtocol(self.link, timeout=timeout, retries=retries)
        self._poll_interval = poll_interval
        # True while the card that was last presented is still in the reader.
        self._card_seen = False

    def poll(self, timeout: float) -> CardRead | None:
        deadline = time.monotonic() + timeout
        while True:
            down: LinkDown | None = None
            try:
                read = self._round()
            except LinkDown as e:
                # Whatever was in the reader, it is read afresh once the port is back (as the
                # ID-card reader does): a card may have been swapped meanwhile.
                self._card_seen = False
                down, read = e, None
            if read is not None:
                return read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if down is not None:
                    raise down
                return None
            time.sleep(min(self._poll_interval, remaining))

    def _round(self) -> CardRead | None:
        """One presence check, and the read if a new card is in."""
        if not self.protocol.card_present():
            self._card_seen = False
            return None
        if self._card_seen:
            return None
        # Mark it first: a card that fails to read is not retried until re-presented.
        self._card_seen = True
        return self._read()

    def _read(self) -> CardRead:
        try:
            self.protocol.power_on()
            try:
                card = apdu.read_card(self.protocol)
            finally:
                # Best effort: the card may be gone already, and the read stands either way.
                with contextlib.suppress(CardRemoved, CardMute, ReaderError, LinkDown):
                    self.protocol.power_off()
        except ReaderError:
            # The reader failed, not the card: read it again once the reader answers.
            self._card_seen = False
            raise
        log.info("social-security card read: %s %s", idnumber.mask_name(card.name),
                 idnumber.mask_id(card.ss_number))
        # The chip has no birth date or sex record; the ID number encodes both (GB 11643:
        # digits 7-14 the birth date, digit 17 odd for men). is_valid() checked the date.
        born = idnumber.birth_date(card.ss_number)
        return CardRead(kind="ss_card", name=card.name, id_number=card.ss_number,
                        sex="男" if int(card.ss_number[16]) % 2 else "女",
                        birth_date=born.isoformat() if born else None,
                        valid_to=card.expiry.isoformat(),
                        extra={"card_number": card.card_number})

    def close(self) -> None:
        self.link.close()
