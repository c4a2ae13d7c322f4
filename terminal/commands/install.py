"""``gate-terminal install``: put the service in place on a terminal, idempotently.

    PREFIX/etc/systemd/system/gate-terminal.service   0644  the unit (systemd/)
    PREFIX/etc/udev/rules.d/99-gate-terminal.rules     0644  /dev/gate/* names (systemd/)
    PREFIX/etc/gate-terminal/                          0750  root:gate-terminal
    PREFIX/etc/gate-terminal/config.toml               0640  root:gate-terminal, never overwritten
    PREFIX/usr/local/bin/gate-terminal                 → this venv's gate-terminal (the unit's ExecStart)
    system user and group gate-terminal                      (only with --prefix / as root)

Run from the venv the service should use (``/opt/gate-terminal/bin/gate-terminal install``:
ProtectHome= hides a venv under /home or /root from the service). Each step says whether it
created, updated or left a thing unchanged; a second run changes nothing. ``--dry-run`` says
what would change and changes nothing.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from terminal.commands.usage import UsageError
from terminal.ops.smallfile import write_atomic

USER = "gate-terminal"
# Package data, so a wheel install has them too (no source tree there): terminal/shipped/.
SHIPPED = files("terminal.shipped")
UNIT = SHIPPED / "gate-terminal.service"
RULES = SHIPPED / "99-gate-terminal.rules"
EXAMPLE_CONFIG = SHIPPED / "config.example.toml"


def register(sub) -> None:
    p = sub.add_parser("install", help="install the systemd unit, udev rules, config and service user",
                       description="Install the service idempotently: unit, udev rules, /etc/gate-terminal with "
                                   "config.toml (never overwritten), the gate-terminal link and system user.")
    p.add_argument("--prefix", type=Path, default=Path("/"), help="install under this root (default /)")
    p.add_argument("--config", type=Path, help="config to install (default: config.example.toml)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.set_defaults(func=run)


class Installer:
    def __init__(self, prefix: Path, dry_run: bool, *, manage_system: bool):
        self.prefix = prefix
        self.dry_run = dry_run
        self.manage_system = manage_system   # real root, prefix "/": users, ownership, reloads
        self.changed: list[str] = []

    def _say(self, what: str, path: str, verb: str) -> None:
        if verb != "unchanged":
            self.changed.append(path)
            if self.dry_run:
                verb = "would be " + verb
        print(f"{verb:>20}  {what}: {path}")

    def path(self, p: str) -> Path:
        return self.prefix / p.lstrip("/")

    def user(self) -> None:
        if not self.manage_system:
            print(f"{'skipped':>20}  system user {USER} (not root, or --prefix is not /)")
            return
        try:
            pwd.getpwnam(USER)
            self._say("system user", USER, "unchanged")
            return
        except KeyError:
            pass
        self._say("system user", USER, "created")
        if not self.dry_run:
            try:
                subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                "--home-dir", "/var/lib/gate-terminal", "--shell", "/usr/sbin/nologin",
                                "--comment", "gate-terminal service", USER], check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                raise UsageError(f"cannot create system user {USER}: {e}") from None

    def _owner(self, path: Path, group: bool) -> None:
        if self.manage_system and group and not self.dry_run:
            gid = grp.getgrnam(USER).gr_gid
            if path.stat().st_gid != gid or path.stat().st_uid != 0:
                os.chown(path, 0, gid)

    def directory(self, p: str, mode: int, group: bool = False) -> None:
        path = self.path(p)
        verb = "unchanged"
        if not path.is_dir():
            verb = "created"
            if not self.dry_run:
                path.mkdir(parents=True, mode=mode)
        elif path.stat().st_mode & 0o7777 != mode or self._wrong_group(path, group):
            verb = "updated"
        if not self.dry_run:
            path.chmod(mode)
            self._owner(path, group)
        self._say("directory", str(path), verb)

    def _wrong_group(self, path: Path, group: bool) -> bool:
        return self.manage_system and group and path.stat().st_gid != _gid(USER)

    def file(self, p: str, data: bytes, mode: int, *, group: bool = False, keep: bool = False) -> None:
        path = self.path(p)
        if path.exists() and keep:
            self._say("file (kept, never overwritten)", str(path), "unchanged")
            return
        verb = "created" if not path.exists() else "unchanged"
        if verb == "unchanged" and (path.read_bytes() != data or path.stat().st_mode & 0o7777 != mode
                                    or self._wrong_group(path, group)):
            verb = "updated"
        if verb != "unchanged" and not self.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=mode)
            self._owner(path, group)
        self._say("file", str(path), verb)

    def link(self, p: str, target: Path) -> None:
        path = self.path(p)
        if path.is_symlink() and Path(os.readlink(path)) == target:
            self._say("link", f"{path} -> {target}", "unchanged")
            return
        if path.exists() and not path.is_symlink():
            raise UsageError(f"{path} exists and is not a link; move it away (the unit runs {p})")
        verb = "updated" if path.is_symlink() else "created"
        if not self.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, path)
        self._say("link", f"{path} -> {target}", verb)

    def reload(self) -> None:
        if not self.manage_system or self.dry_run or not self.changed:
            return
        if Path("/run/systemd/system").is_dir():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
        if shutil.which("udevadm") and Path("/run/udev/control").exists():
            subprocess.run(["udevadm", "control", "--reload"], check=False)
            subprocess.run(["udevadm", "trigger", "--subsystem-match=tty", "--subsystem-match=video4linux",
                            "--subsystem-match=input"], check=False)


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def entry_point() -> Path:
    """This venv's gate-terminal script: what the unit's /usr/local/bin/gate-terminal must run."""
    script = Path(sys.executable).parent / "gate-terminal"
    if not script.exists():
        raise UsageError(f"{script} not found: run install with the gate-terminal of the venv the service "
                         "should use")
    return script


def run(args) -> int:
    prefix = args.prefix.resolve()
    config = args.config or EXAMPLE_CONFIG
    try:
        config_data = config.read_bytes()
        unit, rules = UNIT.read_bytes(), RULES.read_bytes()
    except OSError as e:
        raise UsageError(f"{e.filename}: {e.strerror}") from None
    manage = prefix == Path("/") and os.geteuid() == 0
    inst = Installer(prefix, args.dry_run, manage_system=manage)
    inst.user()
    inst.file("/etc/systemd/system/gate-terminal.service", unit, 0o644)
    inst.file("/etc/udev/rules.d/99-gate-terminal.rules", rules, 0o644)
    inst.directory("/etc/gate-terminal", 0o750, group=True)
    inst.file("/etc/gate-terminal/config.toml", config_data, 0o640, group=True, keep=True)
    inst.link("/usr/local/bin/gate-terminal", entry_point())
    inst.reload()
    n = len(inst.changed)
    print(f"{'dry run: ' if args.dry_run else ''}{n} change{'s' if n != 1 else ''}"
          f"{' would be made' if args.dry_run else ''}")
    if n and not args.dry_run:
        print("next: gate-terminal provision --config /etc/gate-terminal/config.toml --out /etc/gate-terminal; "
              "put data_keys.json (0600) there; systemctl enable --now gate-terminal")
    return 0
