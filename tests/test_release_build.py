"""The real release bundle, built once: this checkout's wheel at the asked version, every
dependency's and pip's, resolvable with no index at all. (Installing one into a prefix, switching
and rolling back are tested with small fake wheels: tests/test_updates.py, tests/test_rollout.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from terminal.cli import main
from terminal.update.bundle import extract

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    assert main(["release", "build", "--out", str(out), "--version", "9.8.7"]) == 0
    unpacked = tmp_path_factory.mktemp("unpacked")
    return out / "gate-terminal-9.8.7.tar", extract(out / "gate-terminal-9.8.7.tar", unpacked), unpacked


def test_bundle_holds_the_terminal_at_the_asked_version(bundle):
    path, manifest, unpacked = bundle
    assert (manifest.version, manifest.requirements) == ("9.8.7", ("gate-terminal==9.8.7", "pip"))
    [wheel] = unpacked.glob("wheels/gate_terminal-*.whl")
    assert wheel.name.startswith("gate_terminal-9.8.7-")
    with zipfile.ZipFile(wheel) as z:
        assert '__version__ = "9.8.7"' in z.read("terminal/__init__.py").decode()
        assert "terminal/update/boot.py" in z.namelist()
    assert '__version__ = "9.8.7"' not in (ROOT / "terminal" / "__init__.py").read_text()  # the checkout untouched


def test_bundle_installs_with_no_index(bundle):
    _, _, unpacked = bundle
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
                        "--find-links", str(unpacked / "wheels"), "--quiet", "--report", "-",
                        "gate-terminal==9.8.7", "pip"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    names = {i["metadata"]["name"].lower().replace("_", "-") for i in json.loads(r.stdout)["install"]}
    declared = {d.split(">")[0].split("<")[0].split("=")[0].strip().lower().replace("_", "-")
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared <= names and {"gate-terminal", "pip"} <= names


def test_release_build_refuses_a_version_that_is_not_one(tmp_path, capsys):
    assert main(["release", "build", "--out", str(tmp_path), "--version", "1.0-beta"]) == 2
    assert "not a release version" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
