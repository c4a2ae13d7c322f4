"""Installing a verified bundle beside the running release, and the switch to it.

``releases/<version>/`` is a venv made with ``--without-pip`` (fast, and nothing from outside
the bundle): the running release's pip installs the bundle's requirements into it with
``--no-index --find-links`` — no network, only the bundle's wheels. ``.complete`` is written
last; a directory without it is what an interrupted install left and is made again.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from terminal.update import boot
from terminal.update.bundle import BundleError, extract

COMPLETE = ".complete"
PIP_TIMEOUT = 900.0


class InstallError(RuntimeError):
    pass


def release_dir(prefix: Path, version: str) -> Path:
    return prefix / "releases" / version


def is_installed(prefix: Path, version: str) -> bool:
    return (release_dir(prefix, version) / COMPLETE).exists()


def install(bundle: Path, prefix: Path, version: str, *, python: str = sys.executable) -> Path:
    """Install ``bundle`` (already verified) as releases/<version>; its directory.
    InstallError if the bundle is not that version or pip fails."""
    dest = release_dir(prefix, version)
    if is_installed(prefix, version):
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # an interrupted install
    prefix.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=prefix) as tmp:
        try:
            manifest = extract(bundle, Path(tmp))
        except BundleError as e:
            raise InstallError(str(e)) from None
        if manifest.version != version:
            raise InstallError(f"bundle holds version {manifest.version}, not {version}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _run([python, "-m", "venv", "--without-pip", str(dest)], "venv")
        _run([python, "-m", "pip", "--disable-pip-version-check", "--python", str(dest / "bin" / "python"),
              "install", "--quiet", "--no-cache-dir", "--no-index", "--find-links", str(Path(tmp) / "wheels"),
              *manifest.requirements], "pip install")
    if not (dest / "bin" / "gate-terminal").exists():
        shutil.rmtree(dest)
        raise InstallError(f"release {version} installs no gate-terminal command")
    boot.write_atomic(dest / COMPLETE, version.encode())
    return dest


def _run(cmd: list[str], what: str) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallError(f"{what}: {e}") from None
    if r.returncode != 0:
        raise InstallError(f"{what} failed: {(r.stderr or r.stdout).strip()[-300:]}")


def switch_to(prefix: Path, version: str, health_seconds: float, now: float | None = None) -> str:
    """Leave the pending marker (the launcher's rollback point), then switch ``current``.
    The version switched away from."""
    previous = boot.current_version(prefix)
    if previous is None:
        raise InstallError(f"{prefix}/current names no release to come back to")
    now = time.time() if now is None else now
    boot.write_pending(prefix, version, previous, now + health_seconds)
    boot.switch(prefix, version)
    return previous


def first_install(bundle: Path, prefix: Path, version: str, *, python: str = sys.executable) -> Path:
    """A new prefix's first release: installed and made current at once (nothing to roll back to)."""
    dest = install(bundle, prefix, version, python=python)
    boot.switch(prefix, version)
    return dest
