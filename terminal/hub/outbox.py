"""The outbox pump: SQLite outbox → signed batches in flight → hub acks (docs/protocol/hub.md, Events).

A state machine with no MQTT and no threads of its own; the link's worker thread drives it.

    outbox (seq > the store's acked_seq), seq order
      ... acked_seq | in flight: up to ``window`` batches published, not yet acked | cursor ...
                      [first..last] [first..last] ...

An event leaves the outbox only when a hub ack covers its seq, never on PUBACK. A lost batch
(the hub consumer was down, the broker restarted) is re-read from the outbox: on reconnect,
when the oldest batch in flight waited ``ack_timeout`` for its ack, or — when the broker said
nobody was subscribed (MQTT 5 PUBACK 0x10: the hub not yet back after a restart) — after
``UNHEARD_RETRY`` seconds, doubling while it keeps saying so, up to ``ack_timeout``. The hub drops the
duplicates this makes by (tid, epoch, seq); the epoch is the store's, made once with the
database, so a terminal whose state was lost starts again at seq 1 under a new one.

Ack (wire.ack): signed envelope of ``{"tid", "epoch", "acked_seq": N}`` by the hub key. It
is believed only if the signature verifies, the tid and epoch are ours and N is not beyond the
highest seq this process actually sent: a forged, foreign or too-high ack deletes nothing.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

from terminal.hub import wire
from terminal.crypto.sm2 import PrivateKey, PublicKey
from terminal.state.store import Store
from terminal.core.trust import EnvelopeError

log = logging.getLogger(__name__)

UNHEARD_RETRY = 1.0     # s before a batch nobody was subscribed to is sent again (doubling)


@dataclass(frozen=True)
class Batch:
    first: int
    last: int
    sent_at: float  # monotonic
    mid: int | None = None  # the MQTT message id it went out under, once sent


class OutboxPump:
    def __init__(self, store: Store, tid: str, device_key: PrivateKey, hub_key: PublicKey, *,
                 window: int = 8, batch_size: int = wire.MAX_BATCH, ack_timeout: float = 15.0,
                 mono: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        if not 0 < batch_size <= wire.MAX_BATCH or window < 1:
            raise ValueError("batch_size must be 1-200 and window at least 1")
        self._store = store
        self._tid = tid
        self._epoch = store.epoch
        self._device_key = device_key
        self._hub_keys = {hub_key.kid(): hub_key}
        self.window = window
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self._mono = mono
        self._wall = wall
        self.in_flight: deque[Batch] = deque()
        self.cursor = store.acked_seq()  # the next batch starts after this seq
        self.sent_max = 0      # highest seq ever published: no believable ack goes beyond it
        self.rejected_acks = 0
        self.resends = 0       # times the window was re-read after an ack timeout
        self._silent = 0       # resends in a row without an ack: each waits twice as long
        self.unheard = 0       # batches the broker had no subscriber for
        self._unheard_run = 0  # of them in a row without an ack: each retry waits twice as long
        self._retry_at: float | None = None   # when to re-read the window after one
        self.last_sync_at: float | None = store.last_sync_at()

    @property
    def acked_seq(self) -> int:
        """Highest seq a hub ack covered (the store keeps it)."""
        return self._store.acked_seq()

    def reset(self) -> None:
        """Forget what is in flight: the next batch re-reads the outbox after the last hub ack."""
        self.in_flight.clear()
        self.cursor = self.acked_seq
        self._retry_at = None

    def unheard_mid(self, mid: int) -> None:
        """The broker had no subscriber for message ``mid``: if that is a batch still in
        flight (not acked, not already sent again), :meth:`unheard_batch`."""
        batch = next((b for b in self.in_flight if b.mid == mid), None)
        if batch is not None:
            self.unheard_batch(batch.first)

    def unheard_batch(self, first: int) -> None:
        """The broker had no subscriber for the batch starting at ``first``: unless an ack has
        covered it meanwhile, re-read the window soon, not after the whole ack timeout."""
        if first <= self.acked_seq or self._retry_at is not None:
            return
        self.unheard += 1
        delay = min(self.ack_timeout, UNHEARD_RETRY * 2 ** min(self._unheard_run, 6))
        self._unheard_run += 1
        self._retry_at = self._mono() + delay

    def next_batch(self) -> tuple[bytes, Batch] | None:
        """The next signed batch to publish, or None (window full, or nothing new)."""
        if len(self.in_flight) >= self.window:
            return None
        events = self._store.events(self.cursor, self.batch_size)
        if not events:
            return None
        return (wire.batch(self._tid, self._epoch, events, self._device_key),
                Batch(events[0]["seq"], events[-1]["seq"], self._mono()))

    def sent(self, batch: Batch, mid: int | None = None) -> None:
        """The batch was handed to a connected client, as MQTT message ``mid``."""
        self.in_flight.append(replace(batch, mid=mid))
        self.cursor = batch.last
        self.sent_max = max(self.sent_max, batch.last)

    def check_timeout(self) -> bool:
        """Re-read the window if a batch nobody was subscribed to is due again, or if its oldest
        batch waited too long for an ack (True if so). The
        wait doubles (up to 8×) while no ack comes, so a hub slow under load is not buried in
        copies of what it is still working through."""
        if self._retry_at is not None and self._mono() >= self._retry_at:
            log.info("hub: no subscriber had seq %d on; sending again", self.acked_seq + 1)
            self.reset()
            return True
        timeout = self.ack_timeout * 2 ** min(self._silent, 3)
        if self.in_flight and self._mono() - self.in_flight[0].sent_at > timeout:
            log.warning("hub: no ack for seq %d-%d in %.0f s; sending again from seq %d",
                        self.in_flight[0].first, self.in_flight[0].last, timeout, self.acked_seq + 1)
            self.resends += 1
            self._silent += 1
            self.reset()
            return True
        return False

    def check_ack(self, raw: bytes) -> int | None:
        """The seq a genuine ack covers, or None (forged, malformed, another tid or epoch, beyond
        what we sent: counted)."""
        try:
            a = wire.open_ack(raw, self._hub_keys)
        except (EnvelopeError, ValueError) as e:
            return self._reject(str(e))
        n = a.acked_seq
        if a.tid != self._tid:
            return self._reject(f"for tid {a.tid[:64]!r}")
        if a.epoch != self._epoch:
            return self._reject(f"for epoch {a.epoch}, not this database's {self._epoch}")
        if n > self.sent_max:
            return self._reject(f"acked_seq {n} is beyond the highest seq sent ({self.sent_max})")
        return n

    def _reject(self, why: str) -> None:
        self.rejected_acks += 1
        log.warning("hub: ack ignored: %s", why)
        return None

    def apply_ack(self, n: int) -> int:
        """Every event up to ``n`` leaves the outbox; returns how many just left."""
        now = self._wall()
        self.last_sync_at = now
        if n <= self.acked_seq:
            return 0  # a repeated ack (the hub acks every batch, duplicates included)
        left = self._store.ack(n, now)
        self._store.checkpoint()  # here, on the pump's thread, not in a presentation's commit
        self._silent = self._unheard_run = 0
        self.cursor = max(self.cursor, n)
        while self.in_flight and self.in_flight[0].last <= n:
            self.in_flight.popleft()
        return left
