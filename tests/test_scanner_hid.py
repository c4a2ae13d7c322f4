"""A scan engine in USB keyboard mode: recorded key-event sequences through the keymap and the
evdev reader (a stand-in device on a pipe: this machine has no /dev/uinput)."""
from __future__ import annotations

import errno
import os
import string

import pytest
from evdev import InputEvent, ecodes

from drivers.scanner import keymap
from drivers.scanner.framing import MAX_LINE
from drivers.scanner.hid import HidScanner
from drivers.scanner.keymap import KeyDecoder
from drivers.scanner.protocol import LineParser
from drivers.serial_link import LinkDown

from waiting import wait_for

EV_SYN, EV_KEY, EV_MSC = ecodes.EV_SYN, ecodes.EV_KEY, ecodes.EV_MSC

# Recorded from a keyboard-mode engine typing "Ab1!" and Enter (evtest): each key is an MSC_SCAN
# (the USB usage), the key event and a SYN_REPORT; Shift wraps the capitals and symbols.
RECORDED_Ab1 = [
    (EV_MSC, 4, 0x700E1), (EV_KEY, 42, 1), (EV_SYN, 0, 0),    # left Shift down
    (EV_MSC, 4, 0x70004), (EV_KEY, 30, 1), (EV_SYN, 0, 0),    # a
    (EV_MSC, 4, 0x70004), (EV_KEY, 30, 0), (EV_SYN, 0, 0),
    (EV_MSC, 4, 0x700E1), (EV_KEY, 42, 0), (EV_SYN, 0, 0),    # Shift up
    (EV_MSC, 4, 0x70005), (EV_KEY, 48, 1), (EV_SYN, 0, 0),    # b
    (EV_MSC, 4, 0x70005), (EV_KEY, 48, 0), (EV_SYN, 0, 0),
    (EV_MSC, 4, 0x7001E), (EV_KEY, 2, 1), (EV_SYN, 0, 0),     # 1
    (EV_MSC, 4, 0x7001E), (EV_KEY, 2, 0), (EV_SYN, 0, 0),
    (EV_MSC, 4, 0x700E5), (EV_KEY, 54, 1), (EV_SYN, 0, 0),    # right Shift down
    (EV_MSC, 4, 0x7001E), (EV_KEY, 2, 1), (EV_SYN, 0, 0),     # ! (Shift 1)
    (EV_MSC, 4, 0x7001E), (EV_KEY, 2, 0), (EV_SYN, 0, 0),
    (EV_MSC, 4, 0x700E5), (EV_KEY, 54, 0), (EV_SYN, 0, 0),
    (EV_MSC, 4, 0x70028), (EV_KEY, 28, 1), (EV_SYN, 0, 0),    # Enter
    (EV_MSC, 4, 0x70028), (EV_KEY, 28, 0), (EV_SYN, 0, 0),
]

# The US layout written from the kernel's key names (not from drivers.scanner.keymap):
# character -> (key name, Shift)
NAMED = {**{c: (f"KEY_{c.upper()}", False) for c in string.ascii_lowercase},
         **{c: (f"KEY_{c}", True) for c in string.ascii_uppercase},
         **{c: (f"KEY_{c}", False) for c in string.digits}}
for chars, names in ((")!@#$%^&*(", "0123456789"),):
    NAMED.update({c: (f"KEY_{n}", True) for c, n in zip(chars, names)})
for plain, shifted, name in [("-", "_", "MINUS"), ("=", "+", "EQUAL"), ("[", "{", "LEFTBRACE"),
                             ("]", "}", "RIGHTBRACE"), (";", ":", "SEMICOLON"), ("'", '"', "APOSTROPHE"),
                             ("`", "~", "GRAVE"), ("\\", "|", "BACKSLASH"), (",", "<", "COMMA"),
                             (".", ">", "DOT"), ("/", "?", "SLASH"), (" ", " ", "SPACE")]:
    NAMED[plain] = (f"KEY_{name}", False)
    NAMED.setdefault(shifted, (f"KEY_{name}", True))


def typed(text: str, enter: str = "KEY_ENTER") -> list[tuple[int, int, int]]:
    """The events a keyboard-mode engine sends for ``text`` and Enter."""
    out = []
    for c in text:
        name, shift = NAMED[c]
        code = ecodes.ecodes[name]
        if shift:
            out.append((EV_KEY, ecodes.KEY_LEFTSHIFT, 1))
        out += [(EV_KEY, code, 1), (EV_SYN, 0, 0), (EV_KEY, code, 0), (EV_SYN, 0, 0)]
        if shift:
            out.append((EV_KEY, ecodes.KEY_LEFTSHIFT, 0))
    code = ecodes.ecodes[enter]
    return out + [(EV_KEY, code, 1), (EV_KEY, code, 0), (EV_SYN, 0, 0)]


def decode_events(events, dec: KeyDecoder | None = None) -> list[str]:
    dec = dec or KeyDecoder()
    return [line for t, code, value in events if t == EV_KEY
            and (line := dec.feed(code, value)) is not None]


def test_keymap_constants_are_the_kernels():
    assert (keymap.EV_KEY, keymap.KEY_ENTER, keymap.KEY_KPENTER) == (ecodes.EV_KEY, ecodes.KEY_ENTER,
                                                                     ecodes.KEY_KPENTER)
    assert (keymap.KEY_LEFTSHIFT, keymap.KEY_RIGHTSHIFT, keymap.KEY_CAPSLOCK) == \
        (ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT, ecodes.KEY_CAPSLOCK)
    assert (keymap.KEY_NUMLOCK, keymap.KEY_SCROLLLOCK) == (ecodes.KEY_NUMLOCK, ecodes.KEY_SCROLLLOCK)
    keypad = {**{f"KP{d}": d for d in string.digits}, "KPDOT": ".", "KPSLASH": "/",
              "KPASTERISK": "*", "KPMINUS": "-", "KPPLUS": "+"}
    for name, char in keypad.items():
        assert keymap.US[ecodes.ecodes[f"KEY_{name}"]][0] == char


def test_recorded_sequence():
    assert decode_events(RECORDED_Ab1) == ["Ab1!"]


def test_every_printable_ascii_character_on_the_us_layout():
    text = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")
    assert decode_events(typed(text)) == [text]


def test_a_health_code_and_keypad_enter():
    code = "SDHC1:6BF/KL8Q+A$%*-.:"
    assert decode_events(typed(code) + typed("NEXT", enter="KEY_KPENTER")) == [code, "NEXT"]


def test_caps_lock_inverts_letters_only():
    caps = [(EV_KEY, ecodes.KEY_CAPSLOCK, 1), (EV_KEY, ecodes.KEY_CAPSLOCK, 0)]
    events = caps + typed("aB1!")[:-3] + caps + typed("a")
    assert decode_events(events) == ["Ab1!a"]


def test_autorepeat_is_ignored():
    events = [(EV_KEY, ecodes.KEY_A, 1), (EV_KEY, ecodes.KEY_A, 2), (EV_KEY, ecodes.KEY_A, 2),
              (EV_KEY, ecodes.KEY_A, 0)] + typed("b")
    assert decode_events(events) == ["ab"]


def test_unknown_keys_and_alt_codes_are_noise():
    dec, parser = KeyDecoder(), LineParser()
    f1 = [(EV_KEY, ecodes.KEY_F1, 1), (EV_KEY, ecodes.KEY_F1, 0)]
    alt = [(EV_KEY, ecodes.KEY_LEFTALT, 1), (EV_KEY, ecodes.KEY_KP1, 1), (EV_KEY, ecodes.KEY_KP1, 0),
           (EV_KEY, ecodes.KEY_LEFTALT, 0)]
    lines = decode_events(f1 + typed("SDHC1:X")[:-3] + alt + typed(""), dec)
    assert lines == ["\x00SDHC1:X\x001"]
    assert parser.code(lines[0]) == "1"             # what follows the last noise (no prefix)
    assert LineParser("SDHC").code(lines[0]) is None  # with a prefix: noise inside the code, garbage
    assert decode_events([(EV_KEY, ecodes.KEY_NUMLOCK, 1)] + typed("7")) == ["7"]  # locks: nothing


def test_line_of_max_length_passes_one_more_is_dropped():
    dec = KeyDecoder()
    key = [(EV_KEY, ecodes.KEY_X, 1), (EV_KEY, ecodes.KEY_X, 0)]
    enter = [(EV_KEY, ecodes.KEY_ENTER, 1)]
    assert decode_events(key * MAX_LINE + enter, dec) == ["x" * MAX_LINE]
    assert decode_events(key * (MAX_LINE + 1) + enter + typed("ok"), dec) == ["ok"]
    assert (dec.lines, dec.long_lines) == (2, 1)
    assert decode_events(key * (MAX_LINE + 9) + enter, dec) == [] and dec.long_lines == 2


def test_resync_drops_the_partial_line_and_counts_each():
    dec = KeyDecoder()
    assert dec.in_line is False
    dec.resync()                                     # nothing in hand: nothing dropped
    assert dec.resyncs == 0
    for n in (1, 2):
        decode_events(typed("half")[:-3], dec)
        assert dec.in_line is True
        dec.resync()
        assert dec.resyncs == n and dec.in_line is False
    assert decode_events(typed("whole"), dec) == ["whole"]


# --- the reader, on a stand-in input device ---------------------------------------------------

class FakeInputDevice:
    """An evdev.InputDevice as HidScanner uses it: readable through a pipe when events wait."""

    def __init__(self):
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._events: list[InputEvent] = []
        self.grabbed = True
        self.gone = False
        self.closed = False

    def fileno(self) -> int:
        return self._r

    def type(self, events) -> None:
        self._events += [InputEvent(0, 0, t, c, v) for t, c, v in events]
        os.write(self._w, b"!")

    def unplug(self) -> None:
        """Gone: readable (as the kernel wakes a reader), and every read fails ENODEV."""
        self.gone = True
        os.write(self._w, b"!")

    def read(self):
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        if not self._events:
            raise BlockingIOError
        events, self._events = self._events, []
        return iter(events)

    def ungrab(self) -> None:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def close(self) -> None:
        self.closed = True
        os.close(self._r)
        os.close(self._w)


class Plug:
    """The device node: opens a fresh FakeInputDevice while plugged in, fails like the kernel when not."""

    def __init__(self):
        self.devices: list[FakeInputDevice] = []
        self.error: OSError | None = None

    def __call__(self, path: str) -> FakeInputDevice:
        if self.error is not None:
            raise self.error
        self.devices.append(FakeInputDevice())
        return self.devices[-1]

    @property
    def current(self) -> FakeInputDevice:
        return self.devices[-1]


@pytest.fixture
def plug():
    p = Plug()
    yield p
    for d in p.devices:
        if not d.closed:
            d.close()


def test_reads_a_code_once_and_folds_repeats(plug):
    scanner = HidScanner("/dev/input/by-id/usb-engine-event-kbd", prefix="]Q1", open_device=plug)
    assert scanner.poll(0) is None and plug.current.grabbed
    plug.current.type(typed("NLS-EM20 V2.3.1") + typed("]Q1SDHC1:AB"))
    r = scanner.poll(5)
    assert r.text == "SDHC1:AB" and scanner.parser.banners == 1
    plug.current.type(typed("]Q1SDHC1:AB"))       # the engine repeats it while in view
    assert scanner.poll(0.2) is None and scanner.fold.repeats == 1
    scanner.close()
    assert plug.current.closed and not plug.current.grabbed


def test_unplug_link_down_then_reopened_after_backoff(plug):
    scanner = HidScanner("/dev/input/event7", open_device=plug, backoff_min=0.05, backoff_max=0.1)
    assert scanner.poll(0) is None
    plug.current.unplug()
    plug.error = FileNotFoundError(errno.ENOENT, "No such file or directory")
    with pytest.raises(LinkDown, match="I/O error: No such device"):
        scanner.poll(0)
    assert plug.devices[0].closed
    with pytest.raises(LinkDown, match="No such file or directory"):
        scanner.poll(0.3)
    plug.error = None

    def back():
        try:
            return scanner.poll(0) is None and scanner.opens == 2
        except LinkDown:
            return False
    wait_for(back, "the engine reopened")
    plug.current.type(typed("AFTER"))
    assert scanner.poll(5).text == "AFTER"
    scanner.close()


def test_grabbed_by_another_program_is_link_down(plug):
    plug.error = OSError(errno.EBUSY, "Device or resource busy")
    scanner = HidScanner("/dev/input/event7", open_device=plug)
    with pytest.raises(LinkDown, match="cannot open: Device or resource busy"):
        scanner.poll(0)


def test_partial_line_then_silence_is_dropped(plug):
    scanner = HidScanner("/dev/input/event7", open_device=plug, line_gap=0.1)
    scanner.poll(0)
    plug.current.type(typed("LOST")[:-3])           # its Enter never comes
    assert scanner.poll(0.3) is None and scanner.keys.resyncs == 1
    plug.current.type(typed("CODE"))
    assert scanner.poll(5).text == "CODE"
    scanner.close()
