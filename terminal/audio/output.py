"""The audio thread: plays the newest prompt, cutting the one still playing.

The decide thread only drops a request into a one-slot mailbox (latest wins: a burst of
decisions never queues stale prompts) and goes on; this thread picks the sound by the
[audio] settings and the time of day, hands the ready file to the sink (aplay, or the
simulator's WAV recorder) and notes when it started. A sink that fails marks the device
``audio`` out of order (the alarm ``audio_down``) and is retried with backoff; meanwhile
prompts are dropped and everything else carries on.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, time as dtime
from pathlib import Path
from typing import Callable

import numpy as np

from drivers.audio import AudioError
from drivers.backoff import backoff_delay
from terminal.audio import prompts as P
from terminal.audio.bank import SoundBank
from terminal.audio.tones import RATE, write_wav

log = logging.getLogger(__name__)

DEVICE = "audio"     # the name in DeviceStatus (alarm audio_down)
HISTORY = 4096       # prompts remembered for the report and tests
GUIDE_REPEAT = 4.0   # s before the same camera hint is said again (the screen repeats it every 0.7 s)
_POLL = 0.1          # while a prompt plays, how often its player is checked for failure


@dataclass(frozen=True)
class Played:
    key: str               # prompt key (terminal/audio/prompts.py) or tone name
    mode: str              # speech / tone
    volume: int
    seq: int | None        # the event's seq, when it was a decision
    decided_ns: int        # monotonic ns of the decision (or the request)
    started_ns: int        # monotonic ns the sink started it

    @property
    def latency_ms(self) -> float:
        return (self.started_ns - self.decided_ns) / 1e6


def in_quiet_hours(now: dtime, start: dtime | None, end: dtime | None) -> bool:
    """Quiet from ``start`` (inclusive) to ``end`` (exclusive), across midnight if end < start."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= now < end
    return now >= start or now < end


class AudioOut:
    def __init__(self, settings, bank: SoundBank, sink, devices, *,
                 now: Callable[[], datetime] = datetime.now, rng=None):
        """``settings``: the [audio] section; ``sink``: ``open(silence)``, ``play(path) -> ns``,
        ``busy()``, ``check()``, ``close()`` (drivers/audio.py: AudioError when out of order)."""
        self.settings = settings
        self.bank = bank
        self.sink = sink
        self.devices = devices
        self._now = now
        self._rng = rng
        self._silence = bank.cache_dir / "silence.wav"
        write_wav(self._silence, np.zeros(RATE // 50))  # what opening the device plays: 20 ms
        self._cond = threading.Condition()
        self._pending: tuple[str, str, int | None, int] | None = None  # key, decision, seq, decided_ns
        self._stop = False
        self._up = False
        self._attempt = 0
        self._retry_at = 0.0
        self._history: deque[Played] = deque(maxlen=HISTORY)  # appended here, read by others
        self._history_lock = threading.Lock()
        self._guided: tuple[str | None, float] = (None, 0.0)  # camera thread only: last hint said, when
        self.dropped = 0   # requests not played: the device was out of order, or volume 0
        self._thread = threading.Thread(target=self._run, name="audio", daemon=True)

    # --- called from other threads (decide) -------------------------------------------------
    def announce(self, decision: str, reason: str, *, seq: int | None = None, gate_ok: bool = True,
                 decided_ns: int | None = None, method: str | None = None) -> None:
        """A decision's prompt; returns at once."""
        self._request(P.outcome_prompt(decision, reason, gate_ok=gate_ok, method=method), decision, seq,
                      decided_ns)

    def say(self, key: str, decided_ns: int | None = None) -> None:
        """A prompt by its key (a notice, camera guidance); always spoken."""
        self._request(key, "", None, decided_ns)

    def guide(self, key: str, now: float | None = None) -> bool:
        """Camera guidance (the camera thread): the screen repeats its hint every 0.7 s while a
        code stays unreadable, but a sentence cut and restarted that often is noise — say a hint
        when it changes, or again after GUIDE_REPEAT seconds. True if it was requested."""
        now = time.monotonic() if now is None else now
        last_key, last_at = self._guided
        if key == last_key and now - last_at < GUIDE_REPEAT:
            return False
        self._guided = (key, now)
        self.say(key)
        return True

    def _request(self, key: str, decision: str, seq: int | None, decided_ns: int | None) -> None:
        with self._cond:
            self._pending = (key, decision, seq, decided_ns or time.monotonic_ns())
            self._cond.notify()

    @property
    def history(self) -> list[Played]:
        """The prompts played, oldest first (the last HISTORY of them)."""
        with self._history_lock:
            return list(self._history)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)
        self.sink.close()

    # --- the audio thread -------------------------------------------------------------------
    def volume(self) -> int:
        s = self.settings
        quiet = in_quiet_hours(self._now().time(), s.quiet_from, s.quiet_until)
        return s.quiet_volume if quiet else s.volume

    def choose(self, key: str, decision: str) -> tuple[str, str] | None:
        """(file name, mode) for a request, or None when it is to be silent."""
        if not decision:
            return key, P.SPEECH
        mode = P.mode_for(key, decision, self.settings.modes())
        if mode == P.SILENT:
            return None
        return (key, P.SPEECH) if mode == P.SPEECH else (P.PROMPTS[key].tone or P.REVIEW, P.TONE)

    def _run(self) -> None:
        self._try_open()
        while True:
            with self._cond:
                if self._pending is None and not self._stop:
                    self._cond.wait(self._wait())
                if self._stop:
                    return
                pending, self._pending = self._pending, None
            try:
                self._step(pending)
            except Exception:  # a bug must cost one prompt, not the terminal's voice
                log.exception("audio: a prompt could not be played")

    def _wait(self) -> float:
        if not self._up:
            return max(0.01, self._retry_at - time.monotonic())
        return _POLL if self.sink.busy() else 1.0

    def _step(self, pending) -> None:
        if not self._up:
            if pending is not None:
                self.dropped += 1
            if time.monotonic() >= self._retry_at:
                self._try_open()
            return
        try:
            self.sink.check()
        except AudioError as e:
            self._down(str(e))
            return
        if pending is None:
            return
        key, decision, seq, decided_ns = pending
        chosen = self.choose(key, decision)
        volume = self.volume()
        if chosen is None or volume == 0:
            self.dropped += 1
            return
        name, mode = chosen
        try:
            started = self.sink.play(self.bank.path(name, mode, volume))
        except AudioError as e:
            self.dropped += 1
            self._down(str(e))
            return
        with self._history_lock:
            self._history.append(Played(name, mode, volume, seq, decided_ns, started))

    def _try_open(self) -> None:
        try:
            self.sink.open(self._silence)
        except AudioError as e:
            self._down(str(e))
            return
        self._up, self._attempt = True, 0
        self.devices.ok(DEVICE)

    def _down(self, why: str) -> None:
        self._up = False
        self.devices.fail(DEVICE, why)
        self._retry_at = time.monotonic() + backoff_delay(self._attempt, floor=0.5, rng=self._rng)
        self._attempt += 1


def open_audio(settings, cache_dir: Path, sink, devices, **kw) -> AudioOut:
    """The terminal's audio: the sounds rendered into ``cache_dir`` if they are not there yet
    (OSError if it cannot be written), played on ``sink`` (terminal/inputs/registry.py)."""
    bank = SoundBank.build(cache_dir, (settings.volume, settings.quiet_volume))
    return AudioOut(settings, bank, sink, devices, **kw)
