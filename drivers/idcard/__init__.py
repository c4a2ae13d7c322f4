"""Second-generation ID-card reader (GA/T 467 SAM module): framing -> protocol -> reader."""
from drivers.idcard.reader import IdCard, IdCardReader, parse_text

__all__ = ["IdCard", "IdCardReader", "parse_text"]
