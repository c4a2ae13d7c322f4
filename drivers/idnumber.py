"""Resident ID numbers (GB 11643) and the masks personal data wears in logs and on screens.

    370102 19900101 123 4
    region birth    seq check      seq: odd = male, even = female
    check = "10X98765432"[sum(digit_i * weight_i for the first 17) % 11]   (ISO 7064 MOD 11-2)
"""
from __future__ import annotations

import datetime as dt

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def check_character(first17: str) -> str:
    """The check character for 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need exactly 17 digits")
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, WEIGHTS)) % 11]


def valid_check(number: str) -> bool:
    """18 characters, 17 digits and the right check character (upper-case X): what
    docs/protocol/token.md asks of a token's ``id_number``, nothing more."""
    if len(number) != 18 or not number[:17].isascii() or not number[:17].isdigit():
        return False
    return number[17] == check_character(number[:17])


def birth_date(number: str) -> dt.date | None:
    """The birth date an 18-character number encodes, or None if it is not a real date."""
    try:
        return dt.datetime.strptime(number[6:14], "%Y%m%d").date()
    except ValueError:
        return None


def is_valid(number: str) -> bool:
    """A check character that fits and a real birth date: what a card read must carry."""
    return valid_check(number) and birth_date(number) is not None


def mask_name(name: str) -> str:
    """``张三`` -> ``张*``: the first character, a star for each of the rest."""
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def mask_id(number: str) -> str:
    """``370102199001011234`` -> ``370102********1234``; shorter card numbers keep less."""
    n = len(number)
    head, tail = (6, 4) if n >= 15 else (n // 4, n // 4)
    return number[:head] + "*" * (n - head - tail) + number[n - tail:]


def mask_address(address: str) -> str:
    """The first six characters (at most half), then ``***``: the district, never the door."""
    if not address:
        return ""
    return address[:min(6, len(address) // 2)] + "***"
