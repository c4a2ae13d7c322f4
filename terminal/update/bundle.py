"""A release bundle: one tar file holding the wheels of one version of the terminal and of
every dependency, and a manifest, so that a terminal installs it with no network at all
(``pip install --no-index --find-links``)::

    manifest.json   {"name": "gate-terminal", "version": "1.4.2", "requirements": ["gate-terminal==1.4.2", "pip"]}
    wheels/*.whl

``requirements`` is what the installer asks pip for: the terminal at that version, and pip
itself (a release installs the next one with its own pip). The bundle is a TUF target
(``gate-terminal-<version>.tar``): its hash and length are signed, so it is opened only after
TUF has verified it; its members are still bounded here (names, kinds, sizes).
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from terminal.hub.wire import version_key

NAME = "gate-terminal"
MAX_BUNDLE = 1 << 30          # 1 GiB: the terminal and its wheels are ~150 MB
MAX_MEMBERS = 500
WHEEL = re.compile(r"wheels/[A-Za-z0-9_.+-]{1,200}\.whl")
REQUIREMENT = re.compile(r"[A-Za-z0-9_.-]{1,100}(==[0-9A-Za-z.+!-]{1,40})?")


class BundleError(ValueError):
    pass


def target_name(version: str) -> str:
    version_key(version)  # ValueError for anything else
    return f"{NAME}-{version}.tar"


@dataclass(frozen=True)
class Manifest:
    version: str
    requirements: tuple[str, ...]


def write_bundle(out: Path, version: str, wheels: list[Path], requirements: list[str]) -> Path:
    """``out``/gate-terminal-<version>.tar from ``wheels``; its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / target_name(version)
    manifest = json.dumps({"name": NAME, "version": version, "requirements": requirements}).encode()
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for w in sorted(wheels):
            tar.add(w, arcname=f"wheels/{w.name}")
    tmp.replace(path)
    return path


def extract(bundle: Path, dest: Path) -> Manifest:
    """Unpack ``bundle`` into ``dest`` (manifest.json, wheels/); BundleError if it is not a bundle."""
    if bundle.stat().st_size > MAX_BUNDLE:
        raise BundleError(f"bundle is over {MAX_BUNDLE >> 20} MiB")
    try:
        with tarfile.open(bundle, "r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise BundleError(f"bundle holds over {MAX_MEMBERS} files")
            for m in members:
                if not m.isfile() or not (m.name == "manifest.json" or WHEEL.fullmatch(m.name)):
                    raise BundleError(f"bundle member {m.name[:80]!r} is not manifest.json or wheels/*.whl")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"bundle does not unpack: {e}") from None
    try:
        doc = json.loads((dest / "manifest.json").read_bytes()[:1 << 16])
        version, reqs = doc["version"], doc["requirements"]
        version_key(version)
        if doc["name"] != NAME or not isinstance(reqs, list) or not reqs \
                or not all(isinstance(r, str) and REQUIREMENT.fullmatch(r) for r in reqs):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError("bundle has no valid manifest.json") from None
    return Manifest(version, tuple(reqs))


def build(checkout: Path, out: Path, version: str | None = None, *, python: str = sys.executable) -> Path:
    """Wheels of the checkout (at ``version``, else its own) and of its dependencies, and pip's.

    ``pip wheel`` builds the terminal's wheel and fetches or builds every dependency's (the
    index and pip's cache: this runs on a build machine, never on a terminal)."""
    from terminal import __version__
    with tempfile.TemporaryDirectory(prefix="gate-release-") as tmp:
        src, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        version = version or __version__
        version_key(version)
        _copy_checkout(checkout, src)
        init = src / "terminal" / "__init__.py"
        init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text()))
        _pip(python, "wheel", "--quiet", "--wheel-dir", str(wheels), str(src))
        _pip(python, "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels), "pip")
        return write_bundle(out, version, list(wheels.glob("*.whl")), [f"{NAME}=={version}", "pip"])


def _copy_checkout(checkout: Path, dest: Path) -> None:
    """The files git tracks (no venv, no state), symlinks kept as links."""
    try:
        files = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z"], check=True, capture_output=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError) as e:
        raise BundleError(f"{checkout}: not a git checkout ({e})") from None
    for name in filter(None, files):
        s, d = checkout / name, dest / name
        if not s.exists() and not s.is_symlink():
            continue  # deleted in the work tree
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            d.symlink_to(s.readlink())
        else:
            d.write_bytes(s.read_bytes())


def _pip(python: str, *args: str) -> None:
    r = subprocess.run([python, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise BundleError(f"pip {args[0]} failed: {r.stderr.strip()[-500:]}")
