"""Every sound the terminal may play, rendered once into a cache directory, ready to play.

    CACHE/speech/<key>.wav    espeak-ng's rendering of one sentence; <key> is a digest of the
                              text, voice, speed and espeak-ng's version, so a change to any of
                              them renders again and an unchanged sentence is never re-rendered
    CACHE/ready/<key>.wav     what the player plays: a tone, or a tone and a sentence, at one
                              volume (aplay has no volume of its own); made at start from the
                              above, those no longer wanted removed

Rendering takes about a quarter of a second per sentence: it happens when the daemon opens (the
first start renders, later ones find the files), never on the decision path. Without espeak-ng the prompts
that would be spoken are played as their tone, and the log says why.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from terminal.audio import prompts as P
from terminal.audio import tones

log = logging.getLogger(__name__)

VOICE = "cmn"
SPEED = 190            # words per minute; at its default 175 the cmn voice drawls (请通行 1.3 s)
_GAP = 0.08            # seconds between a tone and its sentence
_EDGE = (0.01, 0.06)   # seconds of quiet kept before and after a sentence (espeak-ng pads 0.3 s)
_QUIET = 0.01          # |sample| below this is silence when trimming
_RENDER_TIMEOUT = 20
MAX_SPEECH_SECONDS = 8  # a longer rendering is broken (a wrong voice spelling characters out)
MIN_SPEECH_SECONDS = 0.3


class RenderError(RuntimeError):
    pass


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV's samples as floats in [-1, 1], and its rate."""
    with wave.open(str(path)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise RenderError(f"{path}: not mono 16-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float64) / 32768.0, w.getframerate()


@dataclass(frozen=True)
class Espeak:
    """How sentences are rendered: the program, its version (part of every cache key), a runner."""
    program: str
    version: str
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run

    @classmethod
    def find(cls, program: str = "espeak-ng", run=subprocess.run) -> Espeak | None:
        path = shutil.which(program)
        if path is None:
            return None
        try:
            out = run([path, "--version"], capture_output=True, text=True, timeout=_RENDER_TIMEOUT)
        except (OSError, subprocess.SubprocessError):
            return None
        return cls(path, out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown", run)

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{text}\0{VOICE}\0{SPEED}\0{self.version}".encode()).hexdigest()[:20]

    def render(self, text: str, dest: Path) -> None:
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            res = self.run([self.program, "-v", VOICE, "-s", str(SPEED), "-w", str(tmp), text],
                           capture_output=True, text=True, timeout=_RENDER_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as e:
            raise RenderError(f"espeak-ng failed on {text!r}: {e}") from None
        if res.returncode != 0:
            raise RenderError(f"espeak-ng failed on {text!r}: {res.stderr.strip()[:200]}")
        try:
            samples, rate = wav_samples(tmp)
        except (OSError, EOFError, wave.Error, RenderError) as e:
            tmp.unlink(missing_ok=True)
            raise RenderError(f"espeak-ng wrote no usable WAV for {text!r}: {e}") from None
        tmp.unlink(missing_ok=True)
        samples = _trim(samples, rate)
        if not MIN_SPEECH_SECONDS <= len(samples) / rate <= MAX_SPEECH_SECONDS or rate != tones.RATE:
            raise RenderError(f"espeak-ng's rendering of {text!r} is {len(samples) / rate:.2f} s at "
                              f"{rate} Hz: not a sentence")
        tones.write_wav(tmp, samples, rate)
        os.replace(tmp, dest)


def _trim(samples: np.ndarray, rate: int) -> np.ndarray:
    """Without the silence before and after: a prompt's first sound is its first sample."""
    loud = np.nonzero(np.abs(samples) > _QUIET)[0]
    if not len(loud):
        return samples[:0]
    return samples[max(0, loud[0] - int(_EDGE[0] * rate)):loud[-1] + int(_EDGE[1] * rate)]


class SoundBank:
    """The ready files, by (prompt key or tone name, mode, volume)."""

    def __init__(self, cache_dir: Path, files: dict[tuple[str, str, int], Path], spoken: bool):
        self.cache_dir = cache_dir
        self._files = files
        self.spoken = spoken   # False: no espeak-ng, every prompt is its tone
        self.rendered = 0      # sentences espeak-ng rendered while building (0 on a warm cache)

    @classmethod
    def build(cls, cache_dir: Path, volumes: tuple[int, ...], espeak: Espeak | None = None,
              *, find=Espeak.find) -> SoundBank:
        """Render what is missing, write the ready files for ``volumes``; OSError if the cache
        directory cannot be written."""
        speech_dir, ready_dir = cache_dir / "speech", cache_dir / "ready"
        speech_dir.mkdir(parents=True, exist_ok=True)
        ready_dir.mkdir(exist_ok=True)
        espeak = espeak or find()
        if espeak is None:
            log.error("audio: espeak-ng not found (install it: scripts/setup does); prompts are tones only")
        speech: dict[str, np.ndarray] = {}
        rendered = 0
        keys = {p.key: espeak.key(p.text) for p in P.PROMPTS.values()} if espeak else {}
        for old in speech_dir.iterdir():  # renderings of sentences, voices or versions gone by
            if old.stem not in keys.values():
                old.unlink(missing_ok=True)
        for p in P.PROMPTS.values():
            if espeak is None:
                break
            path = speech_dir / f"{keys[p.key]}.wav"
            if not path.exists():
                try:
                    espeak.render(p.text, path)
                except RenderError as e:
                    log.error("audio: %s; %s is played as its tone", e, p.key)
                    continue
                rendered += 1
            speech[p.key] = wav_samples(path)[0]
        tone = {name: tones.tone(name) for name in tones.TONES}
        gap = np.zeros(int(_GAP * tones.RATE))
        sounds: dict[tuple[str, str], np.ndarray] = {(name, P.TONE): s for name, s in tone.items()}
        for p in P.PROMPTS.values():
            if p.key in speech:
                parts = ([tone[p.tone], gap] if p.tone else []) + [speech[p.key]]
            else:  # unspoken: its tone (a guidance line has none of its own: the review beeps)
                parts = [tone[p.tone or P.REVIEW]]
            sounds[(p.key, P.SPEECH)] = np.concatenate(parts)
        files, wanted = {}, set()
        for (name, mode), samples in sounds.items():
            for volume in set(volumes):
                data = tones.to_pcm16(samples * _gain(volume))
                path = ready_dir / f"{hashlib.sha256(data).hexdigest()[:20]}.wav"
                if not path.exists():
                    tmp = path.with_name(path.name + ".tmp")
                    with wave.open(str(tmp), "wb") as w:
                        w.setnchannels(1)
                        w.setsampwidth(2)
                        w.setframerate(tones.RATE)
                        w.writeframes(data)
                    os.replace(tmp, path)
                files[(name, mode, volume)] = path
                wanted.add(path.name)
        for stale in ready_dir.iterdir():
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
        bank = cls(cache_dir, files, spoken=espeak is not None)
        bank.rendered = rendered
        return bank

    def path(self, name: str, mode: str, volume: int) -> Path:
        """The file for a prompt key (mode speech) or a tone name (mode tone) at ``volume``."""
        return self._files[(name, mode, volume)]


def _gain(volume: int) -> float:
    """0-100 to an amplitude factor on a perceptual (squared) taper: 50 is about -12 dB."""
    return (volume / 100) ** 2
