"""What a scan engine's line says, and which codes are new presentations.

A line (from :mod:`.framing` on a serial engine, or typed by a keyboard-mode engine) is
``[prefix] text``. The text of a code is printable: a control character, an invalid UTF-8 byte
or a key the keymap does not know is noise, never part of a code. So:

- **Noise** before a code (line noise, half a stale line) is skipped: the code is what follows
  the prefix (the first occurrence followed by clean text), or with no prefix configured the
  clean text after the last noisy character. Printable noise glued to the front of a code cannot
  be told from it without a prefix; the verifier then turns it away (no valid signature).
- **A banner** (an engine's power-on text) is a printable line without the prefix: ignored. With
  no prefix configured nothing tells a banner from a code, so configure one where engines print
  banners.
- A line with no clean text at all is **garbage**, counted and dropped.

**Repeats.** Engines send a code again every 300–1,000 ms while it stays in view. The same text
seen again within ``window`` seconds (default :data:`REPEAT_WINDOW`) of its last sighting is the
same presentation; each sighting extends the window, so a phone held there for a minute is one
presentation. Seen again only after a longer gap, it is a new presentation (and the verifier's
replay check answers it).
"""
from __future__ import annotations

REPEAT_WINDOW = 1.5  # s: the slowest engine repeat (1.0 s) plus a missed read's slack
MAX_TRACKED = 64     # distinct codes remembered at once (each for at most the window)


class LineParser:
    """Lines -> code texts; counts what it drops."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.codes = 0
        self.banners = 0   # printable lines without the prefix
        self.garbage = 0   # lines with nothing clean to read
        self.noisy = 0     # codes read from behind noise

    def code(self, line: str) -> str | None:
        """The code ``line`` carries, or None. Bytes from a serial line are decoded with
        :func:`decode` first, so an invalid byte is a noisy character like any other."""
        if self.prefix:
            start = 0
            while (at := line.find(self.prefix, start)) >= 0:
                text = _clean(line[at + len(self.prefix):])
                if text:
                    return self._found(text, noisy=at > 0)
                start = at + 1
            if line.isprintable() and line.strip(" "):
                self.banners += 1
                return None
        else:
            cut = max((i for i, c in enumerate(line) if not c.isprintable()), default=-1)
            text = _clean(line[cut + 1:])
            if text:
                return self._found(text, noisy=cut >= 0)
        if line:
            self.garbage += 1
        return None

    def _found(self, text: str, *, noisy: bool) -> str:
        self.codes += 1
        self.noisy += noisy
        return text


def decode(line: bytes) -> str:
    """A serial line as text: UTF-8, each invalid byte a (non-printable) lone surrogate."""
    return line.decode("utf-8", "surrogateescape")


def _clean(text: str) -> str | None:
    text = text.strip(" ")
    return text if text and text.isprintable() else None


class RepeatFold:
    """Folds an engine's repeats of a code still in view into one presentation."""

    def __init__(self, window: float = REPEAT_WINDOW):
        self.window = window
        self._last: dict[str, float] = {}  # text -> last sighting, oldest first
        self.repeats = 0

    def is_new(self, text: str, t: float) -> bool:
        """``text`` seen at ``t`` (seconds, monotonic): does it start a presentation?"""
        for old, seen in list(self._last.items()):
            if t - seen <= self.window:
                break
            del self._last[old]
        new = self._last.pop(text, None) is None
        if new and len(self._last) >= MAX_TRACKED:
            del self._last[next(iter(self._last))]  # the longest unseen makes room
        self._last[text] = t
        self.repeats += not new
        return new
