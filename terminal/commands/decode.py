"""``gate-terminal decode [--json] IMAGE...``: run the camera's QR decoder chain on still images.

For checking a camera snapshot or a code someone says will not scan. One line per image:
with ``--json`` an object ``{"file", "texts", "ms"}`` (``"error"`` instead of ``"ms"`` when
the file cannot be read); exit status 1 if any image was unreadable or held no code.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("decode", help="decode QR codes in image files",
                              description="Decode QR codes in image files with the camera's decoder chain.")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, BMP, ... files")
    p.set_defaults(func=run)


def load_image(path: str) -> np.ndarray:
    """The image as BGR, or OSError / ValueError with a message fit for the operator."""
    import cv2
    import numpy as np

    with open(path, "rb") as f:      # FileNotFoundError, IsADirectoryError, PermissionError
        data = f.read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ValueError("not a readable image")
    return img


def _describe(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def run(args: argparse.Namespace) -> int:
    from drivers import qrdecode

    status = 0
    for path in args.images:
        try:
            img = load_image(path)
        except (OSError, ValueError) as e:
            status = 1
            why = _describe(e)
            print(json.dumps({"file": path, "texts": [], "error": why}, ensure_ascii=False)
                  if args.json else f"{path}: error: {why}", flush=True)
            continue
        result = qrdecode.decode(img)
        if not result.texts:
            status = 1
        if args.json:
            print(json.dumps({"file": path, "texts": result.texts, "ms": round(result.ms, 2)},
                             ensure_ascii=False), flush=True)
        elif result.texts:
            for text in result.texts:
                print(f"{path}: {text}  ({result.ms:.1f} ms)", flush=True)
        else:
            print(f"{path}: no code found ({result.ms:.1f} ms)", flush=True)
    return status
