"""terminal.ops.smallfile.write_atomic: the one atomic write (keys, status file, installed files,
screen panels)."""
from __future__ import annotations

import os

import pytest

from terminal.ops import smallfile
from terminal.ops.smallfile import write_atomic


def test_creates_with_the_mode_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "status.json"
    write_atomic(path, b"one")
    assert path.read_bytes() == b"one" and path.stat().st_mode & 0o7777 == 0o600
    write_atomic(path, b"two", mode=0o644)
    assert path.read_bytes() == b"two" and path.stat().st_mode & 0o7777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_stale_temporary_file_gets_the_mode_too(tmp_path):
    """A temporary file left by a crash keeps its mode through O_CREAT: the chmod corrects it."""
    stale = tmp_path / ".key.pem.tmp"
    stale.write_bytes(b"old and longer")
    stale.chmod(0o666)
    write_atomic(tmp_path / "key.pem", b"secret")
    assert (tmp_path / "key.pem").read_bytes() == b"secret"
    assert (tmp_path / "key.pem").stat().st_mode & 0o7777 == 0o600
    assert not stale.exists()


@pytest.mark.parametrize("durable, syncs", [(True, 1), (False, 0)])
def test_only_a_durable_write_is_synced(tmp_path, monkeypatch, durable, syncs):
    calls = []
    real = os.fsync
    monkeypatch.setattr(smallfile.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    write_atomic(tmp_path / "f", b"x", durable=durable)
    assert len(calls) == syncs and (tmp_path / "f").read_bytes() == b"x"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "panel.png"
    target.mkdir()
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        write_atomic(target, b"new")         # a non-empty directory cannot be replaced
    assert (target / "inside").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel.png"]
