"""Resident ID numbers (GB 11643, ISO 7064 MOD 11-2) and the masked forms screens and logs show."""
from __future__ import annotations

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_character(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS)) % 11]


def valid_id_number(text: str) -> bool:
    return (len(text) == 18 and text[:17].isascii() and text[:17].isdigit()
            and text[17] == check_character(text[:17]))


def mask_id(text: str | None) -> str | None:
    """``370102199001011234`` → ``370102********1234``: region kept, birth date hidden."""
    if not text:
        return text
    if len(text) <= 10:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def mask_name(name: str | None) -> str | None:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``: only the first character stays."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)
