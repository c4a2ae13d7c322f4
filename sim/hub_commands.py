"""The hub's desk for remote commands (docs/protocol/hub.md): sends signed commands, verifies and
keeps what terminals answer (``cmd/result``, each answer by command id) and the diagnostics chunks
they upload (``diag``), reassembled and checked against the SM3 digest the signed answer names.

Used by the hub simulator (sim/hub.py) and by ``gate-terminal sim cmd`` (sim/hub_cli.py); paho's
callback only hands messages to :meth:`CommandDesk.take`, the work is on :meth:`CommandDesk.run`'s
thread.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import Counter
from typing import Callable

import paho.mqtt.client as mqtt

from terminal.core.trust import EnvelopeError
from terminal.crypto.sm2 import PrivateKey, PublicKey
from terminal.hub import wire

PUBLISH_WAIT = 10.0


class CommandDesk:
    def __init__(self, client: mqtt.Client, prefix: str, hub_key: PrivateKey, terminals: dict[str, PublicKey],
                 stats: Counter, line: Callable[[str], None]):
        self.client = client
        self.prefix = prefix
        self.hub_key = hub_key
        self.terminals = terminals
        self.stats = stats
        self.line = line
        self._q: queue.Queue = queue.Queue()
        self._cond = threading.Condition()  # results and diag chunks, read by waiting callers
        self._results: dict[str, list[wire.CommandResult]] = {}  # every answer by command id, in order
        self._diag: dict[str, dict[int, bytes]] = {}

    def send_command(self, tid: str, op: str, args: dict | None = None, *, not_after: int | None = None,
                     cid: str | None = None, for_tid: str | None = None, key: PrivateKey | None = None,
                     raw: bytes | None = None) -> str:
        """Publish a command on ``tid``'s cmd topic; its id. By default signed by the hub key, for
        ``tid``, valid 5 minutes; ``for_tid``, ``key`` and ``raw`` make the ones a terminal refuses."""
        cid = cid or str(uuid.uuid4())
        not_after = int(time.time()) + 300 if not_after is None else not_after
        payload = raw if raw is not None else wire.command(cid, for_tid or tid, op, args or {}, not_after,
                                                           key or self.hub_key)
        info = self.client.publish(wire.Topics(self.prefix, tid).cmd, payload, qos=1)
        info.wait_for_publish(PUBLISH_WAIT)
        self.stats["commands"] += 1
        self.line(f"command {tid} {cid[:8]}: {op}")
        return cid

    def result(self, cid: str, timeout: float = 30.0) -> wire.CommandResult | None:
        """The terminal's (first) verified answer to command ``cid``, waited for up to ``timeout``."""
        answers = self.answers(cid, 1, timeout)
        return answers[0] if answers else None

    def answers(self, cid: str, n: int = 1, timeout: float = 30.0) -> list[wire.CommandResult]:
        """Every verified answer to command ``cid`` (one per copy of it sent), waiting for ``n``."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._results.get(cid, ())) >= n, timeout)
            return list(self._results.get(cid, ()))

    def diagnostics(self, cid: str) -> bytes | None:
        """The diagnostics bundle of command ``cid`` if every chunk has arrived and its SM3 is the
        one the terminal's signed answer names; None otherwise."""
        with self._cond:
            parts, res = self._diag.get(cid, {}), (self._results.get(cid) or [None])[0]
            if res is None or not res.ok or not isinstance(res.detail, dict) or len(parts) != res.detail.get("parts"):
                return None
            bundle = b"".join(parts[i] for i in range(len(parts)))
        return bundle if wire.diag_digest(bundle) == res.detail.get("sm3") else None

    def take(self, topic: str, raw: bytes) -> None:
        """From paho's callback: a ``cmd/result`` or ``diag`` message, for :meth:`run` (no lock here)."""
        self._q.put((topic, raw))

    def stop(self) -> None:
        self._q.put(None)

    def run(self) -> None:
        """The commands thread: verify what terminals answer and keep it for the waiting callers."""
        while (item := self._q.get()) is not None:
            topic, raw = item
            leaf = "diag" if topic.endswith("/diag") else "cmd/result"
            tid = wire.tid_of(self.prefix, topic, leaf)
            key = self.terminals.get(tid) if tid else None
            try:
                if key is None:
                    raise ValueError("unknown terminal")
                if leaf == "diag":
                    chunk = wire.open_diag_chunk(raw)
                    with self._cond:
                        self._diag.setdefault(chunk.id, {})[chunk.part] = chunk.data
                        self._cond.notify_all()
                    continue
                res = wire.open_command_result(raw, key)
            except (EnvelopeError, ValueError) as e:
                self.stats["bad_results"] += 1
                self.line(f"{leaf} on {topic[:80]!r} dropped: {e}")
                continue
            with self._cond:
                self._results.setdefault(str(res.id), []).append(res)
                self._cond.notify_all()
            self.stats["results"] += 1
            detail = res.detail if isinstance(res.detail, str) else "{...}"
            self.line(f"result {tid} {str(res.id)[:8]}: {'ok' if res.ok else 'refused'} {detail[:120]}")

