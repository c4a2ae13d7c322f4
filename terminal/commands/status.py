"""``gate-terminal status``: how the terminal is doing, read-only, daemon running or not.

Two sources. The database, opened read-only (``mode=ro``: the running daemon holds the state
directory's flock and the one writing connection): trust and policy versions, outbox depth,
oldest unsynced event, last sync, the clock state kept on disk, the last events (which carry
no personal data). And the daemon's status file (:mod:`terminal.state.statusfile`).
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from terminal import config as cfgmod
from terminal.alarms import age_text as _age
from terminal.commands.usage import UsageError
from terminal.state.statusfile import LAST_DECISIONS, read_status_file


def read_database(state_dir: Path, now: float) -> dict:
    from terminal.state.store import DB_NAME

    db = Path(state_dir) / DB_NAME
    if not db.exists():
        raise UsageError(f"{db}: no database (has the terminal ever run with this state directory?)")
    # mode=ro reads through the daemon's WAL; with no WAL and -shm present (the daemon is not
    # running: it checkpointed and removed them) a read-only connection would still create
    # them — owned by whoever runs status, often root, and then unwritable for the daemon.
    # immutable=1 reads the main file alone and creates nothing.
    live = all(db.with_name(db.name + suffix).exists() for suffix in ("-wal", "-shm"))
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?{'mode=ro' if live else 'immutable=1'}", uri=True, timeout=5)
    except sqlite3.Error as e:
        raise UsageError(f"{db}: {e}") from None
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
        raise UsageError(f"{db}: {e}") from None
    finally:
        conn.close()
    last_sync = float(meta["last_sync_at"]) if "last_sync_at" in meta else None
    return {"signed_docs": docs, "clock": meta.get("clock_state", "trusted"),
            "outbox": {"depth": depth, "oldest_age_s": round(now - oldest[0], 1) if oldest else None},
            "last_sync_at": last_sync, "last_events": [dict(e, synced=bool(e["synced"])) for e in last_events]}




def status_snapshot(state_dir: Path, now: float | None = None) -> dict:
    """Everything ``status`` reports, as one JSON-able dict."""
    now = time.time() if now is None else now
    snap = {"state_dir": str(state_dir), "now": now, **read_database(state_dir, now)}
    live = read_status_file(state_dir, now)
    snap["daemon"] = "running" if live and not live["stale"] else "not running"
    snap["live"] = live
    # One PROBLEM each: the daemon's alarms (terminal/alarms.py, through the status file), or
    # that it is not running and what the database alone says.
    problems = []
    if snap["daemon"] != "running":
        problems.append("daemon not running" + (" (status file is stale)" if live else ""))
        snap["alarms"] = {"clock_untrusted": "as the daemon last kept it"} if snap["clock"] != "trusted" else {}
    else:
        snap["alarms"] = dict(live.get("alarms") or {})
        snap["clock"] = live["clock"]
    problems += [f"{name}: {why}" for name, why in sorted(snap["alarms"].items())]
    snap["problems"] = problems
    return snap


def register(sub) -> None:
    p = sub.add_parser("status", help="how the terminal is doing (read-only)",
                       description="Devices, clock, trust and policy versions, outbox and last decisions "
                                   "(masked), from the state directory; changes nothing. Exit 0 when all "
                                   "is well, 1 when the daemon is not running or something needs attention.")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--state-dir", type=Path, help="state directory instead of the configured one")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        cfg = cfgmod.load(args.config)
    except cfgmod.ConfigError as e:
        raise UsageError(str(e)) from None
    snap = status_snapshot(args.state_dir or cfg.state_dir)
    snap["terminal_id"] = cfg.terminal_id
    if args.json:
        print(json.dumps(snap, ensure_ascii=False))
    else:
        print(render(snap))
    return 1 if snap["problems"] else 0


def _when(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t))} ({_age(now - t)} ago)"


def render(snap: dict) -> str:
    now, live = snap["now"], snap["live"]
    lines = [f"terminal {snap['terminal_id']}: daemon {snap['daemon']}"
             + (f" (pid {live['pid']}, {live['decided']} decided)" if snap["daemon"] == "running" else "")]
    if live:
        lines.append("devices:  " + (", ".join(f"{n} {'ok' if not why else 'OUT OF ORDER: ' + why}"
                                              for n, why in sorted(live["devices"].items())) or "none"))
        hub = live.get("hub", {})
        lines.append(f"hub:      {hub.get('state', '?')}"
                     + (f" for {_age(hub['down_for'])}" if hub.get("down_for") is not None else ""))
        storage = live.get("storage", {})
        if "free_bytes" in storage:
            lines.append(f"storage:  {storage['free_bytes'] >> 20} MiB free"
                         + (", ALARM" if storage.get("alarm") else ""))
    lines.append(f"clock:    {snap['clock']}")
    lines.append("signed:   " + (", ".join(f"{k} seq {v}" for k, v in snap["signed_docs"].items()) or "none"))
    out = snap["outbox"]
    lines.append(f"outbox:   {out['depth']} events"
                 + (f", oldest {_age(out['oldest_age_s'])} old" if out["oldest_age_s"] is not None else ""))
    lines.append(f"synced:   {_when(snap['last_sync_at'], now)}")
    recent = live["last_decisions"] if live and live.get("last_decisions") else snap["last_events"]
    if recent:
        lines.append("last decisions:")
        for d in recent[:5]:
            who = f" {d['name'] or '-'} {d['id'] or '-'}" if "name" in d else ""
            lines.append(f"  #{d['seq']} {_when(d['at'], now)} {d['method']} {d['decision']} {d['reason']}{who}")
    for p in snap["problems"]:
        lines.append(f"PROBLEM:  {p}")
    return "\n".join(lines)
