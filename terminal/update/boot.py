"""``gate-terminal-boot``: the launcher that stays outside every release and decides rollback.

systemd starts this file (a copy at ``<prefix>/bin/gate-terminal-boot``, put there by
``gate-terminal release install-boot``), never a release directly. It uses the standard
library only, so nothing a release ships can break it. On every start it reads the pending
marker a switch leaves behind and then execs ``<prefix>/current/bin/gate-terminal`` with its
own arguments (same PID: systemd's notify and watchdog see the daemon itself).

Layout of the prefix (docs/protocol/updates.md)::

    releases/<version>/            one venv per release; ``.complete`` written last
    current -> releases/<version>  switched by rename over it (atomic)
    update/pending.json            {"version", "previous", "deadline", "starts"}: a switch not yet good
    update/failed                  the last release was rolled back (alarm update_failed)
    update/reports/*.json          results the running release still has to send the hub
    update/rolled_back/<version>   rolled back here once: refused from then on (a retained
                                   rollout not yet halted must not switch to it again)

Who decides what:
- the new release marks itself good (removes pending.json, cancels the alarm) once healthy;
- this launcher rolls back — switches ``current`` to ``previous``, writes a ``rolled_back``
  report and the ``failed`` flag, removes pending.json — when it finds a pending switch whose
  deadline has passed, or that has been started ``MAX_STARTS`` times (a release that crashes at
  import never runs a line of its own health code);
- a release that starts but never becomes healthy (hangs, devices never open) is killed at the
  deadline by SIGALRM: the launcher arms ``alarm()`` before exec and an alarm survives exec;
  the release cancels it when it marks itself good. systemd restarts the killed process
  (Restart=on-failure) and this launcher, past the deadline, rolls back.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

MAX_STARTS = 5
PENDING, FAILED, REPORTS = "update/pending.json", "update/failed", "update/reports"
ROLLED_BACK = "update/rolled_back"  # one empty file per version rolled back here: never installed again


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_version(prefix: Path) -> str | None:
    """The release ``current`` points at, or None."""
    try:
        return Path(os.readlink(prefix / "current")).name
    except OSError:
        return None


def switch(prefix: Path, version: str) -> None:
    """Point ``current`` at releases/<version>: a new link renamed over the old one (atomic)."""
    tmp = prefix / f".current.{os.getpid()}.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(f"releases/{version}", tmp)
    os.replace(tmp, prefix / "current")
    _fsync_dir(prefix)


def read_pending(prefix: Path) -> dict | None:
    try:
        doc = json.loads((prefix / PENDING).read_bytes()[:4096])
        if isinstance(doc, dict) and isinstance(doc.get("version"), str) and isinstance(doc.get("previous"), str) \
                and isinstance(doc.get("deadline"), (int, float)) and isinstance(doc.get("starts"), int):
            return doc
    except (OSError, ValueError):
        pass
    return None


def write_pending(prefix: Path, version: str, previous: str, deadline: float, starts: int = 0) -> None:
    write_atomic(prefix / PENDING, json.dumps({"version": version, "previous": previous, "deadline": deadline,
                                               "starts": starts}).encode())


def add_report(prefix: Path, version: str, state: str, reason: str) -> None:
    """A result for the running release to send (``update/reports``, oldest first by name)."""
    name = f"{time.time_ns():020d}-{os.getpid()}.json"
    write_atomic(prefix / REPORTS / name, json.dumps({"version": version, "state": state,
                                                       "reason": reason}).encode())


def clear(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def roll_back(prefix: Path, pending: dict, reason: str) -> None:
    switch(prefix, pending["previous"])
    add_report(prefix, pending["version"], "rolled_back", reason)
    write_atomic(prefix / FAILED, pending["version"].encode())
    write_atomic(prefix / ROLLED_BACK / pending["version"], b"")
    clear(prefix / PENDING)


def check(prefix: Path, now: float | None = None) -> float | None:
    """Roll back a pending switch whose time is up; else count this start. The seconds left
    in the health window (for the alarm), or None when nothing is pending."""
    now = time.time() if now is None else now
    pending = read_pending(prefix)
    if pending is None:
        clear(prefix / PENDING)  # unreadable: nothing to judge (current stays as it is)
        return None
    if current_version(prefix) != pending["version"]:
        clear(prefix / PENDING)  # switched back or elsewhere since: this marker is stale
        return None
    if now >= pending["deadline"]:
        roll_back(prefix, pending, f"not healthy within its health window ({pending['starts']} start(s))")
        return None
    if pending["starts"] >= MAX_STARTS:
        roll_back(prefix, pending, f"started {pending['starts']} times without becoming healthy")
        return None
    write_pending(prefix, pending["version"], pending["previous"], pending["deadline"], pending["starts"] + 1)
    return pending["deadline"] - now


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "--prefix":
        print("usage: gate-terminal-boot --prefix DIR [gate-terminal arguments...]", file=sys.stderr)
        return 2
    prefix, rest = Path(argv[1]), argv[2:]
    left = check(prefix)
    exe = prefix / "current" / "bin" / "gate-terminal"
    if left is not None:
        signal.alarm(max(1, math.ceil(left)))  # survives exec: a release that never gets healthy dies
    try:
        os.execv(exe, [str(exe), *rest])
    except OSError as e:
        print(f"gate-terminal-boot: cannot start {exe}: {e}", file=sys.stderr)
        return 1
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
