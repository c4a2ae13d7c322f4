"""A serial scan engine's lines: bytes -> lines ended by the configured suffix, bounded.

    [prefix] text suffix        suffix CR, LF or CR LF (set on the engine, so on the terminal)

A line is everything between two suffixes. One longer than :data:`MAX_LINE` bytes (suffix
not counted) is garbage: it is dropped whole, up to and including the next suffix, without
being held in memory. What a line says (prefix, banner, noise) is :mod:`.protocol`'s business.
"""
from __future__ import annotations

SUFFIXES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
MAX_LINE = 4096  # devices.md §6: a line over 4 KiB is garbage


class LineDecoder:
    """Incremental: ``feed()`` any chunks, get the complete lines (suffix removed)."""

    def __init__(self, suffix: bytes, max_line: int = MAX_LINE):
        if suffix not in SUFFIXES.values():
            raise ValueError(f"suffix must be CR, LF or CR LF, not {suffix!r}")
        self.suffix = suffix
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop everything up to its suffix
        # Counters for status and tests: what the line has thrown at us.
        self.lines = 0
        self.long_lines = 0       # lines over max_line, dropped
        self.discarded_bytes = 0  # their bytes, suffix included
        self.resyncs = 0          # partial lines dropped by resync()

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a line (0 while skipping an over-long one)."""
        return len(self._buf)

    @property
    def in_line(self) -> bool:
        """Part of a line has come (held, or being skipped as too long)."""
        return bool(self._buf) or self._skipping

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        buf, n = self._buf, len(self.suffix)
        while True:
            end = buf.find(self.suffix)
            if end < 0:
                # A CR at the end may be the first half of a CR LF suffix: keep it.
                keep = 1 if n == 2 and buf.endswith(b"\r") else 0
                if self._skipping or len(buf) - keep > self.max_line:
                    if not self._skipping:
                        self.long_lines += 1
                        self._skipping = True
                    self.discarded_bytes += len(buf) - keep
                    del buf[:len(buf) - keep]
                return lines
            if self._skipping or end > self.max_line:
                if not self._skipping:
                    self.long_lines += 1
                self._skipping = False
                self.discarded_bytes += end + n
            else:
                lines.append(bytes(buf[:end]))
                self.lines += 1
            del buf[:end + n]

    def resync(self) -> None:
        """The line went quiet mid-line: what came so far will never be completed (the rest was
        lost), and must not be glued to the front of the next code."""
        if self._buf:
            self.resyncs += 1
            self.discarded_bytes += len(self._buf)
            self._buf.clear()
        self._skipping = False
