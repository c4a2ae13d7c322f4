"""The gate relay (docs/protocol/devices.md §3): open the turnstile by closing a dry contact for a pulse.

Backends, chosen by :func:`open_relay`:

* ``lcus`` — the common LCUS USB relay (CH340) on a serial line, 9600 8N1, no replies:

      A0 | channel | 01 on / 00 off | (A0 + channel + state) & 0xFF
      channel 1: on A0 01 01 A2, off A0 01 00 A1

  A simulated relay is this backend pointed at the virtual relay's pty or ``socket://`` URL.
* ``none`` — no relay wired (a counting-only terminal): a pulse is only logged.

``pulse()`` never blocks: a worker thread switches the relay, so the daemon's event loop is
not held for the 800 ms of an opening. It returns a :class:`PulseOutcome` the caller may wait
on: the relay was switched on (the ON command left on the line), or the pulse was dropped. A
pulse asked for while the relay is on extends the opening instead of stacking a second one.
The relay is switched off at the end of every pulse, when the backend closes, at start-up (a
daemon killed mid-pulse must not leave the gate open) and after any failed write (its state is
then unknown) as soon as the line is back.

``error`` says whether the relay can be reached, as of its last contact: every command, and a
look at the idle line every :data:`PROBE_EVERY` seconds — so a relay unplugged while nobody
passes is known before the next person is let through, and one plugged back is known again
within a probe (the line reopens with the serial link's backoff). The LCUS relay never answers,
so a line that takes the command is all the host can know: a contact that does not close under
a good line (a burnt coil) is invisible here.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

from drivers.serial_link import LinkDown, SerialLink

log = logging.getLogger(__name__)

DEFAULT_PULSE_MS = 800
# The relay wants >= 100 ms between commands; 20 ms more absorbs USB-serial latency jitter
# so the relay itself sees the full 100 ms.
MIN_GAP_S = 0.12
# How often an idle relay's line is looked at: the daemon decides "gate fault" from it.
PROBE_EVERY = 0.5
_PROBE = "probe"  # the worker's third action, beside True (switch on) and False (switch off)


class PulseOutcome:
    """What became of one pulse: ``sent`` True once the relay was switched on for it, False once
    it was dropped, None while that is not known yet."""

    def __init__(self, sent: bool | None = None) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._then: list[Callable[[bool], None]] = []
        self.sent = sent
        if sent is not None:
            self._done.set()

    def settle(self, sent: bool) -> None:
        with self._lock:
            self.sent = sent
            then, self._then = self._then, []
        self._done.set()
        for fn in then:
            fn(sent)

    def then(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(sent)`` once it is known: now if it is, else on the thread that settles it
        (the relay's worker: ``fn`` must be quick and must not raise)."""
        with self._lock:
            if self.sent is None:
                self._then.append(fn)
                return
        fn(self.sent)

    def wait(self, timeout: float) -> bool | None:
        """``sent`` once known, waiting up to ``timeout`` seconds for it."""
        self._done.wait(timeout)
        return self.sent


class RelayBackend(Protocol):
    wired: bool           # False: no gate at all (a counting-only terminal)
    error: str | None     # why the relay cannot be reached, as of its last contact; None if it can

    def pulse(self, ms: int = DEFAULT_PULSE_MS) -> PulseOutcome:
        """Close the contact for ``ms`` milliseconds, without blocking the caller."""
        ...

    def close(self) -> None:
        """Switch the relay off (if it may be on) and release it."""
        ...


def lcus_command(channel: int, on: bool) -> bytes:
    head = bytes((0xA0, channel, 1 if on else 0))
    return head + bytes((sum(head) & 0xFF,))


class NoRelay:
    """No gate wired: log what would have happened."""

    wired = False
    error = None

    def __init__(self) -> None:
        self.pulses = 0

    def pulse(self, ms: int = DEFAULT_PULSE_MS) -> PulseOutcome:
        self.pulses += 1
        log.info("gate pulse of %d ms (no relay configured)", ms)
        return PulseOutcome(True)

    def close(self) -> None:
        pass


class LcusRelay:
    """LCUS relay on ``url``; one worker thread owns the serial line."""

    wired = True

    def __init__(self, url: str, channel: int = 1, *, baudrate: int = 9600,
                 close_timeout: float = 1.0):
        if not 1 <= channel <= 0xFF:
            raise ValueError(f"relay channel {channel} out of range 1..255")
        self.link = SerialLink(url, baudrate)
        self._on_cmd = lcus_command(channel, True)
        self._off_cmd = lcus_command(channel, False)
        self._close_timeout = close_timeout
        self._cond = threading.Condition()
        # State shared with the worker, guarded by _cond:
        self._pending = 0.0            # seconds of a pulse asked for, relay not on yet
        self._waiting: list[PulseOutcome] = []  # the outcomes of that pulse
        self._give_up_at = 0.0         # a pulse that cannot start by then is dropped
        self._off_at: float | None = None  # relay is on until then
        self._off_owed = True          # relay state unknown: send OFF before idling
        self._stopping = False
        self._probe_at = 0.0           # when the idle line is looked at next
        self._last_command = float("-inf")  # worker only
        self._line_ok = True                # worker only: for logging outages once
        self.pulses = 0                # pulses that switched the relay on
        self.failed_pulses = 0         # dropped: the line stayed down for a whole pulse
        # Written by the worker only (one reference assignment): read from any thread.
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"relay {url}", daemon=True)
        self._thread.start()

    def pulse(self, ms: int = DEFAULT_PULSE_MS) -> PulseOutcome:
        if ms <= 0:
            raise ValueError(f"pulse of {ms} ms")
        seconds = ms / 1000
        with self._cond:
            if self._stopping:
                log.error("gate pulse asked of a closed relay; ignored")
                return PulseOutcome(False)
            now = time.monotonic()
            if self._off_at is not None:  # on now: this opening is extended
                self._off_at = max(self._off_at, now + seconds)
                return PulseOutcome(True)
            outcome = PulseOutcome()
            self._waiting.append(outcome)
            if self._pending:
                self._pending = max(self._pending, seconds)
                self._give_up_at = max(self._give_up_at, now + seconds)
            else:
                self._pending, self._give_up_at = seconds, now + seconds
            self._cond.notify()
            return outcome

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        self.link.close()

    def _settle(self, sent: bool) -> None:
        """Under the lock: the pending pulse went out, or not."""
        waiting, self._waiting = self._waiting, []
        for outcome in waiting:
            outcome.settle(sent)

    def _next_action(self) -> bool | str | None:
        """Under the lock, wait for work: True = switch on, False = switch off, _PROBE = look at
        the idle line, None = stop."""
        while True:
            now = time.monotonic()
            if self._stopping:
                return None
            if self._off_at is not None:
                if now >= self._off_at:
                    # Off from now on: a pulse asked for while OFF is on its way is a new one.
                    self._off_at = None
                    return False
                self._cond.wait(self._off_at - now)
            elif self._pending:
                if now < self._give_up_at:
                    return True
                self._pending = 0.0
                self.failed_pulses += 1
                self._settle(False)
                log.error("gate pulse dropped: relay line %s down (%s)", self.link.url,
                          self.link.last_error)
            elif self._off_owed:
                return False
            elif now >= self._probe_at:
                return _PROBE
            else:
                self._cond.wait(self._probe_at - now)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            with self._cond:
                self._settle(False)  # asked for, never switched on
            self._final_off()  # even if the worker dies of a bug

    def _serve(self) -> None:
        while True:
            with self._cond:
                action = self._next_action()
            if action is None:
                return
            ok = self._probe() if action == _PROBE else self._send(action)
            with self._cond:
                self._probe_at = time.monotonic() + PROBE_EVERY
                if not ok:
                    # A failed write (or a line found down) leaves the relay's state unknown.
                    self._off_owed = True
                    self._cond.wait(MIN_GAP_S)
                elif action is True:
                    self._off_at = time.monotonic() + self._pending
                    self._pending = 0.0
                    self.pulses += 1
                    self._settle(True)
                elif action is False:
                    self._off_owed = False

    def _final_off(self) -> None:
        with self._cond:
            owed = self._off_owed or self._off_at is not None
        deadline = time.monotonic() + self._close_timeout
        while owed and not self._send(False):
            if time.monotonic() >= deadline:
                log.error("relay on %s may be left on: line down at close (%s)", self.link.url,
                          self.link.last_error)
                return
            time.sleep(MIN_GAP_S)

    def _send(self, on: bool) -> bool:
        wait = self._last_command + MIN_GAP_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            # The relay never answers: this read only makes a dead line show itself before the
            # command goes out (a TCP peer that went away takes a write without complaint).
            self.link.read(64, 0)
            self.link.write(self._on_cmd if on else self._off_cmd)
        except LinkDown as e:
            return self._down(f"relay {'on' if on else 'off'} failed", e)
        finally:
            self._last_command = time.monotonic()
        return self._up()

    def _probe(self) -> bool:
        """Look at the idle line without a command: a hung-up or refused line raises, a closed
        one is reopened (after the link's backoff)."""
        try:
            self.link.read(64, 0)
        except LinkDown as e:
            return self._down("relay line down", e)
        return self._up()

    def _down(self, what: str, e: LinkDown) -> bool:
        if self._line_ok:  # once per outage: the worker retries every few 100 ms
            log.warning("%s: %s", what, e)
        self._line_ok = False
        self.error = str(e)
        return False

    def _up(self) -> bool:
        if not self._line_ok:
            log.info("relay line %s is back", self.link.url)
        self._line_ok = True
        self.error = None
        return True


def open_relay(kind: str, url: str | None = None, **options) -> RelayBackend:
    """``kind`` ``lcus`` (needs ``url``) or ``none``; ``options`` go to the backend."""
    if kind == "none":
        return NoRelay()
    if kind == "lcus":
        if not url:
            raise ValueError("relay kind 'lcus' needs a serial URL")
        return LcusRelay(url, **options)
    raise ValueError(f"unknown relay kind {kind!r} (expected 'lcus' or 'none')")
