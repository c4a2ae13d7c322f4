"""Where a card's health status comes from: the seam the hub query plugs into.

A card says who someone is, not how they are; the provincial hub answers that (docs/protocol/hub.md,
card status query). Until a hub is configured, or whenever it cannot answer, ``lookup``
returns None and the venue policy's ``offline_unknown`` decides (reason ``status_unavailable``).
"""
from __future__ import annotations

from typing import Protocol

from terminal.core.policy import HealthStatus


class StatusSource(Protocol):
    def lookup(self, method: str, id_number: str, name: str, now: float) -> HealthStatus | None:
        """The holder's health status, or None if neither the hub nor a cache can say."""
        ...


class NoHub:
    """No hub configured: nobody can say."""

    def lookup(self, method: str, id_number: str, name: str, now: float) -> HealthStatus | None:
        return None
