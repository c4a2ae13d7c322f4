"""The installable package: a wheel built from this tree runs ``gate-terminal install`` with no
source tree in reach; every third-party import is a declared dependency; one version number."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("terminal", "drivers", "sim")
SHIPPED = {  # in the wheel → the original in the repository
    "terminal/shipped/gate-terminal.service": "systemd/gate-terminal.service",
    "terminal/shipped/99-gate-terminal.rules": "systemd/99-gate-terminal.rules",
    "terminal/shipped/config.example.toml": "config.example.toml",
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for d in PACKAGES for p in (ROOT / d).rglob("*.py")}


def _not_source(directory: str, names: list[str]) -> set[str]:
    """What a working tree holds besides the source: caches anywhere, and the run directories
    .gitignore names at the top only (/state/, /demo-out/, /build/: terminal/state/ is source)."""
    skip = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")
    top = {"state", "demo-out", "build"} & set(names) if Path(directory) == ROOT else set()
    return set(skip(directory, names)) | top


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of this tree (links kept as links): an in-tree build would leave
    build/ behind, and stale files there would end up in later wheels."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_not_source)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                        "--wheel-dir", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = (tmp / "dist").glob("gate_terminal-*.whl")
    return whl


def test_the_wheel_holds_every_module_and_the_installed_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert modules() - names == set()
    assert set(SHIPPED) <= names
    dist_info = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names} == {*PACKAGES, *dist_info}   # nothing else at the top level


def test_install_runs_from_the_wheel_alone(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    (dist_info,) = site.glob("gate_terminal-*.dist-info")
    # The console script the wheel declares, run the way its launcher would.
    (target,) = re.findall(r"^gate-terminal\s*=\s*(\S+)$", (dist_info / "entry_points.txt").read_text(), re.M)
    module, func = target.split(":")
    code = (f"import sys, terminal, {module}; print(terminal.__file__); print(terminal.__version__); "
            f"sys.exit({module}.{func}(sys.argv[1:]))")
    # -S: no site-packages .pth files, so the editable install's finder (the source tree) is out of
    # reach; the venv's site-packages is on PYTHONPATH only for the dependencies. cwd: elsewhere.
    paths = dict.fromkeys([str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    prefix = tmp_path / "root"
    r = subprocess.run([sys.executable, "-S", "-c", code, "install", "--prefix", str(prefix)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    terminal_file, version, *out = r.stdout.splitlines()
    assert Path(terminal_file) == site / "terminal" / "__init__.py"
    assert f"Version: {version}" in (dist_info / "METADATA").read_text().splitlines()
    assert "5 changes" in out

    for installed, original, mode in (("etc/systemd/system/gate-terminal.service", "systemd/gate-terminal.service", 0o644),
                                      ("etc/udev/rules.d/99-gate-terminal.rules", "systemd/99-gate-terminal.rules", 0o644),
                                      ("etc/gate-terminal/config.toml", "config.example.toml", 0o640)):
        path = prefix / installed
        assert path.read_bytes() == (ROOT / original).read_bytes(), installed
        assert path.stat().st_mode & 0o7777 == mode, installed
    assert (prefix / "etc/gate-terminal").stat().st_mode & 0o7777 == 0o750
    assert (prefix / "usr/local/bin/gate-terminal").resolve() == (Path(sys.executable).parent / "gate-terminal").resolve()


def test_the_package_data_are_links_to_the_originals():
    # A copy in terminal/shipped/ would drift from systemd/ and config.example.toml.
    for shipped, original in SHIPPED.items():
        path = ROOT / shipped
        assert path.is_symlink() and path.resolve() == (ROOT / original).resolve(), shipped


def _imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency():
    declared = {_norm(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in pyproject()["project"]["dependencies"]}
    provided = packages_distributions()   # import name → the installed distributions providing it
    undeclared = {}
    for rel in sorted(modules()):
        for top in _imports(ROOT / rel) - set(sys.stdlib_module_names) - set(PACKAGES):
            if not {_norm(d) for d in provided.get(top, [])} & declared:
                undeclared.setdefault(top, rel)
    assert undeclared == {}


def test_the_version_is_written_once():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "terminal.__version__"}
