"""GA/T 467 frames: bytes <-> frames, resynchronising on the next preamble.

    AA AA AA 96 69 | LEN_H LEN_L | payload ........ | CHK
    preamble (5)   | big-endian  | CMD PARA [data]  | XOR of LEN_H .. last payload byte
                   | LEN counts payload + CHK        |
    answers' payload is SW1 SW2 SW3 [data]; the longest legal answer (30 10) has LEN = 09 0A.

The preamble has no border (no proper prefix is also a suffix), so searching for its first
occurrence never lands in the middle of a real one.
"""
from __future__ import annotations

PREAMBLE = b"\xAA\xAA\xAA\x96\x69"
HEADER = len(PREAMBLE) + 2
MIN_LEN = 3        # CMD PARA + CHK: the shortest frame of either direction
MAX_LEN = 0x090A   # answer to 30 10 (text + photo + fingerprint)


def xor(data: bytes) -> int:
    chk = 0
    for b in data:
        chk ^= b
    return chk


def encode(payload: bytes) -> bytes:
    """Frame a payload (``CMD PARA [data]`` or ``SW1 SW2 SW3 [data]``)."""
    n = len(payload) + 1
    if not MIN_LEN <= n <= MAX_LEN:
        raise ValueError(f"payload of {len(payload)} bytes cannot be framed")
    body = n.to_bytes(2, "big") + payload
    return PREAMBLE + body + bytes([xor(body)])


class FrameDecoder:
    """Incremental decoder: ``feed()`` any chunks, get the payloads of complete good frames.

    Garbage, an impossible length or a bad checksum costs one byte: the search restarts just
    after the rejected preamble, so a frame hiding behind a broken one is still found.
    The counters are those of every card decoder (drivers.sscard.framing has the same).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        # Counters for status pages and tests: what the line has thrown at us.
        self.frames = 0
        self.discarded_bytes = 0  # bytes skipped while looking for a preamble
        self.bad_length = 0
        self.bad_checksum = 0
        self.resyncs = 0          # frame starts dropped by resync()

    @property
    def rejected(self) -> int:
        """Frames dropped for a bad length or checksum (the protocol layer retries at once
        instead of waiting for its timeout)."""
        return self.bad_length + self.bad_checksum

    def reset(self) -> None:
        """Forget everything buffered (before a new request)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        return self._drain()

    def resync(self) -> list[bytes]:
        """The line went quiet mid-frame: give up the frame in progress, rescan what follows.

        A truncated frame declares more bytes than it got, so it would swallow the next
        frame whole; after a timeout its start is dropped and any complete frame already
        buffered behind it is returned.
        """
        if self._buf:
            self.resyncs += 1
            del self._buf[:1]
        return self._drain()

    def _drain(self) -> list[bytes]:
        frames: list[bytes] = []
        buf = self._buf
        while True:
            start = buf.find(PREAMBLE)
            if start < 0:
                # Keep a tail that may be the start of a preamble split across chunks.
                keep = next((k for k in range(len(PREAMBLE) - 1, 0, -1)
                             if buf.endswith(PREAMBLE[:k])), 0)
                self.discarded_bytes += len(buf) - keep
                del buf[:len(buf) - keep]
                return frames
            self.discarded_bytes += start
            del buf[:start]
            if len(buf) < HEADER:
                return frames
            n = int.from_bytes(buf[5:7], "big")
            if not MIN_LEN <= n <= MAX_LEN:
                self.bad_length += 1
                del buf[:1]
                continue
            if len(buf) < HEADER + n:
                return frames
            body = bytes(buf[5:HEADER + n - 1])
            if xor(body) != buf[HEADER + n - 1]:
                self.bad_checksum += 1
                del buf[:1]
                continue
            frames.append(body[2:])
            self.frames += 1
            del buf[:HEADER + n]
