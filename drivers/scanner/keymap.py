"""A keyboard-mode scan engine's key presses -> lines of text (pure: no device needed).

The engine types each code as key presses on a US layout, Shift held for capitals and symbols,
and Enter at the end. Key codes are the kernel's (``linux/input-event-codes.h``, the numbers
evdev reports). Values: 1 press, 0 release, 2 the kernel's autorepeat — ignored, since an engine
never holds a key: a repeat means a release got lost, not a character typed.

Anything that is not a character of the layout (a function key, Ctrl or Alt, which engines use
for keypad "Alt codes") becomes :data:`NOISE` in the line, a non-printable character that
:class:`drivers.scanner.protocol.LineParser` treats as line noise.
"""
from __future__ import annotations

from drivers.scanner.framing import MAX_LINE

EV_KEY = 1
KEY_ENTER, KEY_KPENTER = 28, 96
KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 42, 54
KEY_CAPSLOCK, KEY_NUMLOCK, KEY_SCROLLLOCK = 58, 69, 70
NOISE = "\x00"


# code -> (plain, with Shift), US layout: rows of consecutive codes, then single keys
_ROWS = (
    (2, "1234567890-=", "!@#$%^&*()_+"),         # KEY_1 .. KEY_EQUAL
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),         # KEY_Q .. KEY_RIGHTBRACE
    (30, "asdfghjkl;'`", "ASDFGHJKL:\"~"),        # KEY_A .. KEY_GRAVE
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),          # KEY_BACKSLASH .. KEY_SLASH
    (57, " ", " "),                               # KEY_SPACE
    # the keypad (engines that type digits there); Num Lock is assumed on
    (71, "789-456+1230.", "789-456+1230."),       # KEY_KP7 .. KEY_KPDOT
    (55, "*", "*"), (98, "/", "/"),               # KEY_KPASTERISK, KEY_KPSLASH
)
US: dict[int, tuple[str, str]] = {first + i: (p, s) for first, plain, shifted in _ROWS
                                  for i, (p, s) in enumerate(zip(plain, shifted, strict=True))}
LOCKS = (KEY_NUMLOCK, KEY_SCROLLLOCK)


class KeyDecoder:
    """Key events in, the text of each line out at Enter. Lines over ``max_line`` characters are
    dropped whole (counted), like a serial engine's."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._chars: list[str] = []
        self._too_long = False
        self._shift = {KEY_LEFTSHIFT: False, KEY_RIGHTSHIFT: False}
        self._caps = False
        self.lines = 0
        self.long_lines = 0
        self.resyncs = 0

    @property
    def in_line(self) -> bool:
        return bool(self._chars or self._too_long)

    def feed(self, code: int, value: int) -> str | None:
        """One EV_KEY event; the line's text when it was Enter, else None."""
        if code in self._shift:
            self._shift[code] = value != 0
            return None
        if value != 1:
            return None
        if code in (KEY_ENTER, KEY_KPENTER):
            line, too_long = "".join(self._chars), self._too_long
            self._chars, self._too_long = [], False
            if too_long:
                self.long_lines += 1
                return None
            self.lines += 1
            return line
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        if code in LOCKS:
            return None
        plain, shifted = US.get(code, (NOISE, NOISE))
        shift = any(self._shift.values())
        if plain.isalpha():
            shift ^= self._caps
        if len(self._chars) >= self.max_line:
            self._too_long = True
        else:
            self._chars.append(shifted if shift else plain)
        return None

    def resync(self) -> None:
        """The keys stopped mid-line: drop the partial line (its Enter was lost)."""
        if self.in_line:
            self.resyncs += 1
        self._chars, self._too_long = [], False
