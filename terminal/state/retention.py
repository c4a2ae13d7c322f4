"""Retention: events the hub has acknowledged stay ``[retention] days`` for local history,
then go; an event the hub has not acknowledged is never purged, however old.

The daemon calls :func:`purge` every :data:`PURGE_EVERY` seconds (and once at start) with the
clock guard's trusted time: with the clock untrusted nothing is purged, since a wall clock
that jumped years ahead would otherwise empty the local history in one call.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

PURGE_EVERY = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Purged:
    events: int
    nonces: int


def purge(store, days: int, now: float | None) -> Purged:
    """Delete synced events decided more than ``days`` before ``now``, and replay-window nonces
    past their keep time (else a daemon that runs for months grows that table forever)."""
    if now is None:
        return Purged(0, 0)
    events = store.purge_synced(now - days * DAY)
    nonces = store.purge_nonces(now)
    if events:
        log.info("retention: purged %d synced events older than %d days", events, days)
    return Purged(events, nonces)
