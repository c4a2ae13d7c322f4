"""Signed updates from the hub: trust list, policy, data keys, time (docs/protocol/hub.md).

Each kind is accepted only if its envelope verifies against the key pinned for it and it is
newer than what the terminal holds; it is then kept in the store (``signed_docs``: the raw
envelope, re-verified when loaded) and handed to the daemon through a callback.

    kind    topic                signer     payload                                        "newer"
    trust   {prefix}/trust       root key   {"type":"trust-list","seq",...} (token.md §5)  seq
    policy  {prefix}/policy      hub key    {"type":"policy","seq","venues":{venue:{...}},  seq
                                            "staff":{...}} (the staff list, optional)
    keys    {prefix}/t/{tid}/keys hub key   {"type":"data-keys","seq","tid","keys":[...]}  seq
    time    {prefix}/time        hub key    {"type":"time","t":<unix seconds>}             t

Retained documents come again on every (re)subscription: the same seq with the same bytes is
a repeat, ignored quietly. Anything else that fails — a bad signature, an older or equal seq
with other bytes, another terminal's keys, a malformed document (out of bounds included: nesting
or numbers :mod:`terminal.core.boundedjson` refuses, a seq beyond SQLite's 2^63-1, a time beyond the
year 9999) — is ignored and counted in :attr:`SignedUpdates.rejected`, alone: the rest of the
pump round is applied (in memory: counters restart at zero with the process).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from terminal.hub import wire
from terminal.hub.wire import DataKey
from terminal.config import Config
from terminal.crypto.sm2 import PrivateKey, PublicKey
from terminal.state.store import Store
from terminal.core.trust import EnvelopeError, TrustList

log = logging.getLogger(__name__)

KINDS = ("trust", "policy", "keys", "time")


@dataclass
class Persisted:
    """What the store kept from earlier runs, re-verified: None/empty where nothing good is kept."""
    policy: wire.PolicyBundle | None = None
    data_keys: dict[int, DataKey] = field(default_factory=dict)
    seqs: dict[str, float] = field(default_factory=dict)  # kind → seq (time: t) held


class SignedUpdates:
    def __init__(self, store: Store, cfg: Config, device_key: PrivateKey, *,
                 on_trust: Callable[[TrustList], None] | None = None,
                 on_policy: Callable[[wire.PolicyBundle], None] | None = None,
                 on_data_keys: Callable[[dict[int, DataKey]], None] | None = None,
                 on_time: Callable[[float], None] | None = None):
        self._store = store
        self._tid = cfg.terminal_id
        self._device_key = device_key
        self._roots = {k.kid(): k for k in cfg.root_keys}
        self._hub: dict[str, PublicKey] = {cfg.hub_key.kid(): cfg.hub_key}
        self._callbacks = {"trust": on_trust, "policy": on_policy, "keys": on_data_keys, "time": on_time}
        kept = load_persisted(store, cfg, device_key)
        self.held: dict[str, float] = {k: kept.seqs.get(k, -1) for k in KINDS}
        self._held_raw: dict[str, bytes | None] = {k: (store.signed_doc(k) or (0, None))[1] for k in KINDS}
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    def handle(self, kind: str, raw: bytes) -> bool:
        """Verify, compare, keep and deliver one update; True if it was accepted."""
        try:
            seq, value = self._open(kind, raw)
        except EnvelopeError as e:
            return self._reject(kind, str(e))
        if seq <= self.held[kind]:
            if seq == self.held[kind] and raw == self._held_raw[kind]:
                return False  # the retained copy of what we hold, delivered again
            return self._reject(kind, f"seq {seq:g} is not newer than the held {self.held[kind]:g} (rollback)")
        self._store.save_signed_doc(kind, int(seq), raw)
        self.held[kind], self._held_raw[kind] = seq, raw
        self.accepted[kind] += 1
        log.info("hub: %s %g accepted", kind, seq)
        callback = self._callbacks[kind]
        if callback is not None:
            try:
                callback(value)
            except Exception:  # the daemon's wiring must not stop the link
                log.exception("hub: applying %s %g failed", kind, seq)
        return True

    def _open(self, kind: str, raw: bytes) -> tuple[float, object]:
        if kind == "trust":
            trust = wire.open_trust_list(raw, self._roots)
            for issuer in trust.issuers.values():  # here, not on the first presentation
                issuer.public_key.precompute()
            return trust.seq, trust
        if kind == "policy":
            p = wire.open_policy(raw, self._hub)
            return p.seq, p
        if kind == "keys":
            k = wire.open_data_keys(raw, self._hub, self._tid, self._device_key)
            return k.seq, k.keys
        t = wire.open_time(raw, self._hub)
        return t, t

    def _reject(self, kind: str, why: str) -> bool:
        self.rejected[kind] += 1
        log.warning("hub: %s update ignored: %s", kind, why)
        return False


def load_persisted(store: Store, cfg: Config, device_key: PrivateKey | None) -> Persisted:
    """The policy, data keys and seqs (a time beacon's seq is its time) kept by earlier runs,
    verified again against today's pinned keys (a kept document that no longer verifies is
    skipped, with a warning).
    The trust list is loaded by :func:`terminal.verifier.load_trust`."""
    hub = {cfg.hub_key.kid(): cfg.hub_key}
    out = Persisted()
    for kind in KINDS:
        kept = store.signed_doc(kind)
        if kept is None:
            continue
        try:
            if kind == "trust":
                out.seqs[kind] = wire.open_trust_list(kept[1], {k.kid(): k for k in cfg.root_keys}).seq
            elif kind == "policy":
                p = wire.open_policy(kept[1], hub)
                out.seqs[kind], out.policy = p.seq, p
            elif kind == "keys":
                if device_key is None:
                    continue
                k = wire.open_data_keys(kept[1], hub, cfg.terminal_id, device_key)
                out.seqs[kind], out.data_keys = k.seq, k.keys
            else:
                out.seqs[kind] = wire.open_time(kept[1], hub)
        except EnvelopeError as e:
            log.warning("hub: the kept %s no longer verifies (%s); ignoring it", kind, e)
    return out
