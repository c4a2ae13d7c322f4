"""Small fake releases for the update tests: wheels written by hand (no build), bundles, a repository.

A fake release is a distribution named gate-terminal at some version whose ``gate-terminal``
command is either the real one from this checkout (a ``.pth`` puts the checkout and the test
venv's site-packages on its path: a "good" release, fast to install) or a module that raises
at import (a "broken" release, as a bad build would be).
"""
from __future__ import annotations

import base64
import hashlib
import site
import zipfile
from pathlib import Path

from terminal.update.bundle import write_bundle

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "raise ImportError('this release is broken: it cannot even be imported')\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(out: Path, version: str, *, broken: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    dist = f"gate_terminal-{version}.dist-info"
    entry = "gate_release_broken:main" if broken else "terminal.cli:main"
    files = {
        "gate_terminal_dev.pth": "\n".join([str(ROOT), *site.getsitepackages()]) + "\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: gate-terminal\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\ngate-terminal = {entry}\n",
    }
    if broken:
        files["gate_release_broken.py"] = BROKEN
    path = out / f"gate_terminal-{version}-py3-none-any.whl"
    record = [_record_line(n, d.encode()) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def fake_bundle(out: Path, version: str, *, broken: bool = False) -> Path:
    wheel = make_wheel(out / f"wheels-{version}", version, broken=broken)
    return write_bundle(out, version, [wheel], [f"gate-terminal=={version}"])
