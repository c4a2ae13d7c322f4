"""The speaker, through ALSA's ``aplay`` in a subprocess (one per prompt).

Chosen over pyalsaaudio (benchmarks/bench_audio.py): its first sample leaves ALSA a few ms after
``play`` (p99 ~15 ms on a loaded 2-core machine, against 100 ms allowed), it needs no compiled
Python module, and a new prompt cuts the old one by ending its process — a wedged ALSA call
sits in a process we can kill, never in the terminal's own thread.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

_PROBE_TIMEOUT = 5.0
_CUT_TIMEOUT = 1.0


class AudioError(RuntimeError):
    """The device cannot be opened, or a prompt failed to play: the speaker is out of order."""


class AplaySink:
    """``play`` starts a WAV file on the ALSA PCM ``device``, cutting whatever still plays;
    ``check`` reports a playback that failed since."""

    def __init__(self, device: str = "default", *, program: str = "aplay"):
        self.device = device
        self.program = program
        self._proc: subprocess.Popen | None = None  # the prompt playing, or the last one played

    def open(self, silence: Path) -> None:
        """Play ``silence`` (a short WAV of zeros) to completion: AudioError if the device is absent."""
        exe = shutil.which(self.program)
        if exe is None:
            raise AudioError(f"{self.program} not found (install alsa-utils)")
        self.program = exe
        try:
            res = subprocess.run(self._argv(silence), stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=_PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AudioError(f"ALSA device {self.device!r} did not play within {_PROBE_TIMEOUT:g} s") from None
        except OSError as e:
            raise AudioError(f"{self.program}: {e.strerror}") from None
        if res.returncode != 0:
            raise AudioError(_why(self.device, res.stderr))

    def play(self, path: Path) -> int:
        """Start ``path``; returns the monotonic ns at which the player was running."""
        self.cut()
        try:
            self._proc = subprocess.Popen(self._argv(path), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise AudioError(f"{self.program}: {e.strerror}") from None
        return time.monotonic_ns()

    def busy(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cut(self) -> None:
        """Stop the prompt still playing, and wait for it to let go of the device."""
        p, self._proc = self._proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(_CUT_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stderr.close()

    def check(self) -> None:
        """AudioError if the last prompt ended in failure (device gone mid-play, or never opened)."""
        p = self._proc
        if p is None or p.poll() is None:
            return
        self._proc = None
        err = p.stderr.read()
        p.stderr.close()
        if p.returncode != 0:
            raise AudioError(_why(self.device, err))

    def close(self) -> None:
        self.cut()

    def _argv(self, path: Path) -> list[str]:
        return [self.program, "-q", "-D", self.device, str(path)]


def _why(device: str, stderr: str) -> str:
    last = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    return f"ALSA device {device!r}: {last[-1].strip()[:200] if last else 'aplay failed'}"

