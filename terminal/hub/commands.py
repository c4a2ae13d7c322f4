"""Remote commands, the terminal's side of the wire: which to run, and why the others are refused.

A command on ``{prefix}/t/{tid}/cmd`` runs only if it is signed by the hub key, names this
terminal's tid, knows its op, has a ``not_after`` neither past (by the trusted clock) nor more
than :data:`MAX_AHEAD` ahead, and its id has not been claimed before. The claim is a row in the
store kept until ``not_after`` (:meth:`Store.claim_command`), so a command runs at most once
across restarts too; past its not_after it is refused as expired anyway. Each refusal is counted
and answered with its reason (docs/protocol/hub.md, Remote commands). Runs on the hub-pump thread.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from terminal.crypto.sm2 import PublicKey
from terminal.hub import wire
from terminal.state.store import Store

log = logging.getLogger(__name__)

# How far ahead a not_after may be: the store remembers an id until then, and a command's use is
# minutes. A hub that wants more is refused (too_far_ahead), never remembered for years.
MAX_AHEAD = 86400
# Refusals answered (and logged) per minute; beyond it they are only counted, so a flood of bad
# commands costs neither a signature each nor the log. Genuine commands are always answered.
ANSWERED_REFUSALS = 30


@dataclass(frozen=True)
class Admission:
    id: str | None                 # the id to answer by (a refused command's claimed id; may be None)
    command: wire.Command | None   # to run, or None
    refusal: str | None            # "<reason>: <words>", or None
    answer: bool = True            # False: a refusal beyond ANSWERED_REFUSALS a minute, counted only


class CommandGate:
    def __init__(self, store: Store, tid: str, hub_key: PublicKey, now: Callable[[], float | None],
                 mono: Callable[[], float] = time.monotonic):
        """``now``: the trusted time (the clock guard's), None while the clock is untrusted."""
        self._store = store
        self._tid = tid
        self._keys = {hub_key.kid(): hub_key}
        self._now = now
        self.rejected = 0
        self._mono = mono
        self._answered: deque[float] = deque()  # when the last refusals were answered

    def admit(self, raw: bytes) -> Admission:
        try:
            cmd = wire.open_command(raw, self._keys)
        except wire.EnvelopeError as e:
            return self._refuse(wire.command_id_of(raw), "bad_signature", str(e))
        except ValueError as e:
            return self._refuse(wire.command_id_of(raw), "malformed", str(e))
        if cmd.tid != self._tid:
            return self._refuse(cmd.id, "other_tid", f"the command is for {cmd.tid[:64]!r}, this is {self._tid}")
        if cmd.op not in wire.CMD_OPS:
            return self._refuse(cmd.id, "unknown_op", f"{cmd.op[:64]!r} is not one of {', '.join(wire.CMD_OPS)}")
        now = self._now()
        if now is None:
            return self._refuse(cmd.id, "clock_untrusted", "no trusted time to judge not_after by")
        if now > cmd.not_after:
            return self._refuse(cmd.id, "expired", f"not_after {cmd.not_after} has passed ({int(now)})")
        if cmd.not_after > now + MAX_AHEAD:
            return self._refuse(cmd.id, "too_far_ahead", f"not_after is more than {MAX_AHEAD} s ahead")
        if not self._store.claim_command(cmd.id, cmd.not_after, now):
            return self._refuse(cmd.id, "replayed", f"command {cmd.id} was received before")
        log.warning("hub: command %s %s accepted", cmd.id, cmd.op)
        return Admission(cmd.id, cmd, None)

    def _refuse(self, cid: str | None, reason: str, words: str) -> Admission:
        self.rejected += 1
        now = self._mono()
        while self._answered and self._answered[0] <= now - 60:
            self._answered.popleft()
        answer = len(self._answered) < ANSWERED_REFUSALS
        if answer:
            self._answered.append(now)
        (log.warning if answer else log.debug)("hub: command %s refused: %s: %s", cid, reason, words)
        return Admission(cid, None, f"{reason}: {words}", answer)
