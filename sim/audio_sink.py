"""The simulator's speaker: ``[audio] kind = "wavfile"``, ``device = DIRECTORY``.

Every prompt the terminal plays is copied into the directory as ``NNNN-<file>.wav`` and noted
with the moment its first sample was "written" (monotonic ns) and, if a newer prompt cut it,
how much of it had played. It plays in simulated real time: a prompt is busy for its length.
``unplug()`` / ``replug()`` take the device away and give it back, like a USB speaker pulled.
"""
from __future__ import annotations

import shutil
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from drivers.audio import AudioError


@dataclass
class Recorded:
    n: int
    source: str            # the ready file's name (terminal/audio/bank.py)
    file: Path             # its copy here
    started_ns: int
    seconds: float         # its whole length
    played: float | None = None   # seconds heard before a newer prompt cut it; None: played out


class WavFileSink:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.records: list[Recorded] = []
        self.present = True
        self.opens = 0
        self._lock = threading.Lock()  # the audio thread plays; tests and the demo read

    def unplug(self) -> None:
        self.present = False

    def replug(self) -> None:
        self.present = True

    def open(self, silence: Path) -> None:
        self.opens += 1
        if not self.present:
            raise AudioError(f"no sound device at {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)

    def play(self, path: Path) -> int:
        now = time.monotonic_ns()  # the first sample: nothing comes between this and the copy
        if not self.present:
            raise AudioError(f"sound device at {self.dir} is gone")
        with wave.open(str(path)) as w:
            seconds = w.getnframes() / w.getframerate()
        with self._lock:
            self._cut(now)
            n = len(self.records) + 1
            rec = Recorded(n, path.name, self.dir / f"{n:04d}-{path.name}", now, seconds)
            self.records.append(rec)
        shutil.copyfile(path, rec.file)
        return now

    def _cut(self, now: int) -> None:
        if self.records:
            last = self.records[-1]
            heard = (now - last.started_ns) / 1e9
            if heard < last.seconds:
                last.played = heard

    def busy(self) -> bool:
        with self._lock:
            if not self.records:
                return False
            last = self.records[-1]
            return last.played is None and time.monotonic_ns() < last.started_ns + last.seconds * 1e9

    def check(self) -> None:
        if not self.present:
            raise AudioError(f"sound device at {self.dir} is gone")

    def cut(self) -> None:
        with self._lock:
            self._cut(time.monotonic_ns())

    def close(self) -> None:
        self.cut()

    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self.records)


def wav_sink(device: str) -> WavFileSink:
    """The entry point (``gate_terminal.audio_sinks``: wavfile): ``device`` is the directory."""
    return WavFileSink(device)
