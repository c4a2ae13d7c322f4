"""Shared fixtures: the contract vectors (tests/vectors, a copy of the platform's), development key sets, configs."""
from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from sim.devkeys import write_key_set
from terminal import config as cfgmod
from terminal.crypto.sm2 import PrivateKey

# No wall-clock deadlines (a loaded CI core is not a failure); fixtures are reset per example
# where it matters. Individual tests raise max_examples where the input space needs it.
settings.register_profile("project", deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("project")

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"


def load_cases() -> list[dict]:
    return json.loads((VECTORS / "cases.json").read_text())


@pytest.fixture
def no_leaked_threads():
    """A test that starts device threads must stop every one of them."""
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


@pytest.fixture(autouse=True)
def _no_stale_stderr_handler():
    """`gate-terminal …` run in-process (terminal.ops.journal.setup) gives the root logger a
    handler on the test's captured stderr, which is closed when the test ends: a simulator
    thread of a later test logging through it printed a traceback into the run's output."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if type(h) is logging.StreamHandler and h not in before:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def hub_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def vector_config(tmp_path, hub_key) -> Path:
    """A config pointing at the vectors' trust list and data keys (copied: git keeps no 0600)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("data_keys.json", "issuer.pem", "revoked_issuer.pem", "stranger.pem", "root.pem"):
        shutil.copy(VECTORS / name, keys / name)
        (keys / name).chmod(0o600)
    path = keys / "config.toml"
    path.write_text(f"""
[terminal]
id = "370102-T0001-01"
venue = "mall"
state_dir = "{tmp_path / 'state'}"

[trust]
root_keys = ["{(VECTORS / 'root.pub.hex').read_text().strip()}"]
trust_list = "{VECTORS / 'trust.envelope.json'}"
data_keys = "data_keys.json"

[hub]
public_key = "{hub_key.public_key.hex()}"
""")
    return path


@pytest.fixture
def keyset(tmp_path) -> Path:
    """A fresh `sim keys` directory; its config.toml keeps state in keyset/state."""
    d = tmp_path / "keys"
    write_key_set(d)
    return d


@pytest.fixture
def keyset_config(keyset) -> cfgmod.Config:
    return cfgmod.load(keyset / "config.toml")
