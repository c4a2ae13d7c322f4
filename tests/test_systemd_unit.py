"""The shipped unit and udev rules: systemd-analyze verify and security, and the daemon itself
running under the unit's seccomp restrictions (MemoryDenyWriteExecute=, SystemCallFilter=)."""
from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.ops.sdnotify import CREDENTIALS

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "gate-terminal.service"
RULES = ROOT / "systemd" / "99-gate-terminal.rules"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys repeat (DeviceAllow=, LoadCredential=, ...)."""
    section, out = "", []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries() if k == key and s == section]


def venv_entry_point() -> str:
    """The gate-terminal script of this venv: something executable for `verify` to resolve."""
    script = Path(sys.executable).parent / "gate-terminal"
    assert script.exists(), f"{script}: run scripts/setup (pip install -e .) first"
    return str(script)


def test_systemd_analyze_verify(tmp_path):
    # The shipped ExecStart= names the launcher `release install` puts in /opt/gate-terminal/bin;
    # verify checks that the binary exists, so check a copy that points at this venv's script.
    text = UNIT.read_text()
    assert "ExecStart=/opt/gate-terminal/bin/gate-terminal-boot --prefix /opt/gate-terminal run " in text
    copy = tmp_path / "gate-terminal.service"
    copy.write_text(text.replace("/opt/gate-terminal/bin/gate-terminal-boot", venv_entry_point()))
    r = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_security_exposure_at_most_2_0():
    # --threshold counts tenths in systemd 252: 20 means an overall exposure of 2.0
    r = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for gate-terminal\.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0 and r.returncode == 0, r.stdout


def test_unit_shape():
    assert values("Type") == ["notify"] and values("NotifyAccess") == ["main"]
    assert values("Restart") == ["on-failure"] and values("WatchdogSec") == ["30s"]
    assert values("StartLimitIntervalSec", "Unit") == ["0"]
    after = " ".join(values("After", "Unit"))
    assert "time-set.target" in after and "time-sync.target" not in after
    # never blocks start on the network: no network-online.target anywhere
    assert not any("network-online" in v for _, _, v in unit_entries())
    assert "network.target" in after
    assert values("User") == ["gate-terminal"] and values("StateDirectory") == ["gate-terminal"]
    assert values("ProtectSystem") == ["strict"] and values("UMask") == ["0077"]
    assert values("DevicePolicy") == ["closed"]
    assert sorted(values("DeviceAllow")) == sorted(["char-ttyUSB rw", "char-ttyACM rw", "char-ttyS rw",
                                                    "char-video4linux rw", "char-input rw", "/dev/fb0 rw",
                                                    "char-alsa rw"])
    assert values("SupplementaryGroups") == ["dialout video audio"]
    assert values("RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert values("CapabilityBoundingSet") == [""]
    # every secret the daemon looks up in $CREDENTIALS_DIRECTORY is passed, from /etc/gate-terminal
    assert sorted(values("LoadCredential")) == sorted(f"{c}:/etc/gate-terminal/{c}" for c in CREDENTIALS.values())
    assert values("ExecStart") == ["/opt/gate-terminal/bin/gate-terminal-boot --prefix /opt/gate-terminal "
                                   "run --config /etc/gate-terminal/config.toml"]
    assert values("ReadWritePaths") == ["/opt/gate-terminal"]   # releases are installed there


def test_udev_rules_name_every_device_for_the_service():
    rules = [line for line in RULES.read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = {}
    for rule in rules:
        pairs = re.findall(r'([A-Z_]+(?:\{[^}]+\})?)(==|\+=|=)"([^"]*)"', rule)
        # every comma-separated token parsed: no typo slips through as an ignored fragment
        assert len(pairs) == rule.count(",") + 1, rule
        d = {k: v for k, op, v in pairs}
        assert d["GROUP"] == "gate-terminal" and d["MODE"] == "0660", rule
        names[d["SYMLINK"]] = d
    assert set(names) == {"gate/idcard", "gate/sscard", "gate/relay", "gate/camera", "gate/scanner",
                          "gate/scanner-kbd"}
    assert (names["gate/relay"]["ATTRS{idVendor}"], names["gate/relay"]["ATTRS{idProduct}"]) == ("1a86", "7523")
    assert names["gate/camera"]["SUBSYSTEM"] == "video4linux" and names["gate/camera"]["ATTR{index}"] == "0"
    for dev in ("gate/idcard", "gate/sscard", "gate/relay", "gate/scanner"):
        assert names[dev]["SUBSYSTEM"] == "tty"
    assert (names["gate/scanner-kbd"]["SUBSYSTEM"], names["gate/scanner-kbd"]["KERNEL"]) == ("input", "event*")


# --- the daemon under the unit's seccomp filters ----------------------------------
# systemd 252 implements MemoryDenyWriteExecute= and SystemCallFilter= as seccomp filters; the
# child installs the same two filters (through libseccomp, which systemd itself links) and then
# runs the workload. PID 1 here is not systemd, so the unit cannot be started for real.
CHILD = r'''
import ctypes, errno, json, sys
ALLOW, PROT_WRITE, PROT_EXEC, SHM_EXEC, MASKED_EQ = 0x7FFF0000, 0x2, 0x4, 0o100000, 7
EPERM = 0x00050000 | errno.EPERM

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

sc = ctypes.CDLL("libseccomp.so.2")
sc.seccomp_init.restype = ctypes.c_void_p
sc.seccomp_init.argtypes = [ctypes.c_uint32]
sc.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
sc.seccomp_load.argtypes = [ctypes.c_void_p]
sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
nr = lambda name: sc.seccomp_syscall_resolve_name(name.encode())

# MemoryDenyWriteExecute=yes, as systemd 252's seccomp_memory_deny_write_execute()
ctx = sc.seccomp_init(ALLOW)
for name, arg, mask in (("mmap", 2, PROT_WRITE | PROT_EXEC), ("mprotect", 2, PROT_EXEC),
                        ("pkey_mprotect", 2, PROT_EXEC), ("shmat", 2, SHM_EXEC)):
    c = Cmp(arg, MASKED_EQ, mask, mask)
    assert sc.seccomp_rule_add_array(ctx, EPERM, nr(name), 1, ctypes.byref(c)) == 0
assert sc.seccomp_load(ctx) == 0
# SystemCallFilter= allow list with SystemCallErrorNumber=EPERM
ctx = sc.seccomp_init(EPERM)
for name in json.loads(sys.argv[1]):
    if nr(name) >= 0:
        assert sc.seccomp_rule_add_array(ctx, ALLOW, nr(name), 0, None) == 0, name
assert sc.seccomp_load(ctx) == 0

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
wx = libc.mmap(None, 4096, 0x1 | PROT_WRITE | PROT_EXEC, 0x22, -1, 0)  # MAP_PRIVATE|MAP_ANONYMOUS
state = libc.adjtimex(ctypes.create_string_buffer(512))
print(json.dumps({"wx_mmap_refused": wx in (None, ctypes.c_void_p(-1).value), "adjtimex": state,
                  "adjtimex_errno": ctypes.get_errno() if state < 0 else 0}), flush=True)
if sys.argv[2:]:
    from terminal.cli import main
    sys.exit(main(sys.argv[2:]))
'''


def group(name: str) -> set[str]:
    """The system calls of a systemd syscall group, nested groups expanded."""
    out = subprocess.run([ANALYZE, "syscall-filter", name], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= group(item) if item.startswith("@") else {item}
    return calls


def unit_allow_list() -> set[str]:
    """SystemCallFilter= lines of the shipped unit, merged as systemd merges them: the first
    (an allow list) sets the mode, later "~" lines remove, later plain lines add."""
    allowed: set[str] = set()
    lines = values("SystemCallFilter")
    assert lines and not lines[0].startswith("~")
    for line in lines:
        deny = line.startswith("~")
        for item in line.lstrip("~").split():
            calls = group(item) if item.startswith("@") else {item}
            allowed = allowed - calls if deny else allowed | calls
    return allowed


def run_sandboxed(allowed: set[str], *argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sorted(allowed)), *argv],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    first = r.stdout.splitlines()[0] if r.stdout else ""
    assert first.startswith("{"), r.stdout + r.stderr
    return json.loads(first), r


def test_daemon_runs_under_the_units_seccomp_filters(tmp_path):
    """The whole terminal — camera QR decoding (zxing-cpp, OpenCV, zbar), card readers and relay
    on pseudo-terminals, SM2, SQLite, PNG screens — under MemoryDenyWriteExecute= and the unit's
    system-call allow list."""
    assert values("MemoryDenyWriteExecute") == ["yes"]
    report = tmp_path / "report.json"
    probe, r = run_sandboxed(unit_allow_list(), "sim", "demo", "--duration", "3", "--rate", "40",
                             "--seed", "7", "--out", str(tmp_path / "demo"), "--report", str(report))
    assert probe["wx_mmap_refused"]                 # the filter is really on
    assert probe["adjtimex"] >= 0, probe            # the clock guard can still ask the kernel
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["decided"] == result["visitors"] >= 2 and result["agreement"] == 1.0


def test_without_clock_adjtime_the_clock_guard_would_be_blind():
    """Why the unit allows clock_adjtime: glibc's adjtimex() is that system call, and
    @system-service alone refuses it (so the guard would never see NTP synchronisation)."""
    allowed = unit_allow_list()
    assert {"adjtimex", "clock_adjtime"} <= allowed
    probe, r = run_sandboxed(allowed - {"adjtimex", "clock_adjtime", "clock_adjtime64"})
    assert r.returncode == 0, r.stderr
    assert probe["adjtimex"] == -1 and probe["adjtimex_errno"] == 1   # EPERM


@pytest.mark.parametrize("directive", ["ProtectClock", "ProcSubset", "PrivateDevices", "PrivateUsers"])
def test_directives_that_would_break_the_terminal_are_absent(directive):
    # ProtectClock: refuses clock_adjtime in a filter of its own; ProcSubset=pid: hides
    # /proc/sys/kernel/random/boot_id (every event carries it); PrivateDevices: no /dev/ttyUSB*;
    # PrivateUsers: supplementary device groups would be unmapped.
    assert values(directive) == []


def test_unit_parses_as_ini():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"
