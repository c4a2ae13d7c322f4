"""The hub's release repository: TUF metadata over release bundles, signed with SM2/SM3.

Layout of ``directory`` (served as is over HTTPS by :class:`RepoServer`)::

    metadata/1.root.json … N.root.json   every root version (clients walk rotations)
    metadata/timestamp.json              the only unversioned file
    metadata/K.snapshot.json, K.targets.json
    targets/<sha256>.gate-terminal-<V>.tar   (consistent snapshots: a target's name carries its hash)

Roles and keys: root has two SM2 keys and a threshold of 2 (no one root key alone can rotate
anything), targets, snapshot and timestamp one key each (terminal/update/sm2key.py).
Expiry: root a year, targets and snapshot a week, timestamp a day (``expires`` overrides, for
tests of freeze attacks). Each target's ``custom`` names the version it installs, which the
terminal checks against the file name it asked for.
"""
from __future__ import annotations

import hashlib
import http.server
import re
import shutil
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tuf.api.metadata import (Metadata, MetaFile, Role, Root, Snapshot, TargetFile, Targets,
                              Timestamp)
from tuf.api.serialization.json import JSONSerializer

from terminal.crypto.keyfiles import load_private_key, private_key_pem, write_secret
from terminal.crypto.sm2 import PrivateKey
from terminal.update.bundle import target_name
from terminal.update.sm2key import SM2Signer

ROLE_KEYS = {"root": ("tuf-root-1", "tuf-root-2"), "targets": ("tuf-targets",),
             "snapshot": ("tuf-snapshot",), "timestamp": ("tuf-timestamp",)}
LIFETIME = {"root": timedelta(days=365), "targets": timedelta(days=7), "snapshot": timedelta(days=7),
            "timestamp": timedelta(days=1)}


def role_keys(keys_dir: Path) -> dict[str, list[PrivateKey]]:
    """The repository's role keys from ``keys_dir`` (tuf-*.pem), made on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[PrivateKey]] = {}
    for role, names in ROLE_KEYS.items():
        out[role] = []
        for name in names:
            path = keys_dir / f"{name}.pem"
            if not path.exists():
                write_secret(path, private_key_pem(PrivateKey.generate()))
            out[role].append(load_private_key(path))
    return out


def _expiry(days: timedelta) -> datetime:
    return (datetime.now(timezone.utc) + days).replace(microsecond=0)


@dataclass
class ReleaseRepo:
    """A TUF repository in ``directory`` (made, or taken over from an earlier run's metadata)."""
    directory: Path
    keys: dict[str, list[PrivateKey]]
    expires: dict[str, datetime] = field(default_factory=dict)  # role → fixed expiry (tests)

    def __post_init__(self) -> None:
        self.meta_dir = self.directory / "metadata"
        self.targets_dir = self.directory / "targets"
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.signers = {role: [SM2Signer(k) for k in ks] for role, ks in self.keys.items()}
        roots = sorted(self.meta_dir.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))
        if roots:
            self.root = Metadata[Root].from_file(str(roots[-1]))
            self.targets = Metadata[Targets].from_file(str(self._latest("targets")))
            self.snapshot = Metadata[Snapshot].from_file(str(self._latest("snapshot")))
            self.timestamp = Metadata[Timestamp].from_file(str(self.meta_dir / "timestamp.json"))
            return
        root = Root(expires=self._expires("root"), consistent_snapshot=True)
        for role, signers in self.signers.items():
            for s in signers:
                root.add_key(s.public_key, role)
            root.roles[role] = Role(root.roles[role].keyids, threshold=len(signers))
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=self._expires("targets")))
        self.snapshot = Metadata(Snapshot(expires=self._expires("snapshot")))
        self.timestamp = Metadata(Timestamp(expires=self._expires("timestamp")))
        self._write("root", self.root, f"{root.version}.root.json")
        self.publish(bump=False)

    def _latest(self, role: str) -> Path:
        return max(self.meta_dir.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))

    def _expires(self, role: str) -> datetime:
        return self.expires.get(role) or _expiry(LIFETIME[role])

    def _write(self, role: str, md: Metadata, name: str) -> bytes:
        md.signatures.clear()
        for s in self.signers[role]:
            md.sign(s, append=True)
        data = md.to_bytes(JSONSerializer(compact=True))
        tmp = self.meta_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.meta_dir / name)
        return data

    def root_bytes(self, version: int = 1) -> bytes:
        """A root to provision terminals with (their trust anchor)."""
        return (self.meta_dir / f"{version}.root.json").read_bytes()

    def versions(self) -> dict[str, str]:
        """Target name → the version it installs."""
        return {name: t.unrecognized_fields.get("custom", {}).get("version")
                for name, t in self.targets.signed.targets.items()}

    def add_bundle(self, bundle: Path, version: str) -> str:
        """Copy ``bundle`` in as the target for ``version`` (published by :meth:`publish`)."""
        name = target_name(version)
        data = bundle.read_bytes()
        target = TargetFile.from_data(name, data, ["sha256"])
        target.unrecognized_fields["custom"] = {"version": version}
        shutil.copyfile(bundle, self.targets_dir / f"{target.hashes['sha256']}.{name}")
        self.targets.signed.targets[name] = target
        return name

    def publish(self, *, bump: bool = True) -> None:
        """New targets, snapshot and timestamp versions, signed and written (timestamp last)."""
        t, s = self.targets.signed, self.snapshot.signed
        t.version += bump
        t.expires = self._expires("targets")
        self._write("targets", self.targets, f"{t.version}.targets.json")
        s.version += bump
        s.expires = self._expires("snapshot")
        s.meta["targets.json"] = MetaFile(t.version)
        self._write("snapshot", self.snapshot, f"{s.version}.snapshot.json")
        self.refresh_timestamp(bump=bump)

    def refresh_timestamp(self, *, bump: bool = True) -> None:
        ts = self.timestamp.signed
        ts.version += bump
        ts.expires = self._expires("timestamp")
        ts.snapshot_meta = MetaFile(self.snapshot.signed.version)
        self._write("timestamp", self.timestamp, "timestamp.json")


BUNDLE = re.compile(r"gate-terminal-(.+)\.tar")


def publish_bundles(repo: ReleaseRepo, directory: Path) -> list[str]:
    """Add every gate-terminal-<version>.tar in ``directory`` that the repository does not hold
    yet (or holds with other bytes) and publish; the versions added."""
    added = []
    for path in sorted(directory.glob("gate-terminal-*.tar")):
        m = BUNDLE.fullmatch(path.name)
        try:
            name = target_name(m.group(1)) if m else None
        except ValueError:
            name = None
        if name is None:
            continue
        held = repo.targets.signed.targets.get(name)
        if held is not None and held.hashes["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest():
            continue
        repo.add_bundle(path, m.group(1))
        added.append(m.group(1))
    if added:
        repo.publish()
    return added


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args) -> None:  # quiet: the hub prints its own lines
        pass


class RepoServer:
    """``directory`` over HTTPS (a server certificate of the test CA) on ``host``:``port``."""

    def __init__(self, directory: Path, cert: Path, key: Path, *, host: str = "127.0.0.1", port: int = 0):
        handler = lambda *a, **kw: _Handler(*a, directory=str(directory), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://{host}:{self.httpd.server_address[1]}"
        # a short poll: stop() returns at once, not up to half a second later (the default)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="repo-https", daemon=True)

    def start(self) -> RepoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> RepoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
