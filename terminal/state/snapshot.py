"""How the terminal is doing, as one JSON-able object: ``gate-terminal status`` prints it, the
remote ``ping`` answers with it.

Two sources. The database, opened read-only (``mode=ro``: the running daemon holds the state
directory's flock and the one writing connection): trust and policy versions, outbox depth,
oldest unsynced event, last sync, the clock state kept on disk, the last events (which carry
no personal data). And the daemon's status file (:mod:`terminal.state.statusfile`), with its alarms.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from terminal.alarms import CLOCK_UNTRUSTED
from terminal.state.statusfile import LAST_DECISIONS, daemon_state, read_status_file


class SnapshotError(RuntimeError):
    """No database to report on, or one that cannot be read: the message says which."""


def read_database(state_dir: Path, now: float) -> dict:
    from terminal.state.store import DB_NAME

    db = Path(state_dir) / DB_NAME
    if not db.exists():
        raise SnapshotError(f"{db}: no database (has the terminal ever run with this state directory?)")
    # mode=ro reads through the daemon's WAL; with no WAL and -shm present (the daemon is not
    # running: it checkpointed and removed them) a read-only connection would still create
    # them — owned by whoever runs status, often root, and then unwritable for the daemon.
    # immutable=1 reads the main file alone and creates nothing.
    live = all(db.with_name(db.name + suffix).exists() for suffix in ("-wal", "-shm"))
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?{'mode=ro' if live else 'immutable=1'}", uri=True, timeout=5)
    except sqlite3.Error as e:
        raise SnapshotError(f"{db}: {e}") from None
    try:
        q = conn.execute
        meta = dict(q("SELECT key, value FROM meta").fetchall())
        docs = {kind: seq for kind, seq in q("SELECT kind, seq FROM signed_docs ORDER BY kind")}
        acked = int(meta.get("acked_seq", 0))
        depth = q("SELECT count(*) FROM events WHERE seq > ?", [acked]).fetchone()[0]
        oldest = q("SELECT at FROM events WHERE seq > ? ORDER BY seq LIMIT 1", [acked]).fetchone()
        last_events = [dict(zip(("seq", "at", "method", "decision", "reason", "synced"), row)) for row in q(
            "SELECT seq, at, method, decision, reason, seq <= ? FROM events ORDER BY seq DESC LIMIT ?",
            [acked, LAST_DECISIONS])]
    except sqlite3.Error as e:
        raise SnapshotError(f"{db}: {e}") from None
    finally:
        conn.close()
    last_sync = float(meta["last_sync_at"]) if "last_sync_at" in meta else None
    return {"signed_docs": docs, "clock": meta.get("clock_state", "trusted"),
            "outbox": {"depth": depth, "oldest_age_s": round(now - oldest[0], 1) if oldest else None},
            "last_sync_at": last_sync, "last_events": [dict(e, synced=bool(e["synced"])) for e in last_events]}




def status_snapshot(state_dir: Path, now: float | None = None, *, terminal_id: str | None = None) -> dict:
    """Everything ``status`` reports, as one JSON-able dict; SnapshotError without a readable database."""
    now = time.time() if now is None else now
    snap = {"state_dir": str(state_dir), "now": now, **read_database(state_dir, now)}
    if terminal_id is not None:
        snap["terminal_id"] = terminal_id
    live = read_status_file(state_dir, now)
    running, problem = daemon_state(state_dir, live, now)
    snap["daemon"] = "running" if running else "not running"
    snap["live"] = live
    problems = [problem] if problem else []
    if not running:
        snap["alarms"] = []
        if snap["clock"] != "trusted":
            problems.append(f"{CLOCK_UNTRUSTED}: as the daemon's last run left it")
    else:
        # The daemon's own list (terminal/alarms.py), one PROBLEM line each.
        alarms = live.get("alarms", {})
        snap["alarms"] = list(alarms)
        problems += [f"{name}: {why}" for name, why in alarms.items()]
        snap["clock"] = live["clock"]
    snap["problems"] = problems
    return snap
