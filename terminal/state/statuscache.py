"""The card status cache: the hub's last good answer for a person, to stand in during an outage.

Keyed by HMAC-SM3 of the ID number, never by the number itself, so the database holds no ID
number in the clear and digests from two terminals cannot be matched. The HMAC key is derived
from the device key (:func:`cache_key`) and never written anywhere: ID numbers are few enough
(district, birth date, three digits) to be found one by one from a digest and its key, so the
key must not sit beside the digests in ``terminal.db`` — a copy of the database alone tests no
candidate. The cache exists only with a hub, and a hub needs the device key, so there is no
second secret to provision. An entry stands in until ``min(valid_until, answered_at +
status_cache_hours)``; after a new device key the old entries match nobody and expire.
"""
from __future__ import annotations

from terminal.crypto.gmcrypto import hmac_sm3
from terminal.core.policy import HealthStatus
from terminal.crypto.sm2 import PrivateKey
from terminal.state.store import Store

# Domain separation: the device key's scalar keys this HMAC for this one purpose only.
KEY_LABEL = b"gate-terminal status cache key v1"


def cache_key(device_key: PrivateKey) -> bytes:
    """The cache's HMAC key: a PRF of the device key's private scalar under a fixed label."""
    return hmac_sm3(device_key.d.to_bytes(32, "big"), KEY_LABEL)


class StatusCache:
    def __init__(self, store: Store, key: bytes):
        self._store = store
        self._secret = key

    def digest(self, id_number: str) -> bytes:
        # "x" and "X" are the same check character (GB 11643)
        return hmac_sm3(self._secret, id_number.strip().upper().encode())

    def get(self, id_number: str, now: float) -> HealthStatus | None:
        row = self._store.cached_status(self.digest(id_number), now)
        return HealthStatus(**row) if row else None

    def put(self, id_number: str, health: HealthStatus, expires: float, now: float) -> None:
        if expires > now:
            self._store.cache_status(self.digest(id_number), vars(health), expires, now)

    def drop(self, id_number: str) -> None:
        self._store.drop_cached_status(self.digest(id_number))
