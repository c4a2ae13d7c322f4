"""The card status cache: the hub's last good answer for a person, to stand in during an outage.

Keyed by HMAC-SM3 of the ID number under a random per-terminal secret (``meta`` key
``status_cache_key``), never by the number itself, so the database holds no ID number in the
clear and digests from two terminals cannot be matched. (The secret lives in the same
database: this keeps numbers out of the file, it does not stop someone holding the whole
file from testing candidate numbers one by one.) An entry stands in until
``min(valid_until, answered_at + status_cache_hours)``.
"""
from __future__ import annotations

import secrets

from terminal.crypto.gmcrypto import sm3
from terminal.core.policy import HealthStatus
from terminal.state.store import Store

SM3_BLOCK = 64
SECRET_META = "status_cache_key"


def hmac_sm3(key: bytes, message: bytes) -> bytes:
    """RFC 2104 HMAC over SM3 (64-byte blocks), on whichever SM3 gmcrypto has."""
    if len(key) > SM3_BLOCK:
        key = sm3(key)
    key = key.ljust(SM3_BLOCK, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in key) + message)
    return sm3(bytes(b ^ 0x5C for b in key) + inner)


class StatusCache:
    def __init__(self, store: Store):
        self._store = store
        self._secret = self._load_secret()

    def _load_secret(self) -> bytes:
        with self._store.write():
            value = self._store.get_meta(SECRET_META)
            if value is None:
                value = secrets.token_hex(32)
                self._store.set_meta(SECRET_META, value)
        return bytes.fromhex(value)

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
