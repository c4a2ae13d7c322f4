"""Decode rate and time of the QR chain against each library alone, on one core.

A fixed, seeded set of 640×480 virtual-camera frames per degradation level (sim.camera.LEVELS,
clean → hard) plus frames with nobody in view. Per level: the share of frames whose code
each decoder read, and ms per frame (median, p90). Libraries alone are called the way their
documentation shows, told to look for QR codes only: zxing-cpp and OpenCV on the BGR frame,
pyzbar on cv2.cvtColor grey.
Empty frames count false reads (should be 0) and show what the chain costs on nothing,
which is most of what a terminal sees.

    .venv/bin/python benchmarks/bench_decode.py [--frames N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import zxingcpp  # noqa: E402
from pyzbar import pyzbar  # noqa: E402

from drivers import qrdecode  # noqa: E402
from sim.camera import LEVELS, degraded_frame, make_background, render, sample_text  # noqa: E402

SEED = 20240611
TEXTS = 16


def _zxing_alone(frame: np.ndarray) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode)]


def _pyzbar_alone(frame: np.ndarray) -> list[str]:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return [r.data.decode("utf-8", "replace") for r in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])]


_opencv = cv2.QRCodeDetector()


def _opencv_alone(frame: np.ndarray) -> list[str]:
    text, _, _ = _opencv.detectAndDecode(frame)
    return [text] if text else []


DECODERS: dict[str, Callable[[np.ndarray], list[str]]] = {
    "chain": lambda f: qrdecode.decode(f).texts,
    "zxing-cpp": _zxing_alone,
    "pyzbar": _pyzbar_alone,
    "OpenCV": _opencv_alone,
}


def frames_for(level: str, n: int) -> list[tuple[str | None, np.ndarray]]:
    level_no = list(LEVELS).index(level) if level in LEVELS else len(LEVELS)
    if level == "empty":
        out: list[tuple[str | None, np.ndarray]] = []
        for i in range(n):
            rng = np.random.default_rng([SEED, level_no, i])
            out.append((None, render(make_background(rng, (640, 480)), None, None, (0, 0), (0, 0, 0, 0),
                                     0, LEVELS["clean"], 0, rng)))
        return out
    texts = [sample_text(np.random.default_rng([SEED, 0xC0DE, i])) for i in range(TEXTS)]
    return [(texts[i % TEXTS], degraded_frame(texts[i % TEXTS], LEVELS[level], [SEED, level_no, i]))
            for i in range(n)]


def measure(fn: Callable[[np.ndarray], list[str]], frames: list[tuple[str | None, np.ndarray]]
            ) -> tuple[int, int, list[float]]:
    """(frames read correctly, frames with a wrong or phantom text, ms per frame)."""
    good = wrong = 0
    ms = []
    for text, frame in frames:
        t0 = time.perf_counter()
        got = fn(frame)
        ms.append((time.perf_counter() - t0) * 1000)
        good += text is not None and text in got
        wrong += any(t != text for t in got)
    return good, wrong, ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150, help="frames per level (default 150)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)

    levels = [*LEVELS, "empty"]
    head = ["level", "frames"] + [f"{d} read" for d in DECODERS] + [f"{d} ms med / p90" for d in DECODERS]
    rows = []
    steps_rows = []
    ok = True
    t_start = time.perf_counter()
    for level in levels:
        frames = frames_for(level, args.frames)
        results = {name: measure(fn, frames) for name, fn in DECODERS.items()}
        n = len(frames)
        if level == "empty":
            reads = [f"{w} false" for _, w, _ in results.values()]
        else:
            reads = [f"{g / n:.0%}" + (f" ({w} wrong)" if w else "") for g, w, _ in results.values()]
        times = [f"{np.median(ms):.1f} / {np.percentile(ms, 90):.1f}" for _, _, ms in results.values()]
        rows.append([level, str(n)] + reads + times)
        found_by: dict[str, int] = {}
        for text, frame in frames:
            d = qrdecode.decode(frame)
            if text is not None and text in d.texts and d.step:
                found_by[d.step] = found_by.get(d.step, 0) + 1
        steps_rows.append([level] + [str(found_by.get(s, 0)) for s in qrdecode.STEPS])
        chain_good = results["chain"][0]
        best_single = max(results[d][0] for d in DECODERS if d != "chain")
        if level != "empty" and (chain_good < best_single or np.median(results["chain"][2]) > 25):
            ok = False

    def table(header: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

    print(f"QR decoding, 640×480 virtual-camera frames, one core (cv2 threads 1), seed {SEED}\n")
    print(table(head, rows))
    print("\nFrames read by each chain step (the first step that found the code):\n")
    print(table(["level"] + list(qrdecode.STEPS), steps_rows))
    verdict = "met" if ok else "NOT met"
    print(f"\nTargets (chain ≥ best single library at every level, median ≤ 25 ms): {verdict}; "
          f"{time.perf_counter() - t_start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
