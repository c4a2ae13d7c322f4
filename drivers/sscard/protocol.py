"""The social-security card reader's commands: one request, one answer, timeouts and retries.

One command in flight over :mod:`drivers.sscard.framing`; the answer carries the same CMD:

      31 card present?   → 31 00 none | 31 01 present
      32 power on        → 32 <ATR>
      33 <APDU>          → 33 <response> SW1 SW2
      34 power off       → 34
      any                → 3F 01 no card | 3F 02 card mute | 3F 03 frame error

Silence and frame errors are retried (the command is re-sent after dropping whatever the
line held); a frame for another command, or one that cannot answer this one (no ATR, a
presence byte other than 00/01), is a late answer to an earlier try and is skipped. What
cannot be had after the retries is raised as a :mod:`drivers.cards` error.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from drivers.cards import CardRemoved, CardUnreadable, ReaderError
from drivers.serial_link import SerialLink
from drivers.sscard.framing import Frame, FrameDecoder, encode

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
    """Request ↔ response with the reader; also the :class:`drivers.sscard.card.ApduChannel` to the card."""

    def __init__(self, link: SerialLink, *, timeout: float = 0.5, retries: int = 2,
                 clock: Callable[[], float] = time.monotonic):
        self.link = link
        self.timeout = timeout
        self.retries = retries   # extra attempts after the first
        self._clock = clock
        self._decoder = FrameDecoder()
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
        for _ in range(self.retries + 1):
            # Whatever is buffered now answers nothing we are about to ask.
            self.link.reset_input()
            self._decoder.reset()
            self.link.write(request)
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
        raise ReaderNotResponding(f"{self.link.url}: no valid answer to command {cmd:02X} "
                                  f"after {self.retries + 1} tries")

    def _await(self, cmd: int, valid: Callable[[bytes], bool]) -> Frame | None:
        """The answer to ``cmd`` (or an error frame); None if none came in time."""
        deadline = self._clock() + self.timeout
        while (remaining := deadline - self._clock()) > 0:
            for frame in self._decoder.feed(self.link.read(4096, remaining)):
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
