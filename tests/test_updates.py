"""Software updates, piece by piece: the wire messages, SM2 in TUF and what the TUF client
refuses, bundles and side-by-side installs, the launcher's rollback, the hub's stage judge and
the health window. The whole rollout across real processes is tests/test_rollout.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, Signature

from release_helpers import fake_bundle, make_wheel
from sim.broker import CertAuthority
from sim.rollout import RolloutController, StagePlan
from sim.tufrepo import ReleaseRepo, RepoServer, role_keys
from terminal import config as cfgmod
from terminal.core.trust import EnvelopeError
from terminal.crypto.sm2 import PrivateKey
from terminal.hub import wire
from terminal.update import boot
from terminal.update.bundle import BundleError, extract, write_bundle
from terminal.update.fetch import Refused, ReleaseFetcher, Unreachable
from terminal.update.health import HealthWindow
from terminal.update.install import InstallError, first_install, install, is_installed, switch_to
from terminal.update.sm2key import SM2Key, SM2Signer
from waiting import wait_for

HUB = PrivateKey.generate()
DEVICE = PrivateKey.generate()
TID = "370102-H0001-01"


# --- wire --------------------------------------------------------------------------------

def rollout_doc(**kw) -> dict:
    doc = {"type": "rollout", "seq": 3, "version": "1.2.0",
           "stages": [{"name": "pilot", "tids": [TID]}, {"name": "all", "percent": 100}], "stage": 0, "halt": False}
    return {**doc, **kw}


def test_rollout_round_trip_and_membership():
    r = wire.Rollout(3, "1.2.0", (wire.Stage("pilot", tids=(TID,)), wire.Stage("all", percent=100)), 0, False)
    back = wire.open_rollout(wire.rollout(r, HUB), {HUB.public_key.kid(): HUB.public_key})
    assert back == r
    other = "370102-H0001-02"
    assert r.includes(TID) and not r.includes(other)          # stage 0: the pilot only
    assert r.stage_of(other) == 1
    assert wire.Rollout(4, "1.2.0", r.stages, 1, False).includes(other)   # stage 1: everyone
    assert wire.Rollout(4, "1.2.0", r.stages, 1, False).includes(TID)     # earlier stages stay in
    assert not wire.Rollout(5, "1.2.0", r.stages, 1, True).includes(TID)  # halted: nobody


def test_percent_stage_takes_the_buckets_under_it():
    tids = [f"370102-H0001-{i:02d}" for i in range(100)]
    for pct in (0, 1, 50, 100):
        r = wire.Rollout(1, "1.0.0", (wire.Stage("p", percent=pct),), 0, False)
        assert {t for t in tids if r.includes(t)} == {t for t in tids if wire.bucket(t) < pct}
    assert all(0 <= wire.bucket(t) <= 99 for t in tids)
    assert len({wire.bucket(t) for t in tids}) > 40   # spread, not all in one bucket


@pytest.mark.parametrize("change, why", [
    ({"type": "policy"}, "type: rollout"),
    ({"version": "1.2.0-rc1"}, "version"),
    ({"version": 12}, "version"),
    ({"stages": []}, "1-16 stages"),
    ({"stages": [{"name": "x", "percent": 10}] * 17}, "1-16 stages"),
    ({"stages": [{"name": "x", "percent": 101}]}, "percent"),
    ({"stages": [{"name": "x", "percent": -1}]}, "percent"),
    ({"stages": [{"name": "x", "percent": True}]}, "percent"),
    ({"stages": [{"name": "x", "percent": 5, "tids": []}]}, "either tids or percent"),
    ({"stages": [{"name": "x"}]}, "either tids or percent"),
    ({"stages": [{"name": "", "percent": 5}]}, "name"),
    ({"stages": [{"name": "x" * 33, "percent": 5}]}, "name"),
    ({"stages": [{"name": "x", "tids": ["a"] * 10_001}]}, "tids"),
    ({"stages": [{"name": "x", "tids": [7]}]}, "tids"),
    ({"stage": 2}, "stage"), ({"stage": -1}, "stage"), ({"stage": True}, "stage"),
    ({"halt": 0}, "halt"),
    ({"seq": -1}, "seq"), ({"seq": 2 ** 63}, "seq"),
])
def test_a_malformed_rollout_is_refused_by_name(change, why):
    with pytest.raises(EnvelopeError, match=why):
        wire.open_rollout(wire.seal(rollout_doc(**change), HUB), {HUB.public_key.kid(): HUB.public_key})


def test_rollout_limits_accepted_at_their_bounds():
    keys = {HUB.public_key.kid(): HUB.public_key}
    doc = rollout_doc(stages=[{"name": "x" * 32, "tids": ["a"] * 10_000}] + [{"name": "p", "percent": 0}] * 15,
                      stage=15, seq=2 ** 63 - 1)
    r = wire.open_rollout(wire.seal(doc, HUB), keys)
    assert (len(r.stages), r.stage, r.seq) == (16, 15, 2 ** 63 - 1)


def test_a_rollout_signed_by_another_key_is_forged():
    with pytest.raises(EnvelopeError):
        wire.open_rollout(wire.seal(rollout_doc(), DEVICE), {HUB.public_key.kid(): HUB.public_key})


def test_update_report_round_trip_and_refusals():
    rep = wire.UpdateReport("1.2.0", "rolled_back", "not healthy")
    assert wire.open_update_report(wire.update_report(rep, DEVICE), DEVICE.public_key) == rep
    with pytest.raises(EnvelopeError):
        wire.open_update_report(wire.update_report(rep, HUB), DEVICE.public_key)
    for bad in ({"state": "fine"}, {"version": ""}, {"version": "1" * 33}, {"reason": None},
                {"reason": "x" * 201}):
        with pytest.raises(EnvelopeError):
            wire.open_update_report(wire.seal({"version": "1.2.0", "state": "good", "reason": "", **bad}, DEVICE),
                                    DEVICE.public_key)
    long = wire.UpdateReport("1.2.0", "refused", "x" * 500)   # the builder cuts the reason to fit
    assert wire.open_update_report(wire.update_report(long, DEVICE), DEVICE.public_key).reason == "x" * 200


def test_versions_compare_as_numbers():
    assert wire.version_key("1.10.0") > wire.version_key("1.9.9")
    assert wire.version_key("1.2") == wire.version_key("1.2.0")
    for bad in ("", "1.2.3.4.5", "v1", "1.2a", "1234567.0", None):
        with pytest.raises(ValueError):
            wire.version_key(bad)


# --- SM2 in TUF ---------------------------------------------------------------------------

def test_sm2_key_type_signs_and_verifies_through_securesystemslib():
    signer = SM2Signer(HUB)
    sig = signer.sign(b"payload")
    key = Key.from_dict(signer.public_key.keyid, signer.public_key.to_dict())   # looked up by type/scheme
    assert isinstance(key, SM2Key) and key == signer.public_key
    key.verify_signature(sig, b"payload")
    with pytest.raises(UnverifiedSignatureError):
        key.verify_signature(sig, b"other payload")
    with pytest.raises(UnverifiedSignatureError):
        key.verify_signature(Signature(sig.keyid, "zz"), b"payload")
    with pytest.raises(UnverifiedSignatureError):
        SM2Key.from_public(DEVICE.public_key).verify_signature(sig, b"payload")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = CertAuthority(tmp_path_factory.mktemp("ca"))
    return ca, *ca.issue("repo", server=True)


@pytest.fixture
def repo(tmp_path, ca):
    authority, cert, key = ca
    r = ReleaseRepo(tmp_path / "repo", role_keys(tmp_path / "repo-keys"))
    (tmp_path / "root.json").write_bytes(r.root_bytes())
    with RepoServer(tmp_path / "repo", cert, key) as server:
        yield r, server, ReleaseFetcher(server.url, tmp_path / "root.json", tmp_path / "term", authority.cert)


def plain_bundle(tmp_path: Path, version: str) -> Path:
    w = tmp_path / f"w{version}"
    w.mkdir(exist_ok=True)
    (w / "x-1.0-py3-none-any.whl").write_bytes(version.encode())
    return write_bundle(tmp_path / "bundles", version, [w / "x-1.0-py3-none-any.whl"], ["x"])


def test_tuf_fetches_a_published_release(repo, tmp_path):
    r, _, fetcher = repo
    b = plain_bundle(tmp_path, "1.2.0")
    r.add_bundle(b, "1.2.0")
    r.publish()
    assert fetcher.versions() == ["1.2.0"]
    assert fetcher.fetch("1.2.0").read_bytes() == b.read_bytes()
    with pytest.raises(Refused, match="hold no gate-terminal-1.3.0.tar"):
        fetcher.fetch("1.3.0")


def test_tuf_refuses_a_release_signed_by_another_targets_key(repo, tmp_path):
    r, _, fetcher = repo
    r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.signers["targets"] = [SM2Signer(PrivateKey.generate())]   # a forger who holds only a stranger's key
    r.publish()
    with pytest.raises(Refused, match="UnsignedMetadataError"):
        fetcher.fetch("1.2.0")


def test_tuf_refuses_expired_metadata_a_freeze(repo, tmp_path):
    r, _, fetcher = repo
    r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.expires["timestamp"] = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    r.publish()
    with pytest.raises(Refused, match="ExpiredMetadataError"):
        fetcher.fetch("1.2.0")
    r.expires.clear()
    r.refresh_timestamp()   # a fresh timestamp: the same release verifies again
    assert fetcher.fetch("1.2.0").exists()


def test_tuf_refuses_older_metadata_than_it_has_seen_a_rollback(repo, tmp_path):
    r, _, fetcher = repo
    r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.publish()
    old = (r.meta_dir / "timestamp.json").read_bytes()
    r.add_bundle(plain_bundle(tmp_path, "1.3.0"), "1.3.0")
    r.publish()
    assert fetcher.versions() == ["1.2.0", "1.3.0"]
    (r.meta_dir / "timestamp.json").write_bytes(old)   # a mirror replays yesterday's signed timestamp
    with pytest.raises(Refused, match="BadVersionNumberError"):
        fetcher.fetch("1.3.0")


def test_tuf_refuses_targets_metadata_the_snapshot_does_not_name_mix_and_match(repo, tmp_path):
    r, _, fetcher = repo
    r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.publish()
    v = r.targets.signed.version
    older = (r.meta_dir / f"{v - 1}.targets.json").read_bytes()
    (r.meta_dir / f"{v}.targets.json").write_bytes(older)   # validly signed, but another version
    with pytest.raises(Refused, match="BadVersionNumberError"):
        fetcher.fetch("1.2.0")


def test_tuf_refuses_a_bundle_whose_bytes_are_not_the_signed_ones(repo, tmp_path):
    r, _, fetcher = repo
    name = r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.publish()
    target = next(r.targets_dir.glob(f"*.{name}"))
    target.write_bytes(target.read_bytes()[:-1] + b"!")
    with pytest.raises(Refused, match="LengthOrHashMismatchError"):
        fetcher.fetch("1.2.0")


def test_a_repository_that_does_not_answer_is_unreachable_not_refused(tmp_path, ca):
    r = ReleaseRepo(tmp_path / "repo", role_keys(tmp_path / "k"))
    (tmp_path / "root.json").write_bytes(r.root_bytes())
    fetcher = ReleaseFetcher("https://127.0.0.1:9", tmp_path / "root.json", tmp_path / "t", ca[0].cert)
    with pytest.raises(Unreachable):
        fetcher.fetch("1.2.0")


def test_a_repository_with_a_certificate_of_another_ca_is_not_trusted(repo, tmp_path):
    r, server, _ = repo
    r.add_bundle(plain_bundle(tmp_path, "1.2.0"), "1.2.0")
    r.publish()
    stranger = CertAuthority(tmp_path / "other-ca")
    fetcher = ReleaseFetcher(server.url, tmp_path / "root.json", tmp_path / "t2", stranger.cert)
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetcher.fetch("1.2.0")


# --- bundles and installs -------------------------------------------------------------------

def test_bundle_members_are_bounded(tmp_path):
    import tarfile
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        (tmp_path / "evil").write_text("x")
        tar.add(tmp_path / "evil", arcname="../evil.whl")
    with pytest.raises(BundleError, match="not manifest.json or wheels"):
        extract(bad, tmp_path / "out")
    no_manifest = tmp_path / "nm.tar"
    with tarfile.open(no_manifest, "w") as tar:
        tar.add(tmp_path / "evil", arcname="wheels/evil.whl")
    with pytest.raises(BundleError, match="manifest"):
        extract(no_manifest, tmp_path / "out2")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(BundleError, match="does not unpack"):
        extract(tmp_path / "junk.tar", tmp_path / "out3")


def test_install_side_by_side_and_switch(tmp_path):
    prefix = tmp_path / "prefix"
    first_install(fake_bundle(tmp_path / "b", "1.0.0"), prefix, "1.0.0")
    assert boot.current_version(prefix) == "1.0.0" and is_installed(prefix, "1.0.0")
    out = subprocess.run([prefix / "current" / "bin" / "python", "-c",
                          "from terminal.update.updater import running_version; print(running_version())"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "1.0.0", out.stderr
    install(fake_bundle(tmp_path / "b", "1.1.0"), prefix, "1.1.0")
    assert boot.current_version(prefix) == "1.0.0"            # installed beside, not switched yet
    assert switch_to(prefix, "1.1.0", 120, now=1000.0) == "1.0.0"
    assert boot.current_version(prefix) == "1.1.0"
    assert boot.read_pending(prefix) == {"version": "1.1.0", "previous": "1.0.0", "deadline": 1120.0, "starts": 0}
    assert (prefix / "releases" / "1.0.0" / "bin" / "gate-terminal").exists()   # the way back stays


def test_install_refuses_a_bundle_of_another_version(tmp_path):
    with pytest.raises(InstallError, match="holds version 1.0.0, not 1.1.0"):
        install(fake_bundle(tmp_path / "b", "1.0.0"), tmp_path / "prefix", "1.1.0")
    assert not is_installed(tmp_path / "prefix", "1.1.0")


def test_install_refuses_wheels_pip_cannot_install(tmp_path):
    wheel = make_wheel(tmp_path / "w", "1.0.0")
    bundle = write_bundle(tmp_path / "b", "1.0.0", [wheel], ["gate-terminal==1.0.0", "numpy-not-in-bundle"])
    with pytest.raises(InstallError, match="pip install failed"):
        install(bundle, tmp_path / "prefix", "1.0.0")
    assert not is_installed(tmp_path / "prefix", "1.0.0")


# --- the launcher -------------------------------------------------------------------------

def fake_release(prefix: Path, version: str, script: str) -> None:
    d = prefix / "releases" / version / "bin"
    d.mkdir(parents=True)
    (d / "gate-terminal").write_text(f"#!/bin/sh\n{script}\n")
    (d / "gate-terminal").chmod(0o755)


def test_check_counts_starts_then_rolls_back_past_the_deadline(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 0")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 60, now=1000.0)
    assert boot.check(tmp_path, now=1000.0) == 60.0
    assert boot.check(tmp_path, now=1059.9) == pytest.approx(0.1)
    assert boot.read_pending(tmp_path)["starts"] == 2 and boot.current_version(tmp_path) == "1.1.0"
    assert boot.check(tmp_path, now=1060.0) is None                       # its time is up
    assert boot.current_version(tmp_path) == "1.0.0" and boot.read_pending(tmp_path) is None
    assert (tmp_path / boot.FAILED).read_text() == "1.1.0"
    assert (tmp_path / boot.ROLLED_BACK / "1.1.0").exists()
    [report] = [json.loads(p.read_text()) for p in (tmp_path / boot.REPORTS).iterdir()]
    assert (report["version"], report["state"]) == ("1.1.0", "rolled_back")


def test_check_rolls_back_a_release_that_keeps_crashing_before_the_deadline(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 1")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 3600, now=1000.0)
    for i in range(boot.MAX_STARTS):
        assert boot.check(tmp_path, now=1001.0 + i) is not None
    assert boot.check(tmp_path, now=1010.0) is None
    assert boot.current_version(tmp_path) == "1.0.0"
    assert "started 5 times" in next((tmp_path / boot.REPORTS).iterdir()).read_text()


def test_check_leaves_a_stale_or_unreadable_marker_alone(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 0")
    boot.switch(tmp_path, "1.0.0")
    boot.write_pending(tmp_path, "1.1.0", "1.0.0", 0.0)   # not what current names: stale
    assert boot.check(tmp_path, now=5.0) is None
    assert boot.current_version(tmp_path) == "1.0.0" and not (tmp_path / boot.PENDING).exists()
    (tmp_path / boot.PENDING).write_text("{not json")
    assert boot.check(tmp_path) is None and not (tmp_path / boot.REPORTS).exists()


def test_launcher_uses_only_the_standard_library():
    import ast
    tree = ast.parse(Path(boot.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
               {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_launchers_alarm_kills_a_release_that_never_marks_itself_good(tmp_path):
    """SIGALRM set before exec survives it: a release that hangs is ended at its deadline."""
    fake_release(tmp_path, "1.0.0", "exit 0")
    fake_release(tmp_path, "1.1.0", "exec sleep 60")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 1.5)
    launcher = [sys.executable, boot.__file__, "--prefix", str(tmp_path)]
    started = time.monotonic()
    p = subprocess.run(launcher, timeout=30)
    assert p.returncode == -signal.SIGALRM and time.monotonic() - started < 20
    assert boot.current_version(tmp_path) == "1.1.0"     # killed, not yet judged:
    assert subprocess.run(launcher, timeout=30).returncode == 0   # the next start rolls back, runs 1.0.0
    assert boot.current_version(tmp_path) == "1.0.0"


def test_launcher_usage_and_missing_release(tmp_path):
    assert subprocess.run([sys.executable, boot.__file__], capture_output=True).returncode == 2
    p = subprocess.run([sys.executable, boot.__file__, "--prefix", str(tmp_path), "run"], capture_output=True,
                       text=True)
    assert p.returncode == 1 and "cannot start" in p.stderr


# --- the hub's stage judge ------------------------------------------------------------------

def controller(terminals):
    published = []
    return RolloutController(published.append, terminals), published


def test_a_stage_advances_when_every_member_is_good_and_halts_on_failures():
    tids = [f"370102-H0001-{i:02d}" for i in range(10)]
    c, pub = controller(tids)
    c.start("1.2.0", [StagePlan("pilot", tids=tuple(tids[:2]), max_failure=0.5), StagePlan("all", percent=100)], 1)
    assert pub[-1].stage == 0 and not pub[-1].halt
    c.report(tids[0], wire.UpdateReport("1.2.0", "installed", ""))
    c.report(tids[0], wire.UpdateReport("1.2.0", "good", ""))
    c.report(tids[5], wire.UpdateReport("1.2.0", "good", ""))   # not in the pilot: does not end it
    c.report(tids[1], wire.UpdateReport("1.1.0", "good", ""))          # another version: not counted
    assert len(pub) == 1
    c.report(tids[1], wire.UpdateReport("1.2.0", "good", ""))
    assert (pub[-1].stage, pub[-1].halt, pub[-1].seq) == (1, False, 2)
    for t in tids[2:4]:
        c.report(t, wire.UpdateReport("1.2.0", "good", ""))
    assert len(pub) == 2
    assert c.failure_rate() == 0.0
    c.report(tids[6], wire.UpdateReport("1.2.0", "refused", "metadata does not verify"))
    assert (pub[-1].halt, pub[-1].stage, pub[-1].seq) == (True, 1, 3)    # 1/8 ≥ 0.1
    assert c.failure_rate() == pytest.approx(1 / 8)


def test_a_stage_under_its_threshold_is_not_halted():
    tids = [f"370102-H0001-{i:02d}" for i in range(4)]
    c, pub = controller(tids)
    c.start("1.2.0", [StagePlan("pilot", tids=tuple(tids), max_failure=0.5), StagePlan("all", percent=100)], 7)
    c.report(tids[0], wire.UpdateReport("1.2.0", "rolled_back", ""))   # 1/4 < 0.5
    assert len(pub) == 1
    c.report(tids[1], wire.UpdateReport("1.2.0", "rolled_back", ""))   # 2/4 = 0.5: halted
    assert pub[-1].halt and pub[-1].seq == 8
    c.report(tids[2], wire.UpdateReport("1.2.0", "good", ""))          # a halted rollout stays halted
    assert len(pub) == 2


def test_an_empty_first_stage_is_passed_at_once():
    c, pub = controller(["370102-H0001-01"])
    c.start("1.2.0", [StagePlan("pilot", tids=()), StagePlan("all", percent=100)], 1)
    assert pub[-1].stage == 1


# --- the health window -----------------------------------------------------------------------

def test_health_window_marks_good_once_every_check_passes(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 0")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 60)
    (tmp_path / boot.FAILED).write_text("0.9.0")
    problems = [["READY not sent"], []]
    good = []
    w = HealthWindow(tmp_path, "1.1.0", lambda: problems[0], on_good=lambda: good.append(1), poll=0.01)
    assert HealthWindow(tmp_path, "1.0.0", lambda: []).start() is False     # not the release on trial
    signal.alarm(3600)   # as the launcher leaves it
    assert w.start()
    wait_for(lambda: w.last_problems == ["READY not sent"], "the first check")
    assert boot.read_pending(tmp_path) is not None
    problems[0] = []
    wait_for(lambda: good, "marked good")
    assert signal.alarm(0) == 0                          # the launcher's alarm was cancelled
    assert boot.read_pending(tmp_path) is None and not (tmp_path / boot.FAILED).exists()
    [report] = [json.loads(p.read_text()) for p in (tmp_path / boot.REPORTS).iterdir()]
    assert (report["version"], report["state"]) == ("1.1.0", "good")
    w.stop()


def test_health_window_past_its_deadline_leaves_the_judgement_to_the_launcher(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 0")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 60, now=time.time() - 61)
    calls = []
    w = HealthWindow(tmp_path, "1.1.0", lambda: calls.append(1) or ["watchdog not fed"], poll=0.01)
    assert w.start()
    w._thread.join(10)
    assert not w._thread.is_alive() and calls == [1]
    assert boot.read_pending(tmp_path) is not None and not (tmp_path / boot.REPORTS).exists()


def test_a_health_check_that_raises_is_a_problem_not_a_pass(tmp_path):
    for v in ("1.0.0", "1.1.0"):
        fake_release(tmp_path, v, "exit 0")
    boot.switch(tmp_path, "1.0.0")
    switch_to(tmp_path, "1.1.0", 60)
    w = HealthWindow(tmp_path, "1.1.0", lambda: 1 / 0, poll=0.01)
    assert w.start()
    wait_for(lambda: w.last_problems, "a check")
    assert w.last_problems == ["health check failed: ZeroDivisionError"]
    w.stop()
    assert boot.read_pending(tmp_path) is not None


# --- configuration ----------------------------------------------------------------------------

def test_update_section_rules(keyset, tmp_path):
    base = (keyset / "config.toml").read_text()
    cfg_path = keyset / "config.toml"

    def load(extra_hub: str, update: str):
        cfg_path.write_text(base.replace("[hub]\n", "[hub]\n" + extra_hub) + "\n[update]\n" + update)
        return cfgmod.load(cfg_path)

    with pytest.raises(cfgmod.ConfigError, match="update.prefix needs hub.broker"):
        load("", 'prefix = "/opt/g"\nrepository = "https://h:1"\nroot = "r.json"\n')
    with pytest.raises(cfgmod.ConfigError, match="update.root is required"):
        load('broker = "mqtt://127.0.0.1:1883"\n', 'prefix = "/opt/g"\nrepository = "https://h:1"\n')
    with pytest.raises(cfgmod.ConfigError, match="update.repository must be an https"):
        load('broker = "mqtt://127.0.0.1:1883"\n', 'prefix = "/opt/g"\nrepository = "http://h:1"\nroot = "r"\n')
    cfg = load('broker = "mqtt://127.0.0.1:1883"\nca = "hub-ca.pem"\n',
               'prefix = "/opt/g"\nrepository = "https://h:8443/"\nroot = "r.json"\n')
    assert (cfg.update.prefix, cfg.update.repository, cfg.update.ca, cfg.update.health_seconds) == \
        (Path("/opt/g"), "https://h:8443", keyset / "hub-ca.pem", 120.0)
    assert load("", "").update.prefix is None


# --- the hub's repository tooling -----------------------------------------------------------

def test_publish_bundles_adds_new_and_changed_bundles_only(tmp_path):
    from sim.tufrepo import publish_bundles
    repo = ReleaseRepo(tmp_path / "repo", role_keys(tmp_path / "k"))
    bundles = tmp_path / "bundles"
    fake_bundle(bundles, "1.0.0")
    (bundles / "gate-terminal-latest.tar").write_bytes(b"not a version")   # ignored: no version in its name
    assert publish_bundles(repo, bundles) == ["1.0.0"]
    version = repo.targets.signed.version
    assert publish_bundles(repo, bundles) == [] and repo.targets.signed.version == version
    fake_bundle(bundles, "1.1.0")
    assert publish_bundles(repo, bundles) == ["1.1.0"]
    assert sorted(repo.versions().values()) == ["1.0.0", "1.1.0"]
    again = ReleaseRepo(tmp_path / "repo", role_keys(tmp_path / "k"))    # a restarted hub takes it over
    assert again.versions() == repo.versions() and again.targets.signed.version == version + 1


@pytest.mark.parametrize("extra, message", [
    (["--releases", "R"], "--releases needs --repo-cert and --repo-key"),
    (["--rollout", "1.0.0"], "--rollout needs --releases"),
    (["--releases", "R", "--repo-cert", "c", "--repo-key", "k", "--repo-listen", "nope"], "HOST:PORT"),
    (["--releases", "R", "--repo-cert", "c", "--repo-key", "k", "--max-failure", "0"], "--max-failure"),
    (["--releases", "R", "--repo-cert", "c", "--repo-key", "k", "--rollout", "9.9.9"], "no gate-terminal-9.9.9.tar"),
    (["--releases", "R", "--repo-cert", "c", "--repo-key", "k", "--rollout", "v9"], "not a release version"),
])
def test_sim_hub_release_options_are_checked_before_anything_starts(keyset, tmp_path, capsys, extra, message):
    from terminal.cli import main
    extra = [str(tmp_path / "R") if a == "R" else a for a in extra]
    assert main(["sim", "hub", "--broker", "mqtt://127.0.0.1:1", "--keys", str(keyset), "--group",
                 "g" * 16, *extra]) == 2
    assert message in capsys.readouterr().err


# --- the daemon's health checks ----------------------------------------------------------------

def test_daemon_health_problems_until_ready_fed_open_and_self_tested(keyset_config, tmp_path, no_leaked_threads):
    from terminal.daemon import Daemon
    d = Daemon(keyset_config, state_dir=tmp_path / "state")
    d.open()
    assert d.health_problems() == ["READY not sent", "watchdog not fed", "no self-test decision yet"]
    d.start()
    try:
        wait_for(lambda: d.health_problems() == [], "every health check passing")
        assert d.self_tested and d.watchdog.fed
        d.devices.fail("relay", "port gone")
        assert d.health_problems() == ["relay not open: port gone"]
        d.devices.ok("relay")
        assert d.health_problems() == []
        assert d.decided == 0                                # the self-test decides, but records nothing
        assert d.verifier.store.outbox_depth() == 0
    finally:
        d.stop()


def test_a_self_test_that_does_not_deny_is_not_healthy(keyset_config, tmp_path, mocker):
    from terminal.daemon import Daemon
    from terminal.verifier import Assessment
    d = Daemon(keyset_config, state_dir=tmp_path / "state")
    d.open()
    try:
        mocker.patch.object(d.verifier, "assess", autospec=True, return_value=Assessment("allow", "ok", None, None))
        d._self_test()
        assert not d.self_tested
    finally:
        d.verifier.close()


def test_a_stalled_loop_is_not_fed(mocker):
    from terminal.ops.sdnotify import Notifier, Watchdog
    clock = mocker.Mock(return_value=0.0)
    w = Watchdog(Notifier(env={}), stall_after=5, clock=clock)
    w.watch("decide")
    clock.return_value = 10.0
    assert not w.tick() and not w.fed           # stalled: not fed
    w.progress("decide")
    w.tick()
    assert w.fed                                 # no systemd watchdog, every loop progressing


# --- the updater: the seam the hub's `update` command calls ------------------------------------

@pytest.fixture
def updater_env(keyset, tmp_path, ca, mocker):
    from terminal.update.updater import Updater
    authority, cert, key = ca
    repo = ReleaseRepo(tmp_path / "repo", role_keys(tmp_path / "repo-keys"))
    (keyset / "tuf-root.json").write_bytes(repo.root_bytes())
    bundles = tmp_path / "bundles"
    for v in ("1.0.0", "1.1.0"):
        repo.add_bundle(fake_bundle(bundles, v), v)
    repo.publish()
    prefix = tmp_path / "prefix"
    first_install(bundles / "gate-terminal-1.0.0.tar", prefix, "1.0.0")
    server = RepoServer(tmp_path / "repo", cert, key).start()
    cfg_path = keyset / "config.toml"
    cfg_path.write_text(cfg_path.read_text().replace("[hub]\n", '[hub]\nbroker = "mqtt://127.0.0.1:1"\n') + f"""
[update]
prefix = "{prefix}"
repository = "{server.url}"
root = "tuf-root.json"
ca = "{authority.cert}"
""")
    sent = []
    restart = mocker.Mock()

    def make(publish=lambda p: sent.append(wire.open_update_report(p, DEVICE_KEY(keyset))) or True):
        from terminal.crypto.keyfiles import load_private_key
        return Updater(cfgmod.load(cfg_path), load_private_key(keyset / "device.pem"), publish=publish,
                       restart=restart, version="1.0.0")
    yield {"make": make, "sent": sent, "restart": restart, "prefix": prefix, "server": server}
    server.stop()


def DEVICE_KEY(keyset):
    from terminal.crypto.keyfiles import load_private_key
    return load_private_key(keyset / "device.pem").public_key


def test_update_failed_alarm_while_the_flag_is_there(updater_env):
    u = updater_env["make"]()
    assert u.alarm() == {}
    boot.write_atomic(updater_env["prefix"] / boot.FAILED, b"1.1.0")
    assert u.alarm() == {"update_failed": "release 1.1.0 was rolled back; running 1.0.0"}


def test_check_now_installs_the_newest_release_and_asks_for_a_restart(updater_env):
    u = updater_env["make"]()
    out = u.check_now()
    assert (out.state, out.version) == ("installed", "1.1.0")
    updater_env["restart"].assert_called_once_with()
    assert boot.current_version(updater_env["prefix"]) == "1.1.0"
    assert [(r.version, r.state) for r in updater_env["sent"]] == [("1.1.0", "installed")]
    assert u.check_now().state == "busy"                     # switched already: waits for the restart


def test_check_now_refuses_older_and_ignores_the_running_version(updater_env):
    u = updater_env["make"]()
    assert u.check_now("1.0.0").state == "current"
    out = u.check_now("0.9.0")
    assert (out.state, out.reason) == ("refused", "older than the running 1.0.0")
    assert [(r.version, r.state) for r in updater_env["sent"]] == [("0.9.0", "refused")]
    assert u.check_now("2.0.0").state == "refused"           # not in the repository: TUF names none
    assert not updater_env["restart"].called and boot.current_version(updater_env["prefix"]) == "1.0.0"


def test_results_wait_for_the_broker_and_an_unreachable_repository_decides_nothing(updater_env):
    offline = []
    u = updater_env["make"](publish=lambda p: offline.append(p) and False)
    assert u.check_now("0.9.0").state == "refused"
    assert len(offline) == 1 and len(list((updater_env["prefix"] / boot.REPORTS).iterdir())) == 1   # kept
    updater_env["server"].stop()
    out = u.check_now("1.1.0")
    assert out.state == "unreachable"
    assert len(list((updater_env["prefix"] / boot.REPORTS).iterdir())) == 1   # no result for it
    (updater_env["prefix"] / boot.REPORTS / "0-bad.json").write_text("{")
    online = updater_env["make"]()
    assert online.send_reports() == 1 and not list((updater_env["prefix"] / boot.REPORTS).iterdir())
    assert [(r.version, r.state) for r in updater_env["sent"]] == [("0.9.0", "refused")]


def test_rollouts_for_other_stages_forged_or_repeated_do_nothing(updater_env):
    u = updater_env["make"]()
    from terminal.crypto.keyfiles import load_private_key
    hub_key = load_private_key(updater_env["prefix"].parent / "keys" / "hub.pem")
    r = wire.Rollout(1, "1.1.0", (wire.Stage("pilot", tids=("370102-H0001-99",)), wire.Stage("all", percent=100)),
                     0, False)
    u._on_rollout(wire.rollout(r, hub_key))                  # not this terminal's stage yet
    u._on_rollout(wire.rollout(wire.Rollout(2, "1.1.0", r.stages, 0, False), DEVICE))   # forged
    assert u.rejected == 1 and u.rollout.seq == 1 and not updater_env["restart"].called
    u._on_rollout(wire.rollout(wire.Rollout(3, "1.1.0", r.stages, 1, True), hub_key))  # halted
    assert u.rollout.seq == 3 and not updater_env["restart"].called
    u._on_rollout(wire.rollout(wire.Rollout(2, "1.1.0", r.stages, 1, False), hub_key))  # older seq
    assert u.rollout.seq == 3 and not updater_env["restart"].called
    u._on_rollout(wire.rollout(wire.Rollout(4, "1.1.0", r.stages, 1, False), hub_key))  # "all" now
    updater_env["restart"].assert_called_once_with()
    assert boot.current_version(updater_env["prefix"]) == "1.1.0"


def test_a_rollout_of_the_running_version_is_answered_good_once_unless_on_trial(updater_env):
    from terminal.crypto.keyfiles import load_private_key
    hub_key = load_private_key(updater_env["prefix"].parent / "keys" / "hub.pem")
    stages = (wire.Stage("all", percent=100),)
    u = updater_env["make"]()
    boot.write_pending(updater_env["prefix"], "1.0.0", "0.9.0", time.time() + 60)   # on trial
    u._on_rollout(wire.rollout(wire.Rollout(1, "1.0.0", stages, 0, False), hub_key))
    assert updater_env["sent"] == []                 # the health window will say
    boot.clear(updater_env["prefix"] / boot.PENDING)
    u._on_rollout(wire.rollout(wire.Rollout(2, "1.0.0", stages, 0, False), hub_key))
    u._on_rollout(wire.rollout(wire.Rollout(3, "1.0.0", stages, 0, False), hub_key))
    assert [(r.version, r.state, r.reason) for r in updater_env["sent"]] == [("1.0.0", "good", "already running it")]
    assert not updater_env["restart"].called
