"""A software rollout across real processes: the launcher as systemd runs it, releases in a
prefix, the hub simulator with its TUF repository over HTTPS (the broker's test CA) and rollout.

Release A (1.0.0) runs; B (1.1.0, good) is rolled out → the terminal installs it beside A,
switches, restarts into it and B reports ``good``; C (1.2.0, broken: it cannot even be imported)
is rolled out → the launcher finds it crash-looping and switches back to B by itself within
health_seconds plus a restart, B reports ``rolled_back`` and the hub halts the stage; an older
release and a release whose TUF metadata a stranger signed are refused and reported.

The fake releases are small wheels (tests/release_helpers.py): a good one's command is this
checkout's real daemon, so everything after the launcher is the code under test.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mqtt_fixtures import broker, share_group  # noqa: F401  (fixture)
from release_helpers import fake_bundle
from sim.hub import HubSim
from sim.rollout import StagePlan
from sim.tufrepo import ReleaseRepo, RepoServer, role_keys
from terminal.commands.release import install_boot
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey
from terminal.update import boot
from terminal.update.install import first_install
from terminal.update.sm2key import SM2Signer
from waiting import wait_for

HEALTH_SECONDS = 40
RESTART_SEC = 0.3


class Systemd:
    """What the unit does for the launcher: run it with a notify socket and a watchdog, and start
    it again whenever it exits (Restart=, RestartSec=). Records each process and its exit."""

    def __init__(self, cmd: list[str], workdir: Path):
        self.cmd = cmd
        self.sock_path = workdir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.exits: list[int] = []
        self.proc: subprocess.Popen | None = None
        self.log = open(workdir / "terminal.log", "wb")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True),
                         threading.Thread(target=self._listen, daemon=True)]

    def start(self) -> "Systemd":
        for t in self._threads:
            t.start()
        return self

    def _run(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path), "WATCHDOG_USEC": "4000000"}
        while not self._stop.is_set():
            self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=self.log)
            self.exits.append(self.proc.wait())
            self._stop.wait(RESTART_SEC)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                continue

    def running_release(self) -> str | None:
        """The release directory the live process runs from (its interpreter's path)."""
        p = self.proc
        if p is None or p.poll() is not None:
            return None
        try:
            argv0 = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            return None
        parts = Path(argv0).parts
        return parts[parts.index("releases") + 1] if "releases" in parts else None

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        for t in self._threads:
            t.join(60)
        self.sock.close()
        self.log.close()


@pytest.fixture
def fleet(keyset, broker, tmp_path):  # noqa: F811
    tid_cfg = (keyset / "config.toml").read_text()
    tid = tid_cfg.split('id = "')[1].split('"')[0]
    repo = ReleaseRepo(tmp_path / "repo", role_keys(keyset))
    (keyset / "tuf-root.json").write_bytes(repo.root_bytes())
    bundles = tmp_path / "bundles"
    for version, broken in (("1.0.0", False), ("1.1.0", False), ("1.2.0", True)):
        repo.add_bundle(fake_bundle(bundles, version, broken=broken), version)
    repo.publish()
    prefix = tmp_path / "prefix"
    first_install(bundles / "gate-terminal-1.0.0.tar", prefix, "1.0.0")
    launcher = install_boot(prefix, sys.executable)

    server = RepoServer(tmp_path / "repo", broker.server_cert, broker.server_key).start()
    cert, key = broker.client_cert(tid)
    (keyset / "config.toml").write_text(tid_cfg.replace("[hub]\n", f"""[hub]
broker = "{broker.url}"
ca = "{broker.ca}"
cert = "{cert}"
key = "{key}"
""") + f"""
[update]
prefix = "{prefix}"
repository = "{server.url}"
root = "tuf-root.json"
health_seconds = {HEALTH_SECONDS}
""")
    hub_cert, hub_key = broker.client_cert("hub")
    hub = HubSim(broker.url, broker.ca, hub_cert, hub_key, hub_key=load_private_key(keyset / "hub.pem"),
                 db_path=tmp_path / "hub.db", terminals={tid: load_private_key(keyset / "device.pem").public_key},
                 group=share_group(), time_interval=0).start()
    assert hub.wait_connected(30)
    systemd = Systemd([sys.executable, str(launcher), "--prefix", str(prefix), "run", "--config",
                       str(keyset / "config.toml")], tmp_path).start()
    yield {"tid": tid, "hub": hub, "repo": repo, "prefix": prefix, "systemd": systemd, "bundles": bundles,
           "log": tmp_path / "terminal.log", "config": keyset / "config.toml"}
    systemd.stop()
    hub.stop()
    server.stop()


def results(hub, version: str) -> list[str]:
    return [r.state for _, r in hub.update_results if r.version == version]


def plan(tid: str) -> list[StagePlan]:
    return [StagePlan("pilot", tids=(tid,), max_failure=0.5), StagePlan("all", percent=100)]


def test_rollout_good_then_broken_release_rolled_back_then_refusals(fleet):
    hub, prefix, systemd, tid = fleet["hub"], fleet["prefix"], fleet["systemd"], fleet["tid"]
    log = lambda: fleet["log"].read_text(errors="replace")[-3000:]  # noqa: E731
    wait_for(lambda: systemd.running_release() == "1.0.0" and "READY=1" in "".join(systemd.messages),
             "release A running and READY", timeout=60)

    # B, good: installed beside A, switched, restarted into, healthy → good
    hub.start_rollout("1.1.0", plan(tid))
    wait_for(lambda: "good" in results(hub, "1.1.0"), f"B reported good\n{log()}", timeout=120)
    assert results(hub, "1.1.0")[:2] == ["installed", "good"]
    assert systemd.running_release() == "1.1.0" and boot.current_version(prefix) == "1.1.0"
    assert 75 in systemd.exits                                # A exited for the restart into B
    assert boot.read_pending(prefix) is None and not (prefix / boot.FAILED).exists()
    wait_for(lambda: hub.rollouts.current.stage == 1, "the pilot passed")
    assert not hub.rollouts.current.halt
    # the next stage's rollout reaches B too: already running it, it answers good (once)
    wait_for(lambda: results(hub, "1.1.0") == ["installed", "good", "good"], "B answering the next stage")

    # C, broken: it crashes at import; the launcher switches back to B by itself
    hub.start_rollout("1.2.0", plan(tid))
    wait_for(lambda: boot.current_version(prefix) == "1.2.0", f"C switched to\n{log()}", timeout=120)
    switched = time.monotonic()
    wait_for(lambda: systemd.running_release() == "1.1.0" and boot.current_version(prefix) == "1.1.0",
             f"back on B\n{log()}", timeout=HEALTH_SECONDS + 30)
    assert time.monotonic() - switched < HEALTH_SECONDS + 10   # the health window plus a restart
    wait_for(lambda: "rolled_back" in results(hub, "1.2.0"), f"C reported rolled back\n{log()}", timeout=60)
    assert results(hub, "1.2.0")[:2] == ["installed", "rolled_back"]
    assert (prefix / boot.FAILED).read_text() == "1.2.0"     # the update_failed alarm's flag
    status = lambda: subprocess.run([str(prefix / "current" / "bin" / "gate-terminal"), "status", "--json",  # noqa: E731
                                     "--config", str(fleet["config"])], capture_output=True, text=True,
                                    timeout=60).stdout
    wait_for(lambda: "update_failed" in status(), "update_failed in gate-terminal status", timeout=60)
    wait_for(lambda: hub.rollouts.current.halt, "the hub halts the stage")
    assert hub.rollouts.current.stage == 0
    assert "cannot even be imported" in fleet["log"].read_text(errors="replace")
    # B may get the retained rollout of C again before the hub halts it: refused, never installed again
    assert set(results(hub, "1.2.0")[2:]) <= {"refused"}

    # C once more, not halted this time: a release rolled back here is refused, not retried
    hub.start_rollout("1.2.0", plan(tid))
    wait_for(lambda: hub.rollouts.current.halt, "C refused and halted the second time")
    assert results(hub, "1.2.0")[-1] == "refused"
    assert [r.reason for t, r in hub.update_results if r.state == "refused" and r.version == "1.2.0"][-1] == \
        "rolled back on this terminal before"
    assert boot.current_version(prefix) == "1.1.0" and systemd.running_release() == "1.1.0"

    # an older release: refused and reported, nothing installed
    hub.start_rollout("1.0.0", plan(tid))
    wait_for(lambda: "refused" in results(hub, "1.0.0"), "the older release refused")
    [refusal] = [r for _, r in hub.update_results if r.version == "1.0.0"]
    assert "older than the running 1.1.0" in refusal.reason

    # a release whose targets metadata a stranger signed: refused by TUF, reported
    repo = fleet["repo"]
    repo.add_bundle(fake_bundle(fleet["bundles"], "1.3.0"), "1.3.0")
    repo.signers["targets"] = [SM2Signer(PrivateKey.generate())]
    repo.publish()
    hub.start_rollout("1.3.0", plan(tid))
    wait_for(lambda: "refused" in results(hub, "1.3.0"), "the forged release refused")
    [forged] = [r for _, r in hub.update_results if r.version == "1.3.0"]
    assert "UnsignedMetadataError" in forged.reason
    assert not (prefix / "releases" / "1.3.0").exists()
    assert systemd.running_release() == "1.1.0"
