"""A virtual GA/T 467 SAM module: the same bytes as the real one, a card you can set, faults.

    sam = VirtualSam(resident_card(), read_delay=0)
    with SerialEndpoint(sam, kind="pty") as ep:          # sim.serial_endpoint
        reader = IdCardReader(ep.url)
        sam.card = None                                  # card taken away
        sam.bad_checksum = 2                             # next two answers corrupted
        sam.remove_during_read = "fail"                  # next read answers 41, card gone

It parses frames on its own (not with the driver's decoder) so a framing bug in the driver
cannot hide behind the same bug in the simulator. Like a real SAM it answers ``10`` to a
frame whose checksum is wrong. Run ``python -m sim.idcard_sam`` to serve one on a pty.
"""
from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

PREAMBLE = b"\xAA\xAA\xAA\x96\x69"

OK, FOUND, CHECKSUM_ERROR, LENGTH_ERROR, COMMAND_ERROR = 0x90, 0x9F, 0x10, 0x11, 0x21
NO_ITEM, READ_FAILED, FIND_FAILED, SELECT_FAILED = 0x91, 0x41, 0x80, 0x81


def _xor(data: bytes) -> int:
    chk = 0
    for b in data:
        chk ^= b
    return chk


def answer_frame(status: int, data: bytes = b"", *, corrupt: bool = False) -> bytes:
    """``AA AA AA 96 69 | LEN | 00 00 SW3 data | CHK``"""
    body = (len(data) + 4).to_bytes(2, "big") + bytes([0, 0, status]) + data
    return PREAMBLE + body + bytes([_xor(body) ^ (0xFF if corrupt else 0)])


@dataclass
class SimCard:
    """Raw field values as the card stores them (codes, ``YYYYMMDD``), so tests can also
    build cards that are wrong on purpose. ``card_type``: ``" "`` resident, ``J``, ``I``."""

    card_type: Literal[" ", "J", "I"] = " "
    name: str = "张三"
    sex: str = "1"
    nation: str = "01"
    birth: str = "19900101"
    address: str = "山东省济南市历下区泉城路1号"
    id_number: str = "370102199001011231"
    authority: str = "济南市公安局历下分局"
    valid_from: str = "20150101"
    valid_to: str = "20350101"
    pass_number: str = ""     # J
    issue_count: str = ""     # J
    english_name: str = ""    # I
    nationality: str = ""     # I
    photo: bytes = field(default_factory=lambda: os.urandom(1024))

    def text_block(self) -> bytes:
        block = bytearray(" ".encode("utf-16-le") * 128)

        def put(offset: int, size: int, value: str) -> None:
            raw = value.encode("utf-16-le")
            if len(raw) > size:
                raise ValueError(f"{value!r} does not fit in {size} bytes")
            block[offset:offset + len(raw)] = raw

        if self.card_type == "I":
            put(0, 120, self.english_name)
            put(120, 2, self.sex)
            put(122, 30, self.id_number)
            put(152, 6, self.nationality)
            put(158, 30, self.name)
            put(220, 16, self.birth)
        else:
            put(0, 30, self.name)
            put(30, 2, self.sex)
            put(36, 16, self.birth)
            put(52, 70, self.address)
            put(122, 36, self.id_number)
            put(158, 30, self.authority)
            if self.card_type == " ":
                put(32, 4, self.nation)
            else:
                put(220, 18, self.pass_number)
                put(238, 4, self.issue_count)
        put(188, 16, self.valid_from)
        put(204, 16, self.valid_to)
        put(248, 2, self.card_type)
        return bytes(block)


def resident_card(**fields) -> SimCard:
    return SimCard(**fields)


def hmt_permit_card(**fields) -> SimCard:
    """A Hong Kong/Macau/Taiwan residence permit (``J``)."""
    defaults = dict(card_type="J", name="陈大文", sex="1", nation="", birth="19850315",
                    address="广东省深圳市福田区福华路2号", id_number="810000198503150017",
                    authority="深圳市公安局", valid_from="20200601", valid_to="20250601",
                    pass_number="H12345678", issue_count="01")
    return SimCard(**{**defaults, **fields})


def foreign_card(**fields) -> SimCard:
    """A foreign permanent resident ID card (``I``)."""
    defaults = dict(card_type="I", name="史密斯", sex="1", birth="19700704", address="",
                    id_number="USA110070070401", authority="", english_name="SMITH, JOHN",
                    nationality="USA", valid_from="20180101", valid_to="20280101")
    return SimCard(**{**defaults, **fields})


RemoveMode = Literal["fail", "silent", "truncated"]


class VirtualSam:
    """The SAM module as a :class:`sim.serial_endpoint.Handler`.

    Knobs (set any time): ``card``; ``read_delay`` (s, or a (min, max) range) before the read
    answer; ``halt_after_read`` (like many modules, "find" answers 80 while an already read
    card stays on the reader); ``bad_checksum`` (next N answers leave with a wrong CHK);
    ``sam_checksum_error`` (next N commands are answered 10, as if corrupted on the way in);
    ``remove_during_read``: the next read loses the card — ``fail`` answers 41, ``silent``
    never answers, ``truncated`` stops half-way through the answer.
    """

    def __init__(self, card: SimCard | None = None, *,
                 read_delay: float | tuple[float, float] = (0.1, 0.3)):
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._card = card
        self._selected = False
        self._halted = False
        self.read_delay = read_delay
        self.halt_after_read = False
        self.bad_checksum = 0
        self.sam_checksum_error = 0
        self.remove_during_read: RemoveMode | None = None
        self.commands: list[bytes] = []   # CMD PARA of every good frame received, in order
        self.sam_id = bytes(range(16))

    @property
    def card(self) -> SimCard | None:
        return self._card

    @card.setter
    def card(self, card: SimCard | None) -> None:
        with self._lock:
            self._card = card
            self._selected = self._halted = False

    def reset(self) -> None:
        self._buf.clear()

    def received(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        for payload, good in self._frames():
            out += self._answer(payload, good)
        return out

    #   AA AA AA 96 69 | LEN_H LEN_L | CMD PARA [data] | CHK
    def _frames(self):
        buf = self._buf
        while True:
            start = buf.find(PREAMBLE)
            if start < 0:
                del buf[:max(0, len(buf) - 4)]
                return
            del buf[:start]
            if len(buf) < 7:
                return
            n = int.from_bytes(buf[5:7], "big")
            if n < 3 or n > 0x100:   # commands are short: a huge LEN is line noise
                del buf[:1]
                continue
            if len(buf) < 7 + n:
                return
            body, chk = bytes(buf[5:6 + n]), buf[6 + n]
            del buf[:7 + n]
            yield body[2:], _xor(body) == chk

    def _answer(self, payload: bytes, good: bool) -> bytes:
        if not good:
            return self._frame(CHECKSUM_ERROR)
        self.commands.append(payload[:2])
        if self.sam_checksum_error > 0:
            self.sam_checksum_error -= 1
            return self._frame(CHECKSUM_ERROR)
        if len(payload) != 2:
            return self._frame(LENGTH_ERROR)
        with self._lock:
            return self._command(payload)

    def _command(self, cmd: bytes) -> bytes:
        card = self._card
        if cmd in (b"\x10\xFF", b"\x11\xFF"):
            return self._frame(OK)
        if cmd == b"\x12\xFF":
            return self._frame(OK, self.sam_id)
        if cmd == b"\x20\x01":
            if card is None or self._halted:
                return self._frame(FIND_FAILED)
            return self._frame(FOUND, bytes(4))
        if cmd == b"\x20\x02":
            self._selected = card is not None and not self._halted
            return self._frame(OK, bytes(8)) if self._selected else self._frame(SELECT_FAILED)
        if cmd == b"\x30\x03":
            return self._frame(NO_ITEM if self._selected else READ_FAILED)
        if cmd in (b"\x30\x01", b"\x30\x10"):
            return self._read(card, fingerprint=cmd == b"\x30\x10")
        return self._frame(COMMAND_ERROR)

    def _read(self, card: SimCard | None, *, fingerprint: bool) -> bytes:
        delay = self.read_delay
        time.sleep(random.uniform(*delay) if isinstance(delay, tuple) else delay)
        if card is None or not self._selected:
            return self._frame(READ_FAILED)
        mode, self.remove_during_read = self.remove_during_read, None
        if mode is not None:
            self._card, self._selected = None, False
        if mode == "fail":
            return self._frame(READ_FAILED)
        if mode == "silent":
            return b""
        lengths = (256).to_bytes(2, "big") + (1024).to_bytes(2, "big")
        data = card.text_block() + card.photo
        if fingerprint:
            lengths += (1024).to_bytes(2, "big")
            data += os.urandom(1024)
        answer = self._frame(OK, lengths + data)
        if mode == "truncated":
            return answer[:len(answer) // 2]
        self._halted = self.halt_after_read
        return answer

    def _frame(self, status: int, data: bytes = b"") -> bytes:
        corrupt = self.bad_checksum > 0
        if corrupt:
            self.bad_checksum -= 1
        return answer_frame(status, data, corrupt=corrupt)


def main() -> None:
    import argparse
    import signal

    from sim.serial_endpoint import SerialEndpoint

    p = argparse.ArgumentParser(description="Serve a virtual ID-card SAM module")
    p.add_argument("--kind", choices=("pty", "tcp"), default="pty")
    p.add_argument("--card", choices=("resident", "J", "I", "none"), default="resident")
    args = p.parse_args()
    card = {"resident": resident_card, "J": hmt_permit_card, "I": foreign_card,
            "none": lambda: None}[args.card]()
    # SIGTERM ends like Ctrl-C, so the pty symlink and its directory are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with SerialEndpoint(VirtualSam(card), kind=args.kind) as ep:
        print(ep.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
