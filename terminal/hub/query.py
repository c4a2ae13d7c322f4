"""Card status from the hub, with the SQLite cache standing in during outages (docs/protocol/hub.md).

    query  {prefix}/t/{tid}/query  {"qid", "method", "subject": hex SM2 ciphertext of
           {"id_number", "name"} to the hub key}; MQTT 5 response topic {prefix}/t/{tid}/reply,
           correlation data = qid
    reply  signed by the hub key: {"qid", "status", "flags", "nat_at", "nat_result", "vax_doses",
           "valid_until"} or {"qid", "error": "unknown_person"}

How each outcome decides (``None`` makes the verifier apply ``offline_unknown`` with reason
``status_unavailable``):

    genuine answer              that status; cached until min(valid_until, now + status_cache_hours)
    genuine "unknown_person"    None, and any cached answer for the person is dropped: the hub
                                answered and no longer vouches for them, so an older answer must
                                not stand in (it would outlive what the hub says now)
    other error / no answer in time / offline (no wait) / only forged or malformed replies
                                the cached answer if one is still valid, else None

Forged, malformed or mismatched replies are counted in ``rejected`` and the wait goes on, so a
forger cannot crowd out the genuine answer. Malformed includes out of bounds: nesting or numbers
:mod:`terminal.core.boundedjson` refuses, ``valid_until`` outside 0 to year 9999. A cache operation
the disk fails is counted in ``cache_errors`` and skipped: a genuine answer still decides, and
with no answer the card has no cache to stand in.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
import uuid
from typing import Callable

from terminal.hub import wire
from terminal.config import Config
from terminal.hub.link import HubLink
from terminal.core.policy import HealthStatus, Policy
from terminal.state.statuscache import StatusCache
from terminal.core.trust import EnvelopeError

log = logging.getLogger(__name__)

UNKNOWN = object()  # the hub's "unknown_person"


def _answer(r: wire.Reply) -> tuple[HealthStatus, float] | object | None:
    """(status, valid_until), UNKNOWN, or None for another error."""
    if r.error is not None:
        return UNKNOWN if r.error == "unknown_person" else None
    return r.status, r.valid_until


class HubStatusSource:
    """:class:`terminal.core.cardstatus.StatusSource` over a :class:`HubLink` and a :class:`StatusCache`.

    ``lookup`` runs on each card reader's own thread (``Daemon._card_loop``): waiting up to
    ``query_timeout`` for an answer holds up that reader only, never the decision thread. Cache
    writes go through the store's one locked writing connection (:meth:`Store.write`).
    """

    def __init__(self, link: HubLink, cache: StatusCache, cfg: Config,
                 policy: Callable[[], Policy] | None = None, mono: Callable[[], float] = time.monotonic):
        self._link = link
        self._cache = cache
        self._hub_key = cfg.hub_key
        self._hub_keys = {cfg.hub_key.kid(): cfg.hub_key}
        self._timeout = float(cfg.hub.query_timeout)
        self._policy = policy or cfg.policy
        self._mono = mono
        self._lock = threading.Lock()
        self.answered = self.from_cache = self.unavailable = self.rejected = self.cache_errors = 0

    def lookup(self, method: str, id_number: str, name: str, now: float) -> HealthStatus | None:
        answer = self._ask(method, id_number, name)
        if answer is UNKNOWN:
            self._on_disk(self._cache.drop, id_number)
            self._count("unavailable")
            return None
        if answer is not None:
            health, valid_until = answer
            hours = self._policy().status_cache_hours
            # A cache that cannot be written costs the next outage this answer, not this one.
            self._on_disk(self._cache.put, id_number, health, min(valid_until, now + hours * 3600), now)
            self._count("answered")
            return health
        cached = self._on_disk(self._cache.get, id_number, now)
        self._count("from_cache" if cached is not None else "unavailable")
        return cached

    def _on_disk(self, op: Callable, *args):
        """A cache operation; None if the disk fails it (full, I/O error, locked): the reader
        thread asking must live on, and a card with neither answer nor cache is decided by
        ``offline_unknown``."""
        try:
            return op(*args)
        except sqlite3.Error as e:
            self._count("cache_errors")
            log.error("hub: card status cache %s failed: %s", op.__name__, e)
            return None

    def _ask(self, method: str, id_number: str, name: str):
        qid = str(uuid.uuid4())
        replies = self._link.query(qid, wire.query(qid, method, id_number, name, self._hub_key))
        if replies is None:
            return None  # offline: do not wait for an answer that cannot come
        try:
            deadline = self._mono() + self._timeout
            while (left := deadline - self._mono()) > 0:
                try:
                    raw = replies.get(timeout=left)
                except queue.Empty:
                    break
                try:
                    return _answer(wire.open_reply(raw, self._hub_keys, qid))
                except EnvelopeError as e:
                    self._count("rejected")
                    log.warning("hub: card status reply ignored: %s", e)
            log.info("hub: no card status answer within %.1f s", self._timeout)
            return None
        finally:
            self._link.end_query(qid)

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)
