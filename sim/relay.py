"""A virtual LCUS USB relay (docs/protocol/devices.md §3) for :class:`sim.serial_endpoint.SerialEndpoint`.

It reads the 4-byte commands off the line and records every switching with its monotonic time:

    A0 | channel | 01 on / 00 off | (A0 + channel + state) & 0xFF      (no replies)

A command with a wrong sum is rejected and counted, and parsing resumes at the next A0, as the
relay's firmware does. Re-plugging powers the relay down: a contact that was closed opens.

    relay = VirtualRelay()
    with SerialEndpoint(relay) as ep:
        gate = LcusRelay(ep.url); gate.pulse(); ...
        relay.wait_for(lambda r: r.pulses and r.pulses[-1].off_at)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

HEAD = 0xA0


@dataclass
class Command:
    at: float       # time.monotonic() when the last byte arrived
    raw: bytes
    channel: int
    on: bool


@dataclass
class Pulse:
    channel: int
    on_at: float
    off_at: float | None = None   # None while the contact is closed
    power_lost: bool = False      # ended by unplugging, not by an OFF command


class VirtualRelay:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._buf = bytearray()
        self.commands: list[Command] = []
        self.pulses: list[Pulse] = []
        self.bad_checksums = 0
        self.unknown_commands = 0   # good sum, state byte neither 00 nor 01
        self.garbage_bytes = 0

    # -- the line (endpoint thread) -----------------------------------------------------------

    def received(self, data: bytes) -> bytes:
        with self._cond:
            self._buf += data
            while (start := self._buf.find(HEAD)) >= 0:
                self.garbage_bytes += start
                del self._buf[:start]
                if len(self._buf) < 4:
                    return b""
                raw = bytes(self._buf[:4])
                if sum(raw[:3]) & 0xFF != raw[3]:
                    self.bad_checksums += 1
                    del self._buf[0]
                    continue
                del self._buf[:4]
                if raw[2] > 1:
                    self.unknown_commands += 1
                    continue
                self._switch(Command(time.monotonic(), raw, raw[1], raw[2] == 1))
            self.garbage_bytes += len(self._buf)
            self._buf.clear()
            self._cond.notify_all()
        return b""

    def _switch(self, cmd: Command) -> None:
        self.commands.append(cmd)
        closed = self._closed(cmd.channel)
        if cmd.on and closed is None:
            self.pulses.append(Pulse(cmd.channel, cmd.at))
        elif not cmd.on and closed is not None:
            closed.off_at = cmd.at

    def _closed(self, channel: int) -> Pulse | None:
        for p in reversed(self.pulses):
            if p.channel == channel and p.off_at is None:
                return p
        return None

    def reset(self) -> None:
        """(Re)plugged: the relay was unpowered, every contact is open, partial input gone."""
        with self._cond:
            self._buf.clear()
            now = time.monotonic()
            for p in self.pulses:
                if p.off_at is None:
                    p.off_at, p.power_lost = now, True
            self._cond.notify_all()

    # -- the test's side ------------------------------------------------------------------------

    def is_on(self, channel: int = 1) -> bool:
        with self._cond:
            return self._closed(channel) is not None

    def wait_for(self, predicate: Callable[["VirtualRelay"], object], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` is true (checked under the lock); False on timeout."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self), timeout))
