"""Second-generation ID-card reader (GA/T 467 SAM module): framing -> protocol -> card -> reader."""
from drivers.idcard.card import IdCard, parse_text
from drivers.idcard.reader import IdCardReader

__all__ = ["IdCard", "IdCardReader", "parse_text"]
