"""The social-security card: the ISO 7816 APDU sequence that reads it, its records, and the
:class:`~drivers.cards.CardRead` they make (docs/protocol/devices.md §2).

Only EF05 and EF06 of the SSSE application are read: they need neither a PSAM nor a PIN.
This layer sees APDUs and responses, never the reader's framing: it works over anything with
``transmit(apdu) -> response + SW1 SW2``.

    step               APDU                                     good reply
    select SSSE        00 A4 04 00 0F "sx1.sh.社会保障" (GBK)    90 00 | 61 xx
    select EF05        00 A4 02 00 02 EF 05                     90 00 | 61 xx
    card number        00 B2 07 00 0B                           07 09 <9 ASCII>   90 00
    expiry             00 B2 06 00 06                           06 04 <BCD YYYYMMDD> 90 00
    select EF06        00 A4 02 00 02 EF 06                     90 00 | 61 xx
    SSN (= ID number)  00 B2 08 00 14                           08 12 <18 ASCII>  90 00
    name               00 B2 09 00 20                           09 1E <30 GBK, space padded> 90 00

Records are addressed by tag (P1 = tag, P2 = 00) because record numbers differ between card
generations.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from drivers import idnumber
from drivers.cards import CardRead, CardUnreadable

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")
SELECT_SSSE = bytes((0x00, 0xA4, 0x04, 0x00, len(SSSE_NAME))) + SSSE_NAME
SELECT_EF05 = bytes.fromhex("00A4020002EF05")
SELECT_EF06 = bytes.fromhex("00A4020002EF06")

TAG_EXPIRY = 0x06
TAG_CARD_NUMBER = 0x07
TAG_SSN = 0x08
TAG_NAME = 0x09
# Value lengths of the records, fixed by the card specification.
RECORD_LENGTHS = {TAG_EXPIRY: 4, TAG_CARD_NUMBER: 9, TAG_SSN: 18, TAG_NAME: 30}

SW_OK = 0x9000
_MAX_GET_RESPONSE = 4
SW_NAMES = {
    0x6281: "part of returned data may be corrupted",
    0x6283: "selected file invalidated",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def sw_name(sw: int) -> str:
    if sw in SW_NAMES:
        return SW_NAMES[sw]
    if sw >> 8 == 0x61:
        return f"{sw & 0xFF or 256} more bytes available"
    if sw >> 8 == 0x6C:
        return f"wrong Le, card has {sw & 0xFF} bytes"
    return "unknown status"


class ApduError(CardUnreadable):
    """The card refused a command: it is not a readable social-security card."""

    def __init__(self, step: str, sw: int):
        self.step = step
        self.sw = sw
        super().__init__(f"{step}: SW {sw:04X} ({sw_name(sw)})")


class ApduChannel(Protocol):
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU to the powered card; return response data + SW1 SW2."""
        ...


@dataclass(frozen=True)
class SsCardData:
    card_number: str   # 9 characters, printed on the card
    expiry: date
    ss_number: str     # 18 characters, the holder's resident ID number
    name: str

    def to_card_read(self) -> CardRead:
        # The chip has no birth date or sex record; the ID number encodes both (GB 11643:
        # digits 7-14 the birth date, digit 17 odd for men). is_valid() checked the date.
        born = idnumber.birth_date(self.ss_number)
        return CardRead(kind="ss_card", name=self.name, id_number=self.ss_number,
                        sex="男" if int(self.ss_number[16]) % 2 else "女",
                        birth_date=born.isoformat() if born else None,
                        valid_to=self.expiry.isoformat(),
                        extra={"card_number": self.card_number})


def _exchange(channel: ApduChannel, step: str, apdu: bytes) -> tuple[bytes, int]:
    reply = channel.transmit(apdu)
    if len(reply) < 2:
        raise CardUnreadable(f"{step}: reply of {len(reply)} bytes has no status word")
    return reply[:-2], (reply[-2] << 8) | reply[-1]


def select(channel: ApduChannel, step: str, apdu: bytes) -> None:
    _, sw = _exchange(channel, step, apdu)
    # 61 xx: selected, with xx bytes of FCI waiting for GET RESPONSE; we have no use for them.
    if sw != SW_OK and sw >> 8 != 0x61:
        raise ApduError(step, sw)


def read_record(channel: ApduChannel, step: str, tag: int) -> bytes:
    """READ RECORD by tag; return the value of the ``tag len value`` record."""
    length = RECORD_LENGTHS[tag]
    data, sw = _exchange(channel, step, bytes((0x00, 0xB2, tag, 0x00, 2 + length)))
    # 61 xx: the reply continues; fetch the rest with GET RESPONSE (Le = xx, 00 meaning 256).
    # Bounded: a card that keeps saying "more" must not hold the reader forever.
    for _ in range(_MAX_GET_RESPONSE):
        if sw >> 8 != 0x61:
            break
        more, sw = _exchange(channel, step, bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        data += more
    if sw != SW_OK:
        raise ApduError(step, sw)
    return parse_record(step, data, tag, length)


def parse_record(step: str, data: bytes, tag: int, length: int) -> bytes:
    """``tag len value`` → value; the tag and length must be the ones asked for."""
    if len(data) < 2 or data[0] != tag:
        raise CardUnreadable(f"{step}: record {data[:2].hex(' ')} is not tag {tag:02X}")
    if data[1] != length or len(data) != 2 + length:
        raise CardUnreadable(f"{step}: record length {data[1]} with {len(data) - 2} value bytes,"
                             f" expected {length}")
    return data[2:]


def decode_card_number(value: bytes) -> str:
    if not (value.isascii() and value.isalnum()):
        raise CardUnreadable("card number is not 9 ASCII letters/digits")
    return value.decode("ascii")


def decode_expiry(value: bytes) -> date:
    """BCD YYYYMMDD, e.g. ``20 30 12 31`` → 2030-12-31."""
    digits = value.hex()
    if not digits.isdigit():
        raise CardUnreadable("expiry is not BCD")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise CardUnreadable("expiry is not a calendar date") from None


def decode_ssn(value: bytes) -> str:
    text = value.decode("ascii", errors="replace")
    if not idnumber.is_valid(text):
        raise CardUnreadable("social security number fails the GB 11643 check")
    return text


def decode_name(value: bytes) -> str:
    try:
        # Space padded; full-width spaces and NULs are never part of a name either.
        name = value.decode("gbk").strip(" \u3000\x00")
    except UnicodeDecodeError:
        raise CardUnreadable("name is not GBK text") from None
    if not name:
        raise CardUnreadable("name is empty")
    return name


def read_card(channel: ApduChannel) -> SsCardData:
    select(channel, "select SSSE", SELECT_SSSE)
    select(channel, "select EF05", SELECT_EF05)
    card_number = decode_card_number(read_record(channel, "read card number", TAG_CARD_NUMBER))
    expiry = decode_expiry(read_record(channel, "read expiry", TAG_EXPIRY))
    select(channel, "select EF06", SELECT_EF06)
    ss_number = decode_ssn(read_record(channel, "read social security number", TAG_SSN))
    name = decode_name(read_record(channel, "read name", TAG_NAME))
    return SsCardData(card_number, expiry, ss_number, name)
