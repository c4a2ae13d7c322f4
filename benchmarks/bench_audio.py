"""Time from "play this prompt" to its first sample leaving the process: `aplay` in a subprocess
against pyalsaaudio in the process (docs/protocol/devices.md, Speaker: sound within 100 ms).

    .venv/bin/python benchmarks/bench_audio.py [--runs 200] [--json]

No sound card is needed: both write to ALSA's ``file`` plugin (slave ``null``) pointed at a
FIFO, and a reader thread stamps the first byte that arrives. That is the moment the samples
leave ALSA's ring buffer for the "card" — a real card adds its own period (about 10-20 ms at
the usual 1,024-frame periods) to both ways alike. Measured:

- ``aplay``: ``subprocess.Popen(["aplay", "-D", pcm, wav])`` from a process the size of the
  daemon (numpy, OpenCV, Pillow imported: fork cost grows with the parent's mappings);
- ``alsaaudio-open``: open the PCM, set it up and write the first period, per prompt;
- ``alsaaudio-held``: the PCM kept open between prompts, only the first period written.

pyalsaaudio is not a dependency of the terminal (the choice was aplay); install it by hand
(``pip install pyalsaaudio``, needs libasound2-dev) to measure it, or it is reported missing.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402,F401  the daemon's weight, so fork costs what it costs there
import numpy as np  # noqa: E402,F401
import PIL.Image  # noqa: E402,F401

from terminal.audio.tones import write_tone  # noqa: E402


class FirstByte:
    """A FIFO and a thread that stamps (monotonic ns) the first byte written into it after
    ``arm``. The thread holds the FIFO open read-write, so a player's open never blocks (an
    open that blocked inside pyalsaaudio would hold the GIL, and this thread with it)."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self._lock = threading.Lock()
        self._armed = False
        self._stamp: int | None = None
        self._got = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def arm(self) -> None:
        time.sleep(0.02)  # the last run's bytes drained (its player has exited)
        with self._lock:
            self._armed, self._stamp = True, None
            self._got.clear()

    def _read(self) -> None:
        while True:
            select.select([self._fd], [], [])
            now = time.monotonic_ns()
            os.read(self._fd, 1 << 16)
            with self._lock:
                if self._armed:
                    self._armed, self._stamp = False, now
                    self._got.set()

    def wait(self) -> int:
        if not self._got.wait(10):
            raise RuntimeError("the player never wrote")
        return self._stamp


def pcm_name(fifo: Path) -> str:
    return f"file:FILE={fifo},FORMAT=raw"


def bench_aplay(fifo: FirstByte, wav: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        fifo.arm()
        t0 = time.monotonic_ns()
        p = subprocess.Popen(["aplay", "-q", "-D", pcm_name(fifo.path), str(wav)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out.append((fifo.wait() - t0) / 1e6)
        if p.wait() != 0:
            raise RuntimeError(p.stderr.read().decode())
    return out


def _frames(wav: Path) -> tuple[bytes, int]:
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def bench_alsaaudio(fifo: FirstByte, wav: Path, runs: int, held: bool) -> list[float] | str:
    try:
        import alsaaudio
    except ImportError:
        return "pyalsaaudio not installed"
    data, rate = _frames(wav)
    period = 512

    def open_pcm():
        return alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device=pcm_name(fifo.path), channels=1, rate=rate,
                             format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period)

    out = []
    pcm = open_pcm() if held else None   # held: opened once, before any decision
    for _ in range(runs):
        fifo.arm()
        t0 = time.monotonic_ns()
        if not held:
            pcm = open_pcm()
        for i in range(0, len(data), period * 2):
            pcm.write(data[i:i + period * 2])
        out.append((fifo.wait() - t0) / 1e6)
        if held:
            pcm.drain()
        else:
            pcm.close()
    if held:
        pcm.close()
    return out


def summary(ms: list[float] | str) -> dict | str:
    if isinstance(ms, str):
        return ms
    s = sorted(ms)
    return {"runs": len(s), "p50_ms": round(statistics.median(s), 2),
            "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))], 2), "max_ms": round(s[-1], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not shutil.which("aplay"):
        print("aplay not found: install alsa-utils (scripts/setup does)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "allow.wav"
        write_tone(wav, "allow")
        fifo = FirstByte(Path(tmp) / "fifo")
        res = {"aplay": summary(bench_aplay(fifo, wav, args.runs)),
               "alsaaudio-open": summary(bench_alsaaudio(fifo, wav, args.runs, held=False)),
               "alsaaudio-held": summary(bench_alsaaudio(fifo, wav, args.runs, held=True))}
    if args.json:
        print(json.dumps(res))
    else:
        for name, r in res.items():
            print(f"{name:<15} {r if isinstance(r, str) else ', '.join(f'{k} {v}' for k, v in r.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
