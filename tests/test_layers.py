"""The import rules of docs/architecture.md, checked on every module's source with ``ast``.

Each rule names who it binds (a path prefix) and the modules they may not import (dotted
prefixes); core and crypto are held to an allow-list instead. Imports inside functions and under
``TYPE_CHECKING`` count the same as those at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

# who → modules they may not import
FORBIDDEN = [
    ("drivers/", ("terminal", "sim")),
    ("terminal/", ("sim",)),
    ("terminal/state/", ("terminal.hub", "terminal.inputs", "terminal.screen", "terminal.verifier",
                         "terminal.daemon", "terminal.housekeeping")),
    ("terminal/hub/", ("terminal.inputs", "terminal.screen", "terminal.daemon", "terminal.housekeeping")),
    ("terminal/inputs/", ("terminal.hub", "terminal.screen", "terminal.daemon", "terminal.housekeeping")),
    ("terminal/audio/", ("terminal.hub", "terminal.inputs", "terminal.screen", "terminal.state",
                         "terminal.verifier", "terminal.daemon", "terminal.housekeeping")),
    ("terminal/ops/", ("terminal.core", "terminal.state", "terminal.hub", "terminal.inputs", "terminal.screen",
                       "terminal.verifier", "terminal.daemon", "terminal.housekeeping", "terminal.config")),
]
# who → the only project modules they may import
ALLOWED = [
    ("terminal/core/", ("terminal.core", "terminal.crypto", "drivers.idnumber", "drivers.cards",
                        "drivers.qrview")),
    # systemd's credentials, and key files read as bounded regular files
    ("terminal/crypto/", ("terminal.crypto", "terminal.ops.sdnotify", "terminal.ops.smallfile")),
]
# commands are the top: only the parser (and the commands themselves) import them; the daemon
# is started by the run command and the simulator, never imported below it
ONLY_FROM = [
    ("terminal.commands", ("terminal/commands/", "terminal/cli.py")),
    ("terminal.cli", ("terminal/__main__.py",)),
    ("terminal.daemon", ("terminal/commands/run.py",)),
]
PROJECT = ("terminal", "drivers", "sim")


def imports(source: str) -> set[str]:
    """Every project module a source imports (``from terminal import config`` → terminal.config)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PROJECT}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(path: str, source: str) -> list[str]:
    """What ``source``, kept at ``path`` (relative to the repository), imports against the rules."""
    bad = []
    mods = imports(source)
    # ``from terminal.core import policy`` names terminal.core.policy: judge the longest form only
    mods = {m for m in mods if not any(o != m and o.startswith(m + ".") for o in mods)}
    for who, banned in FORBIDDEN:
        if path.startswith(who):
            bad += [f"{path} imports {m}" for m in sorted(mods) if any(_under(m, b) for b in banned)]
    for who, allowed in ALLOWED:
        if path.startswith(who):
            bad += [f"{path} imports {m}" for m in sorted(mods)
                    if not any(_under(m, a) for a in allowed)]
    for target, importers in ONLY_FROM:
        if not any(path.startswith(i) for i in importers):
            bad += [f"{path} imports {m}" for m in sorted(mods) if _under(m, target)]
    return bad


def sources():
    for top in ("terminal", "drivers"):
        for p in sorted((ROOT / top).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")


def test_every_module_keeps_to_its_layer():
    found = [v for path, src in sources() for v in violations(path, src)]
    assert found == []


def test_the_modules_are_all_there():
    """The walk sees the tree (a wrong ROOT would pass the rules on nothing)."""
    paths = {p for p, _ in sources()}
    assert {"terminal/core/policy.py", "terminal/daemon.py", "terminal/hub/bridge.py",
            "terminal/inputs/registry.py", "drivers/idnumber.py"} <= paths


@pytest.mark.parametrize("path, source", [
    ("drivers/idcard/reader.py", "from terminal.core import reasons"),
    ("drivers/cards.py", "import sim.camera"),
    ("terminal/inputs/registry.py", "def f():\n    from sim.camera import open_source"),
    ("terminal/daemon.py", "from terminal.commands.status import render"),
    ("terminal/hub/bridge.py", "from terminal.commands import usage"),
    ("terminal/state/store.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from terminal.hub import HubLink"),
    ("terminal/core/policy.py", "from terminal.state.store import Store"),
    ("terminal/core/token.py", "from terminal import config"),
    ("terminal/core/trust.py", "from terminal.ops import journal"),
    ("terminal/crypto/sm2.py", "from terminal.core import reasons"),
    ("terminal/ops/journal.py", "from terminal.state import store"),
    ("terminal/hub/link.py", "from terminal.daemon import Daemon"),
    ("terminal/core/reasons.py", "import terminal"),
    ("terminal/verifier.py", "from terminal.cli import main"),
    ("terminal/audio/output.py", "from terminal.screen import texts"),
])
def test_a_forbidden_import_is_caught(path, source):
    assert violations(path, source) != []


@pytest.mark.parametrize("path, source", [
    ("terminal/core/token.py", "from terminal.crypto.sm2 import PrivateKey\nfrom drivers.idnumber import valid_check"),
    ("terminal/core/policy.py", "from terminal.core import reasons as R"),
    ("terminal/crypto/keyfiles.py", "from terminal.ops.sdnotify import is_credential"),
    ("terminal/commands/run.py", "from terminal.daemon import Daemon\nfrom terminal.commands.usage import UsageError"),
    ("terminal/cli.py", "from terminal.commands.usage import UsageError"),
    ("terminal/daemon.py", "from drivers.cards import CardReader\nimport sqlite3"),
])
def test_an_allowed_import_passes(path, source):
    assert violations(path, source) == []
