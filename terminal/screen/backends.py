"""Where rendered screens go: PNG files (demos, CI), a framebuffer (the kiosk), or nowhere.

Every backend has ``size`` (the resolution to render at), ``show(image)``, ``close()`` and
``error``. ``show`` never raises for an output problem (disk full, device gone): it logs, says
why in ``error`` (None once an image gets out again) and carries on, since the gate must keep
working with a dead screen (the screen loop raises ``screen_down`` from it).
"""
from __future__ import annotations

import io
import logging
import os
import re
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Protocol

from PIL import Image

from terminal.ops.smallfile import write_atomic
from terminal.screen.framebuffer import FramebufferScreen
from terminal.screen.render import DEFAULT_SIZE

log = logging.getLogger(__name__)

KINDS = ("png", "framebuffer", "none")


class Screen(Protocol):
    size: tuple[int, int]
    error: str | None

    def show(self, image: Image.Image) -> None:
        ...

    def close(self) -> None:
        ...


class NullScreen:
    """Headless runs: images are counted and dropped."""

    error = None

    def __init__(self, size: tuple[int, int] = DEFAULT_SIZE) -> None:
        self.size = size
        self.shown = 0

    def show(self, image: Image.Image) -> None:
        self.shown += 1

    def close(self) -> None:
        pass


_NUMBERED = re.compile(r"^(\d{6,})-\d{8}-\d{6}-\d{3}\.png$")
LATEST = "latest.png"


class PngScreen:
    """Each image as ``000042-20240501-120005-123.png``, plus ``latest.png`` replaced atomically.

    At most ``keep`` numbered files stay (the oldest go first), so a long demo cannot fill a
    disk. Numbering continues after a restart from the highest number found in the directory.
    """

    def __init__(self, directory: str | os.PathLike, size: tuple[int, int] = DEFAULT_SIZE,
                 keep: int = 200) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.size = size
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)
        found = sorted((int(m.group(1)), p.name) for p in self.directory.iterdir()
                       if (m := _NUMBERED.match(p.name)))
        self._files: deque[str] = deque(name for _, name in found)
        self._next = found[-1][0] + 1 if found else 1
        self.error: str | None = None
        self._prune()

    def show(self, image: Image.Image) -> None:
        buf = io.BytesIO()
        image.save(buf, "PNG", compress_level=1)  # flat panels compress well even at level 1
        data = buf.getvalue()
        now = datetime.now()
        name = f"{self._next:06d}-{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}.png"
        try:
            write_atomic(self.directory / name, data, mode=0o644)
            write_atomic(self.directory / LATEST, data, mode=0o644)
        except OSError as e:
            if self.error is None:
                log.warning("screen %s: cannot write %s: %s", self.directory, name, e)
            self.error = f"{self.directory}: cannot write {name}: {e.strerror or e}"
            return
        self.error = None
        self._next += 1
        self._files.append(name)
        self._prune()

    def _prune(self) -> None:
        while len(self._files) > self.keep:
            old = self._files.popleft()
            try:
                (self.directory / old).unlink(missing_ok=True)
            except OSError as e:
                log.warning("screen %s: cannot remove %s: %s", self.directory, old, e)

    def close(self) -> None:
        pass


def open_screen(kind: str, path: str | None = None, width: int = DEFAULT_SIZE[0],
                height: int = DEFAULT_SIZE[1], keep: int = 200) -> Screen:
    """The backend the [screen] section names. A framebuffer says its own size; width/height are for
    the others."""
    if kind == "png":
        if not path:
            raise ValueError("screen kind png needs a path (the directory for the images)")
        return PngScreen(path, (width, height), keep)
    if kind == "framebuffer":
        return FramebufferScreen(path or "/dev/fb0")
    if kind == "none":
        return NullScreen((width, height))
    raise ValueError(f"unknown screen kind {kind!r} (one of {', '.join(KINDS)})")
