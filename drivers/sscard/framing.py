"""STX/ETX framing of the UART social-security-card reader (docs/protocol/devices.md §2): bytes ⇄ frames.

    STX=02 | LEN_H LEN_L | CMD | DATA ... | BCC | ETX=03
             `--- LEN counts CMD + DATA ---'
             `------ BCC = XOR of LEN_H .. last DATA byte

Only bytes and frames live here; what the commands mean is the reader's business, so another
vendor's framing can sit beside this one under the same APDU logic.

The decoder is incremental: feed it whatever a read returned, get the complete frames back.
A frame that fails (LEN out of range, bad BCC, byte at the ETX position not ETX) costs only its
STX: the decoder rescans from the byte after it, so a valid frame hiding behind a corrupted
header is still found. An 8-bit XOR plus the ETX byte is a 16-bit check, so line noise can
forge a frame with odds of about 1 in 65536 per false STX; the layers above check that an
answer fits the question.
"""
from __future__ import annotations

from dataclasses import dataclass

STX = 0x02
ETX = 0x03
# LEN counts CMD + DATA. The longest legitimate frame carries a short APDU (5 header + 255 data
# + Le) or a 256-byte response + SW: 262 bytes with CMD. 512 leaves room for vendor extras while
# a corrupted LEN can stall the decoder on at most ~half a kilobyte (and only until resync()).
MAX_LEN = 512


class FrameTooLong(ValueError):
    """A frame to encode does not fit in MAX_LEN."""


@dataclass(frozen=True)
class Frame:
    cmd: int
    data: bytes = b""


def bcc(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def encode(cmd: int, data: bytes = b"") -> bytes:
    length = 1 + len(data)
    if length > MAX_LEN:
        raise FrameTooLong(f"frame of {length} bytes exceeds {MAX_LEN}")
    body = bytes((length >> 8, length & 0xFF, cmd)) + data
    return bytes((STX,)) + body + bytes((bcc(body), ETX))


class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the frames completed by that chunk.

    The counters are those of every card decoder (drivers.idcard.framing has the same); a
    wrong ETX counts as a bad checksum, BCC and ETX being one 16-bit check.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        # Counters for status pages and tests: what the line has thrown at us.
        self.frames = 0
        self.discarded_bytes = 0  # bytes skipped while looking for STX
        self.bad_length = 0
        self.bad_checksum = 0
        self.resyncs = 0          # frame starts dropped by resync()

    @property
    def rejected(self) -> int:
        """Frames dropped for a bad length or checksum."""
        return self.bad_length + self.bad_checksum

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        return self._drain()

    def resync(self) -> list[Frame]:
        """The line went quiet with a partial frame buffered: it will never complete.

        Drop its STX and salvage whatever complete frames the held-back bytes still contain
        (a corrupted LEN can make the decoder wait past real frames). Empties the buffer.
        """
        frames: list[Frame] = []
        while self._buf:
            self.resyncs += 1
            del self._buf[0]
            frames += self._drain()
        return frames

    def reset(self) -> None:
        self._buf.clear()

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        buf = self._buf
        while buf:
            start = buf.find(STX)
            if start < 0:
                self.discarded_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.discarded_bytes += start
                del buf[:start]
            if len(buf) < 3:
                break
            length = (buf[1] << 8) | buf[2]
            if not 1 <= length <= MAX_LEN:
                self.bad_length += 1
                del buf[0]
                continue
            end = 3 + length  # index of BCC
            if len(buf) < end + 2:
                break
            if buf[end] != bcc(buf[1:end]) or buf[end + 1] != ETX:
                self.bad_checksum += 1
                del buf[0]
                continue
            frames.append(Frame(buf[3], bytes(buf[4:end])))
            self.frames += 1
            del buf[:end + 2]
        return frames
