"""Signed updates from the hub: trust list, policy, data keys, time (docs/protocol/hub.md).

Each kind is accepted only if its envelope verifies against the key pinned for it and it is
newer than what the terminal holds; it is then kept in the store (``signed_docs``: the raw
envelope, re-verified when loaded) and handed to the daemon through a callback.

    kind    topic                signer     payload                                        "newer"
    trust   {prefix}/trust       root key   {"type":"trust-list","seq",...} (token.md §5)  seq
    policy  {prefix}/policy      hub key    {"type":"policy","seq","venues":{venue:{...}}} seq
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
from terminal.core import policy as pol
from terminal.core.boundedjson import MAX_SQL_INT, MAX_UNIX_TIME
from terminal.config import Config
from terminal.crypto.sm2 import PrivateKey, PublicKey, SM2Error
from terminal.state.store import Store
from terminal.core.trust import EnvelopeError, TrustList, open_trust_list

log = logging.getLogger(__name__)

KINDS = ("trust", "policy", "keys", "time")
DATA_KEY_BYTES = 16


def _count(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise EnvelopeError(f"{what} must be a non-negative integer")
    if v > MAX_SQL_INT:  # kept in an SQLite INTEGER
        raise EnvelopeError(f"{what} is beyond 2^63-1")
    return v


def parse_policy(doc: dict) -> tuple[int, dict[str, dict]]:
    """(seq, venue type → validated policy overrides); EnvelopeError if anything is off."""
    if doc.get("type") != "policy" or not isinstance(doc.get("venues"), dict):
        raise EnvelopeError("policy: not a {type: policy, seq, venues: {...}} document")
    venues = {}
    for venue, fields in doc["venues"].items():
        if venue not in pol.VENUES or not isinstance(fields, dict):
            raise EnvelopeError(f"policy: {str(venue)[:32]!r} is not a known venue type with a field table")
        try:
            venues[venue] = pol.validate_overrides(fields)
        except (ValueError, TypeError) as e:
            raise EnvelopeError(f"policy: {venue}.{e}") from None
    return _count(doc.get("seq"), "policy seq"), venues


@dataclass(frozen=True)
class DataKey:
    """A key from the hub: usable up to and including ``not_after``, which the verifier checks
    at each use against the decision's trusted time (not once, when the bundle arrives)."""
    key: bytes
    not_after: int


def parse_data_keys(doc: dict, tid: str, device_key: PrivateKey) -> tuple[int, dict[int, DataKey]]:
    """(seq, dkid → unwrapped key) of a bundle for ``tid``; EnvelopeError otherwise."""
    if doc.get("type") != "data-keys" or not isinstance(doc.get("keys"), list):
        raise EnvelopeError("keys: not a {type: data-keys, seq, tid, keys: [...]} document")
    if doc.get("tid") != tid:
        raise EnvelopeError(f"keys: bundle is for tid {str(doc.get('tid'))[:64]!r}, not {tid}")
    keys = {}
    for i, entry in enumerate(doc["keys"]):
        if not isinstance(entry, dict):
            raise EnvelopeError(f"keys[{i}] is not an object")
        dkid = _count(entry.get("dkid"), f"keys[{i}].dkid")
        try:
            key = device_key.decrypt(bytes.fromhex(entry.get("key")))
        except (SM2Error, ValueError, TypeError):
            raise EnvelopeError(f"keys[{i}].key does not decrypt with the device key") from None
        if len(key) != DATA_KEY_BYTES:
            raise EnvelopeError(f"keys[{i}].key is {len(key)} bytes, not {DATA_KEY_BYTES}")
        keys[dkid] = DataKey(key, _count(entry.get("not_after"), f"keys[{i}].not_after"))
    return _count(doc.get("seq"), "keys seq"), keys


def parse_time(doc: dict) -> float:
    t = doc.get("t")
    if doc.get("type") != "time" or isinstance(t, bool) or not isinstance(t, (int, float)) \
            or not 0 < t <= MAX_UNIX_TIME:
        raise EnvelopeError("time: not a {type: time, t: <unix seconds up to year 9999>} document")
    return float(t)


@dataclass
class Persisted:
    """What the store kept from earlier runs, re-verified: None/empty where nothing good is kept."""
    policy: dict[str, dict] | None = None
    data_keys: dict[int, DataKey] = field(default_factory=dict)
    seqs: dict[str, float] = field(default_factory=dict)  # kind → seq (time: t) held


class SignedUpdates:
    def __init__(self, store: Store, cfg: Config, device_key: PrivateKey, *,
                 on_trust: Callable[[TrustList], None] | None = None,
                 on_policy: Callable[[dict[str, dict]], None] | None = None,
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
            trust = open_trust_list(raw, self._roots)
            for issuer in trust.issuers.values():  # here, not on the first presentation
                issuer.public_key.precompute()
            return trust.seq, trust
        doc = wire.open_signed(raw, self._hub)
        if kind == "policy":
            return parse_policy(doc)
        if kind == "keys":
            return parse_data_keys(doc, self._tid, self._device_key)
        t = parse_time(doc)
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
                out.seqs[kind] = open_trust_list(kept[1], {k.kid(): k for k in cfg.root_keys}).seq
                continue
            doc = wire.open_signed(kept[1], hub)
            if kind == "policy":
                out.seqs[kind], out.policy = parse_policy(doc)
            elif kind == "keys":
                if device_key is None:
                    continue
                out.seqs[kind], out.data_keys = parse_data_keys(doc, cfg.terminal_id, device_key)
            else:
                out.seqs[kind] = parse_time(doc)
        except EnvelopeError as e:
            log.warning("hub: the kept %s no longer verifies (%s); ignoring it", kind, e)
    return out
