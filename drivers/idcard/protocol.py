"""GA/T 467 SAM commands: one request, one answer, with timeouts and retries.

    request:  frame(CMD PARA [data])
    answer:   frame(SW1=00 SW2=00 SW3 [data])     SW3 = status, see :class:`Status`

Before each request the input is flushed and the decoder reset, so a late answer to an
earlier (timed-out) request is never taken for this one. An answer with a bad checksum, or a
SAM saying *it* got a bad checksum (SW3 = 10), sends the request again; so does silence. What cannot be had after the retries is
raised as a :class:`drivers.cards.ReaderError` (:class:`SamError`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from drivers.cards import ReaderError
from drivers.idcard.framing import FrameDecoder, encode
from drivers.serial_link import SerialLink


class Status(IntEnum):
    """SW3 codes of GA/T 467."""

    OK = 0x90
    NO_SUCH_ITEM = 0x91
    CARD_FOUND = 0x9F
    CHECKSUM_ERROR = 0x10          # the SAM received a corrupted frame: resend
    LENGTH_ERROR = 0x11
    COMMAND_ERROR = 0x21
    NOT_AUTHORISED = 0x23
    UNRECOGNISED_ERROR = 0x24
    CARD_AUTH_SAM_FAILED = 0x31    # card failed to authenticate the SAM
    SAM_AUTH_CARD_FAILED = 0x32    # SAM failed to authenticate the card
    INFO_CHECK_FAILED = 0x33
    UNKNOWN_CARD_TYPE = 0x40
    READ_FAILED = 0x41
    RANDOM_FAILED = 0x47
    SAM_SELF_TEST_FAILED = 0x60
    SAM_NOT_AUTHORISED = 0x66
    FIND_FAILED = 0x80             # no card on the reader
    SELECT_FAILED = 0x81


def status_name(sw3: int) -> str:
    try:
        return Status(sw3).name
    except ValueError:
        return f"UNKNOWN_STATUS_{sw3:02X}"


class Command:
    """``CMD PARA`` pairs."""

    RESET_SAM = b"\x10\xFF"
    SAM_STATUS = b"\x11\xFF"
    READ_SAM_ID = b"\x12\xFF"
    FIND_CARD = b"\x20\x01"
    SELECT_CARD = b"\x20\x02"
    READ_TEXT_PHOTO = b"\x30\x01"
    READ_ADDRESS = b"\x30\x03"
    READ_TEXT_PHOTO_FP = b"\x30\x10"


class SamError(ReaderError):
    """The SAM could not be talked to properly."""


class SamNoAnswer(SamError):
    """No usable answer (silence, corrupted frames, SAM-side checksum errors) after all retries."""


class SamProtocolError(SamError):
    """An answer that is well framed but not a GA/T 467 answer (SW1/SW2 not 00 00)."""


@dataclass(frozen=True)
class Answer:
    status: int   # SW3; compare with Status members
    data: bytes   # what follows SW3

    @property
    def name(self) -> str:
        return status_name(self.status)


class SamProtocol:
    REJECT_GRACE = 0.05  # s to wait for a good frame after a corrupted one

    def __init__(self, link: SerialLink, *, timeout: float = 0.5, retries: int = 2,
                 clock: Callable[[], float] = time.monotonic):
        self.link = link
        self.timeout = timeout
        self.retries = retries   # extra attempts after the first
        self._clock = clock
        self._decoder = FrameDecoder()

    @property
    def decoder(self) -> FrameDecoder:
        return self._decoder

    def request(self, command: bytes, data: bytes = b"", *, timeout: float | None = None) -> Answer:
        """Send one command, return its answer. Raises SamError, or LinkDown from the link."""
        frame = encode(command + data)
        wait = self.timeout if timeout is None else timeout
        why = "no answer"
        for _ in range(1 + self.retries):
            self.link.reset_input()
            self._decoder.reset()
            self.link.write(frame)
            payload, why = self._await(wait)
            if payload is None:
                continue
            if len(payload) < 3 or payload[0] or payload[1]:
                raise SamProtocolError(f"not a SAM answer: {payload[:8].hex(' ')}")
            if payload[2] == Status.CHECKSUM_ERROR:
                why = "SAM reports a checksum error"
                continue
            return Answer(payload[2], payload[3:])
        raise SamNoAnswer(f"command {command.hex(' ')}: {why} after {1 + self.retries} attempts")

    def _await(self, wait: float) -> tuple[bytes | None, str]:
        """First good frame within ``wait`` s, or None and why not."""
        rejected = self._decoder.rejected
        why = "no answer"
        deadline = self._clock() + wait
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                # Silence mid-frame: drop the truncated start, keep any whole frame behind it.
                frames = self._decoder.resync()
                return (frames[0], "") if frames else (None, why)
            frames = self._decoder.feed(self.link.read(4096, remaining))
            if frames:
                return frames[0], ""
            if self._decoder.rejected != rejected:
                # A corrupted answer: resend soon rather than sit out the whole timeout, but
                # give a good frame already on its way behind the bad one a moment to arrive.
                rejected = self._decoder.rejected
                why = "corrupted answer"
                deadline = min(deadline, self._clock() + self.REJECT_GRACE)
