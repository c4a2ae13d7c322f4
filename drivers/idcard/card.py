"""The ID card's text block: parsed, cross-checked, and turned into a :class:`~drivers.cards.CardRead`.

The text block is what a ``30 01`` read returns ahead of the photo; the photo is cut off here
and never kept. A card is returned only if every field parses and the ID number's check
character and the dates agree; otherwise nothing is returned. An error names the field, never
its value: the message goes to the log and to the operator's screen.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from drivers import idnumber
from drivers.cards import CardRead, CardUnreadable

CardType = Literal["resident", "hmt_residence_permit", "foreign_permanent_resident"]

TEXT_LEN = 256
PHOTO_LEN = 1024
NO_EXPIRY = "长期"

SEXES = {"0": "未知", "1": "男", "2": "女", "9": "未说明"}

NATIONS = dict(enumerate((
    "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜",
    "满", "侗", "瑶", "白", "土家", "哈尼", "哈萨克", "傣", "黎", "傈僳",
    "佤", "畲", "高山", "拉祜", "水", "东乡", "纳西", "景颇", "柯尔克孜", "土",
    "达斡尔", "仫佬", "羌", "布朗", "撒拉", "毛南", "仡佬", "锡伯", "阿昌", "普米",
    "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安", "裕固", "京", "塔塔尔",
    "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺"), start=1))
NATIONS[97] = "其他"
NATIONS[98] = "外国血统中国籍人士"


@dataclass(frozen=True)
class IdCard:
    card_type: CardType
    name: str                  # Chinese name; a foreigner's English name if it has none
    sex: str
    birth_date: dt.date
    id_number: str             # GB 11643 number, or the foreign permanent resident card number
    valid_from: dt.date
    valid_to: dt.date | None   # None: 长期 (no expiry)
    nation: str | None = None
    address: str | None = None
    authority: str | None = None
    pass_number: str | None = None    # J: HK/Macau/Taiwan travel permit number
    issue_count: int | None = None    # J
    english_name: str | None = None   # I
    nationality: str | None = None    # I: ISO 3166 alpha-3

    def to_card_read(self) -> CardRead:
        extra = {"card_type": self.card_type}
        for key in ("nation", "address", "authority", "pass_number", "issue_count",
                    "english_name", "nationality"):
            value = getattr(self, key)
            if value is not None:
                extra[key] = str(value)
        return CardRead(kind="id_card", name=self.name, id_number=self.id_number, sex=self.sex,
                        birth_date=self.birth_date.isoformat(),
                        valid_from=self.valid_from.isoformat(),
                        valid_to=self.valid_to.isoformat() if self.valid_to else NO_EXPIRY,
                        extra=extra)


def split_read_answer(data: bytes) -> bytes:
    """The text block of a ``30 01`` answer; the photo is dropped here.

        text len (2, BE) = 256 | photo len (2, BE) = 1024 | text (256) | photo (1024)
    """
    if len(data) < 4:
        raise CardUnreadable(f"read answer too short ({len(data)} bytes)")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    if text_len != TEXT_LEN or photo_len != PHOTO_LEN or len(data) != 4 + text_len + photo_len:
        raise CardUnreadable(f"read answer has text {text_len}, photo {photo_len}, "
                             f"{len(data) - 4} bytes of data")
    return data[4:4 + TEXT_LEN]


class _Block:
    """Fields of the 256-byte UCS-2LE text block, padded with spaces."""

    def __init__(self, block: bytes):
        if len(block) != TEXT_LEN:
            raise CardUnreadable(f"text block is {len(block)} bytes, not {TEXT_LEN}")
        self._block = block

    def text(self, offset: int, size: int, what: str, *, required: bool = True) -> str:
        try:
            value = self._block[offset:offset + size].decode("utf-16-le")
        except UnicodeDecodeError:
            raise CardUnreadable(f"{what}: not UCS-2 text") from None
        value = value.rstrip(" \x00")
        if required and not value:
            raise CardUnreadable(f"{what} is empty")
        if not value.isprintable():
            raise CardUnreadable(f"{what} has control characters")
        return value

    def date(self, offset: int, what: str) -> dt.date:
        value = self.text(offset, 16, what)
        try:
            if len(value) != 8 or not value.isascii() or not value.isdigit():
                raise ValueError
            return dt.datetime.strptime(value, "%Y%m%d").date()
        except ValueError:
            raise CardUnreadable(f"{what} is not a date") from None

    def valid_to(self, valid_from: dt.date) -> dt.date | None:
        if self.text(204, 16, "valid to").startswith(NO_EXPIRY):
            return None
        valid_to = self.date(204, "valid to")
        if valid_to < valid_from:
            raise CardUnreadable("valid to is before valid from")
        return valid_to

    def sex(self, offset: int) -> str:
        code = self.text(offset, 2, "sex")
        if code not in SEXES:
            raise CardUnreadable("unknown sex code")
        return SEXES[code]


def parse_text(block: bytes) -> IdCard:
    """Parse and check a text block; raise CardUnreadable rather than return a doubtful card."""
    b = _Block(block)
    flag = b.text(248, 2, "card type", required=False)
    if flag == "":
        return _parse_resident(b)
    if flag == "J":
        return _parse_hmt_permit(b)
    if flag == "I":
        return _parse_foreign_permanent(b)
    raise CardUnreadable(f"unsupported card type {flag!r}")


def _checked_gb11643(b: _Block, birth: dt.date, sex: str, valid_from: dt.date) -> str:
    number = b.text(122, 36, "ID number")
    if not idnumber.is_valid(number):
        raise CardUnreadable("ID number fails its check character")
    if idnumber.birth_date(number) != birth:
        raise CardUnreadable("birth date differs from the ID number's")
    if sex in ("男", "女") and (int(number[16]) % 2 == 1) != (sex == "男"):
        raise CardUnreadable("sex differs from the ID number's")
    if valid_from < birth:
        raise CardUnreadable("valid from is before the birth date")
    return number


#   0 name 30 | 30 sex 2 | 32 nation 4 | 36 birth 16 | 52 address 70 | 122 ID number 36
# 158 authority 30 | 188 valid from 16 | 204 valid to 16 | 220 reserved 36 (248: flag " ")
def _parse_resident(b: _Block) -> IdCard:
    nation_code = b.text(32, 4, "nation")
    if not (nation_code.isascii() and nation_code.isdigit() and int(nation_code) in NATIONS):
        raise CardUnreadable("unknown nation code")
    sex, birth, valid_from = b.sex(30), b.date(36, "birth date"), b.date(188, "valid from")
    return IdCard(card_type="resident", name=b.text(0, 30, "name"), sex=sex, birth_date=birth,
                  id_number=_checked_gb11643(b, birth, sex, valid_from), valid_from=valid_from,
                  valid_to=b.valid_to(valid_from), nation=NATIONS[int(nation_code)],
                  address=b.text(52, 70, "address"), authority=b.text(158, 30, "authority"))


# J: as the resident card, nation reserved; 220 pass number 18 | 238 issue count 4 | 248 "J"
def _parse_hmt_permit(b: _Block) -> IdCard:
    sex, birth, valid_from = b.sex(30), b.date(36, "birth date"), b.date(188, "valid from")
    pass_number = b.text(220, 18, "pass number")
    issues = b.text(238, 4, "issue count")
    if not (pass_number.isascii() and pass_number.isalnum()):
        raise CardUnreadable("pass number is not alphanumeric")
    if not (issues.isascii() and issues.isdigit()):
        raise CardUnreadable("issue count is not a number")
    return IdCard(card_type="hmt_residence_permit", name=b.text(0, 30, "name"), sex=sex,
                  birth_date=birth, id_number=_checked_gb11643(b, birth, sex, valid_from),
                  valid_from=valid_from, valid_to=b.valid_to(valid_from),
                  address=b.text(52, 70, "address"), authority=b.text(158, 30, "authority"),
                  pass_number=pass_number, issue_count=int(issues))


# I: 0 English name 120 | 120 sex 2 | 122 card number 30 | 152 nationality 6
#    158 Chinese name 30 | 188 valid from 16 | 204 valid to 16 | 220 birth 16 | 248 "I"
def _parse_foreign_permanent(b: _Block) -> IdCard:
    english = b.text(0, 120, "English name")
    chinese = b.text(158, 30, "Chinese name", required=False)
    number = b.text(122, 30, "card number")
    nationality = b.text(152, 6, "nationality")
    if not (number.isascii() and number.isalnum() and len(number) == 15):
        raise CardUnreadable("card number is not 15 letters and digits")
    if not (nationality.isascii() and nationality.isalpha() and len(nationality) == 3):
        raise CardUnreadable("nationality is not a 3-letter code")
    birth, valid_from = b.date(220, "birth date"), b.date(188, "valid from")
    if valid_from < birth:
        raise CardUnreadable("valid from is before the birth date")
    return IdCard(card_type="foreign_permanent_resident", name=chinese or english,
                  sex=b.sex(120), birth_date=birth, id_number=number, valid_from=valid_from,
                  valid_to=b.valid_to(valid_from), english_name=english,
                  nationality=nationality)
