"""``gate-terminal status``: how the terminal is doing, read-only, daemon running or not.

What it reports is :func:`terminal.state.snapshot.status_snapshot` (the database read-only and
the daemon's status file; the remote ``ping`` answers with the same object); here it is printed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from terminal import config as cfgmod
from terminal.alarms import age_text
from terminal.commands.usage import UsageError
from terminal.state.snapshot import SnapshotError, status_snapshot


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
    try:
        snap = status_snapshot(args.state_dir or cfg.state_dir, terminal_id=cfg.terminal_id)
    except SnapshotError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(snap, ensure_ascii=False))
    else:
        print(render(snap))
    return 1 if snap["problems"] else 0


def _sent_again(resends: int, unheard: int) -> str:
    """Batches sent again since start: after the ack timeout, or because the broker said no
    hub was subscribed (hub.md) — connected, yet the hub not hearing, shows here first."""
    if not resends and not unheard:
        return ""
    n = resends + unheard
    return f"; {n} batch{'es' if n > 1 else ''} sent again" + (f" ({unheard} no hub subscribed)" if unheard else "")


def _when(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t))} ({age_text(now - t)} ago)"


def render(snap: dict) -> str:
    now, live = snap["now"], snap["live"]
    lines = [f"terminal {snap['terminal_id']}: daemon {snap['daemon']}"
             + (f" (pid {live['pid']}, {live['decided']} decided)" if snap["daemon"] == "running" else "")]
    if snap["daemon"] == "running":  # a stopped daemon's devices and hub are nobody's now
        lines.append("devices:  " + (", ".join(f"{n} {'ok' if not why else 'OUT OF ORDER: ' + why}"
                                              for n, why in sorted(live["devices"].items())) or "none"))
        hub = live.get("hub", {})
        lines.append(f"hub:      {hub.get('state', '?')}"
                     + (f" for {age_text(hub['down_for'])}" if hub.get("down_for") is not None else "")
                     + (f" ({'to' if hub.get('state') == 'connected' else 'last tried'} {hub['broker']})"
                        if hub.get("broker") else "")
                     + _sent_again(hub.get("resends", 0), hub.get("unheard", 0))
                     + (f"; {n} inbound dropped unread" if (n := hub.get("dropped_messages", 0)) else ""))
        storage = live.get("storage", {})
        if "free_bytes" in storage:
            lines.append(f"storage:  {storage['free_bytes'] >> 20} MiB free"
                         + (", ALARM" if storage.get("alarm") else ""))
    lines.append(f"clock:    {snap['clock']}")
    lines.append("signed:   " + (", ".join(f"{k} seq {v}" for k, v in snap["signed_docs"].items()) or "none"))
    out = snap["outbox"]
    lines.append(f"outbox:   {out['depth']} events"
                 + (f", oldest {age_text(out['oldest_age_s'])} old" if out["oldest_age_s"] is not None else ""))
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
