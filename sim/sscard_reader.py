"""A virtual social-security card reader (docs/protocol/devices.md §2) for
:class:`sim.serial_endpoint.SerialEndpoint`.

The reader speaks the STX framing; the card inside it answers the APDUs of EF05/EF06 of the
SSSE application. It parses frames itself rather than through ``drivers.sscard.framing``, so a
bug in the driver's framing cannot hide behind the same bug in the simulator.

    STX=02 | LEN_H LEN_L | CMD | DATA | BCC | ETX=03      LEN = 1 + len(DATA), BCC = XOR LEN_H..DATA

Line faults (garbage, split writes, truncation, silence, unplug) are the endpoint's
:class:`~sim.serial_endpoint.LineFaults`; the faults here are the reader's and the card's:
``bad_bcc_next`` (answers with a corrupted BCC), ``frame_error_next`` (answers ``3F 03`` as if
the command arrived garbled), ``remove_after_apdus`` (the card is pulled out mid-read),
``card.mute`` (the chip does not answer: ``3F 02``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")
ATR = bytes.fromhex("3B6C0000AABBCC8600000000001C")  # an arbitrary, well-formed-looking ATR


@dataclass
class VirtualSsCard:
    """The card: its four records, and how it answers APDUs (an ``ApduChannel`` itself).

    ``expiry`` is the BCD digit string as stored, so a test can store a date that is not one.
    """

    card_number: str = "A00000001"
    ss_number: str = "11010519491231002X"
    name: str = "张三"
    expiry: str = "20301231"
    mute: bool = False
    chained: bool = False   # answer with 61 xx and hand the data out through GET RESPONSE
    refuse: dict[str, int] = field(default_factory=dict)  # step ("EF06", "08"...) -> SW
    _app: bool = field(default=False, init=False, repr=False)   # SSSE selected
    _ef: int | None = field(default=None, init=False, repr=False)  # EF selected
    _rest: bytes = field(default=b"", init=False, repr=False)    # for GET RESPONSE

    def records(self) -> dict[int, dict[int, bytes]]:
        name = self.name.encode("gbk").ljust(30, b" ")
        return {
            0x05: {0x07: self.card_number.encode("ascii", "replace"),
                   0x06: bytes.fromhex(self.expiry)},
            0x06: {0x08: self.ss_number.encode("ascii", "replace"), 0x09: name},
        }

    def power_on(self) -> bytes:
        self._app, self._ef, self._rest = False, None, b""
        return ATR

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[5:]
        if cla != 0x00:
            return b"\x6e\x00"
        if ins == 0xA4:
            return self._select(p1, body)
        if ins == 0xB2 and len(apdu) == 5 and p2 == 0x00:
            return self._read(p1, apdu[4] or 256)
        if ins == 0xC0 and len(apdu) == 5:
            out, self._rest = self._rest, b""
            return out + b"\x90\x00" if out else b"\x6a\x86"
        if ins in (0xB2, 0xC0):
            return b"\x67\x00"
        return b"\x6d\x00"

    def _ok(self, data: bytes = b"") -> bytes:
        if self.chained:
            # Select: 61 xx (FCI waiting). Read: half now, 61 xx for the rest.
            if not data:
                return b"\x61\x10"
            half = len(data) // 2
            self._rest = data[half:]
            return data[:half] + bytes((0x61, len(self._rest)))
        return data + b"\x90\x00"

    def _select(self, p1: int, body: bytes) -> bytes:
        if p1 == 0x04:
            if body != SSSE_NAME:
                return b"\x6a\x82"
            if "SSSE" in self.refuse:
                return self.refuse["SSSE"].to_bytes(2, "big")
            self._app, self._ef = True, None
            return self._ok()
        if p1 == 0x02 and len(body) == 2 and body[0] == 0xEF and self._app:
            ef = f"EF{body[1]:02X}"
            if ef in self.refuse:
                return self.refuse[ef].to_bytes(2, "big")
            if body[1] in self.records():
                self._ef = body[1]
                return self._ok()
        return b"\x6a\x82"

    def _read(self, tag: int, le: int) -> bytes:
        if self._ef is None:
            return b"\x69\x86"
        if f"{tag:02X}" in self.refuse:
            return self.refuse[f"{tag:02X}"].to_bytes(2, "big")
        value = self.records()[self._ef].get(tag)
        if value is None:
            return b"\x6a\x83"
        record = bytes((tag, len(value))) + value
        if le != len(record):
            return bytes((0x6C, len(record)))
        return self._ok(record)


class VirtualSsReader:
    """The reader: frames in, frames out. Insert a card with ``card = VirtualSsCard(...)``."""

    def __init__(self, card: VirtualSsCard | None = None):
        self.card = card
        self.bad_bcc_next = 0
        self.frame_error_next = 0
        self.remove_after_apdus: int | None = None
        self._buf = bytearray()
        self._powered = False
        self.commands: list[int] = []   # CMD of every good frame received
        self.bad_frames = 0             # frames from the host that failed BCC/ETX

    def reset(self) -> None:
        self._buf.clear()
        self._powered = False

    def received(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while (start := self._buf.find(0x02)) >= 0:
            del self._buf[:start]
            if len(self._buf) < 3:
                break
            length = int.from_bytes(self._buf[1:3], "big")
            if not 1 <= length <= 512:
                del self._buf[0]
                continue
            if len(self._buf) < length + 5:
                break
            frame = bytes(self._buf[:length + 5])
            bcc = 0
            for b in frame[1:3 + length]:
                bcc ^= b
            if frame[3 + length] != bcc or frame[4 + length] != 0x03:
                self.bad_frames += 1
                del self._buf[0]
                out += self._frame(0x3F, b"\x03")
                continue
            del self._buf[:length + 5]
            self.commands.append(frame[3])
            out += self._answer(frame[3], frame[4:3 + length])
        else:  # no STX left: nothing buffered can start a frame
            self._buf.clear()
        return out

    def _answer(self, cmd: int, data: bytes) -> bytes:
        if self.frame_error_next > 0:
            self.frame_error_next -= 1
            return self._frame(0x3F, b"\x03")
        card = self.card
        if cmd == 0x31:
            return self._frame(0x31, b"\x01" if card else b"\x00")
        if cmd == 0x34:
            self._powered = False
            return self._frame(0x34)
        if cmd not in (0x32, 0x33):
            return self._frame(0x3F, b"\x03")
        if card is None:
            return self._frame(0x3F, b"\x01")
        if card.mute or (cmd == 0x33 and not self._powered):
            return self._frame(0x3F, b"\x02")
        if cmd == 0x32:
            self._powered = True
            return self._frame(0x32, card.power_on())
        if self.remove_after_apdus is not None:
            if self.remove_after_apdus <= 0:
                self.card, self.remove_after_apdus, self._powered = None, None, False
                return self._frame(0x3F, b"\x01")
            self.remove_after_apdus -= 1
        return self._frame(0x33, card.transmit(data))

    def _frame(self, cmd: int, data: bytes = b"") -> bytes:
        body = (1 + len(data)).to_bytes(2, "big") + bytes((cmd,)) + data
        bcc = 0
        for b in body:
            bcc ^= b
        if self.bad_bcc_next > 0:
            self.bad_bcc_next -= 1
            bcc ^= 0xFF
        return b"\x02" + body + bytes((bcc, 0x03))
