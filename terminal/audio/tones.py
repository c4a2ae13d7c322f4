"""Three short tones, told apart by pitch and rhythm as well as by ear for music:

    allow    two notes going up (E6, A6), 0.3 s: the familiar "ding-dong" of a pass
    deny     two long low buzzes (A3 with its odd harmonics), 0.55 s
    review   three quick mid beeps (A5), 0.4 s

Made with numpy and the ``wave`` module at the speech's sample rate, so a tone and a sentence
join into one file without resampling.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 22050          # espeak-ng's output rate
_FADE = 0.006         # seconds of fade in and out: no click at a note's edges

# (frequency Hz or 0 for a pause, seconds, harmonics: 1 = sine, 3 = sine + odd harmonics)
_NOTES: dict[str, tuple[tuple[float, float, int], ...]] = {
    "allow": ((1318.5, 0.12, 1), (0, 0.03, 1), (1760.0, 0.15, 1)),
    "deny": ((220.0, 0.22, 3), (0, 0.09, 1), (220.0, 0.22, 3)),
    "review": ((880.0, 0.08, 1), (0, 0.06, 1), (880.0, 0.08, 1), (0, 0.06, 1), (880.0, 0.08, 1)),
}
TONES = tuple(_NOTES)


def tone(name: str, rate: int = RATE) -> np.ndarray:
    """The tone's samples, float in [-1, 1]."""
    parts = []
    for freq, secs, harmonics in _NOTES[name]:
        t = np.arange(int(secs * rate)) / rate
        if not freq:
            parts.append(np.zeros_like(t))
            continue
        wave_ = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1, 2))
        fade = np.minimum(1.0, np.minimum(t, secs - t) / _FADE)
        parts.append(0.7 * wave_ / np.max(np.abs(wave_)) * fade)
    return np.concatenate(parts)


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_pcm16(samples))


def write_tone(path: Path, name: str) -> None:
    write_wav(path, tone(name))
