"""JSON from the network, parsed only within bounds (docs/protocol/hub.md, "Inbound limits").

Every parser of what the hub or the broker sends goes through :func:`loads`, so hostile input
gets a ValueError (a :class:`JsonLimitError` for a broken bound) and never anything else:

- size: more than ``max_bytes`` is not parsed at all;
- nesting: brackets are counted BEFORE ``json.loads``, whose C parser recurses per level and
  raises RecursionError (not ValueError) on ~1,000 levels — 2 KB of ``[`` would do it;
- numbers: ``NaN``/``Infinity`` and floats that overflow to infinity (``1e400``) are refused,
  so no caller meets a non-finite float.

Integers stay unbounded here (Python parses them exactly); each field is range-checked where
it is read, against :data:`MAX_SQL_INT` or :data:`MAX_UNIX_TIME`.
"""
from __future__ import annotations

import json
import math
import re

MAX_BYTES = 1 << 20   # the broker's message_size_limit: nothing larger can arrive anyway
MAX_DEPTH = 8         # the deepest document read is 3 levels (trust list, policy, data keys)
MAX_SQL_INT = 2 ** 63 - 1          # a seq is kept in an SQLite INTEGER
MAX_UNIX_TIME = 253_402_300_799    # 9999-12-31T23:59:59Z, the end of datetime's range

# A string, or an unterminated one up to the end: it always matches at its first try, so the
# scan stays linear (a pattern that could fail would rescan from every later quote: quadratic).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class JsonLimitError(ValueError):
    pass


def _depth_within(raw: bytes, max_depth: int) -> bool:
    """True if no bracket nests deeper than ``max_depth``. Strings are cut out first; each
    pass then removes the innermost level of pairs (linear, in C), so this costs
    O(max_depth · size) whatever the input. Unbalanced brackets count as too deep: json.loads
    would refuse them anyway."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    for _ in range(max_depth):
        if not brackets:
            return True
        brackets, n = _PAIR.subn(b"", brackets)
        if n == 0:
            return False
    return not brackets


def _constant(name: str):
    raise JsonLimitError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise JsonLimitError(f"number {text[:24]} overflows")
    return v


def loads(raw: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH):
    """``json.loads`` within bounds; ValueError (JsonLimitError for a bound) otherwise."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise JsonLimitError(f"{len(data)} bytes is more than {max_bytes}")
    if not _depth_within(data, max_depth):
        raise JsonLimitError(f"nested deeper than {max_depth} levels (or unbalanced)")
    return json.loads(data, parse_constant=_constant, parse_float=_finite)
