"""The terminal ⇄ hub wire formats of docs/protocol/hub.md, shared by the terminal and the hub simulator.

Who signs what (a signed envelope is docs/protocol/token.md §5: ``{"payload", "signer", "sig"}``):

    hc/v1/t/{tid}/events   terminal → hub   signed by the device key {"tid", "epoch", "events": [...]}
    hc/v1/t/{tid}/ack      hub → terminal   signed by the hub key   {"tid", "epoch", "acked_seq": N}
    hc/v1/t/{tid}/query    terminal → hub   plain JSON (the subject inside is SM2-encrypted)
    hc/v1/t/{tid}/reply    hub → terminal   signed by the hub key
    hc/v1/t/{tid}/keys     hub → terminal   signed by the hub key   (data keys wrapped to the device key)
    hc/v1/t/{tid}/state    terminal → hub   plain JSON, retained; the will says offline
    hc/v1/trust            hub → all        signed by a provincial root key (the trust list)
    hc/v1/policy           hub → all        signed by the hub key
    hc/v1/time             hub → all        signed by the hub key

The ack is signed (a terminal that deletes events on an ack must not take a forged one) and
names the tid and epoch it is for. ``epoch`` (16 lowercase hex characters, made once per
terminal database) names one run of seqs: a terminal whose state was lost starts again at
seq 1 under a new epoch, and the hub keeps and acks each epoch's seqs apart. The hub key —
the one ``[hub] public_key`` pins and event subjects are encrypted to — signs everything the
hub says except trust lists, which only a root key signs. The ``state`` birth message and
will are built here too (:func:`birth`, :data:`OFFLINE`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from terminal.core import boundedjson
from terminal.crypto.sm2 import PrivateKey, PublicKey
from terminal.core.trust import EnvelopeError, open_envelope, seal_envelope

DEFAULT_PREFIX = "hc/v1"
MAX_BATCH = 200
EPOCH = re.compile(r"[0-9a-f]{16}")
# The hub's shared-subscription group: hub configuration that terminals must not be able to
# guess (Mosquitto deals shared messages before its read check, docs/protocol/hub.md).
SHARE_GROUP = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Topics:
    prefix: str
    tid: str

    def t(self, leaf: str) -> str:
        return f"{self.prefix}/t/{self.tid}/{leaf}"

    @property
    def events(self) -> str:
        return self.t("events")

    @property
    def ack(self) -> str:
        return self.t("ack")

    @property
    def state(self) -> str:
        return self.t("state")

    @property
    def query(self) -> str:
        return self.t("query")

    @property
    def reply(self) -> str:
        return self.t("reply")

    @property
    def keys(self) -> str:
        return self.t("keys")

    @property
    def trust(self) -> str:
        return f"{self.prefix}/trust"

    @property
    def policy(self) -> str:
        return f"{self.prefix}/policy"

    @property
    def time(self) -> str:
        return f"{self.prefix}/time"


def is_epoch(value: object) -> bool:
    return isinstance(value, str) and EPOCH.fullmatch(value) is not None


def shared_events_subscription(prefix: str, group: str) -> str:
    """``$share/<group>/<prefix>/t/+/events``; ValueError unless ``group`` is 16-64 of [A-Za-z0-9_-]."""
    if not isinstance(group, str) or not SHARE_GROUP.fullmatch(group):
        raise ValueError("the share group must be 16-64 characters of A-Z a-z 0-9 _ - "
                         "(a secret among hub instances, never a guessable name)")
    return f"$share/{group}/{prefix}/t/+/events"


def dumps(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def seal(doc: dict, key: PrivateKey) -> bytes:
    return seal_envelope(dumps(doc), key)


def open_signed(raw: bytes, keys: dict[str, PublicKey]) -> dict:
    """Verify a signed envelope and parse its JSON object payload; EnvelopeError otherwise."""
    payload = open_envelope(raw, keys)
    try:
        doc = boundedjson.loads(payload)
    except boundedjson.JsonLimitError as e:
        raise EnvelopeError(f"payload refused unparsed: {e}") from None
    except ValueError:
        raise EnvelopeError("payload is not JSON") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("payload is not a JSON object")
    return doc


def batch(tid: str, epoch: str, events: list[dict], device_key: PrivateKey) -> bytes:
    """An event batch ``{"tid", "epoch", "events": [...]}`` (≤ 200 events) signed by the device key."""
    if not 0 < len(events) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1-{MAX_BATCH} events")
    if not is_epoch(epoch):
        raise ValueError("epoch must be 16 lowercase hex characters")
    return seal({"tid": tid, "epoch": epoch, "events": events}, device_key)


@dataclass(frozen=True)
class Batch:
    tid: str
    epoch: str
    events: list[dict]


def open_batch(raw: bytes, device_key: PublicKey) -> Batch:
    """A batch signed by ``device_key``: EnvelopeError if it does not verify, ValueError if it is
    not ``{"tid", "epoch", "events"}`` with 1-200 events of integer seq 1 ≤ seq < 2^63."""
    doc = open_signed(raw, {device_key.kid(): device_key})
    tid, epoch, events = doc.get("tid"), doc.get("epoch"), doc.get("events")
    if not isinstance(tid, str) or not is_epoch(epoch):
        raise ValueError("no tid, or epoch is not 16 lowercase hex characters")
    if (not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH
            or not all(isinstance(e, dict) and type(e.get("seq")) is int and 1 <= e["seq"] < 2 ** 63
                       for e in events)):
        raise ValueError(f"not 1-{MAX_BATCH} events with integer seq >= 1")
    return Batch(tid, epoch, events)


def ack(tid: str, epoch: str, acked_seq: int, hub_key: PrivateKey) -> bytes:
    """Every event of ``tid``'s ``epoch`` with seq ≤ ``acked_seq`` is stored at the hub."""
    return seal({"tid": tid, "epoch": epoch, "acked_seq": acked_seq}, hub_key)


@dataclass(frozen=True)
class Ack:
    tid: str
    epoch: str
    acked_seq: int


def open_ack(raw: bytes, hub_keys: dict[str, PublicKey]) -> Ack:
    """A hub-signed ack: EnvelopeError if it does not verify, ValueError if it is not
    ``{"tid", "epoch", "acked_seq"}`` with a string tid, an epoch and a non-negative integer."""
    doc = open_signed(raw, hub_keys)
    tid, epoch, n = doc.get("tid"), doc.get("epoch"), doc.get("acked_seq")
    if not isinstance(tid, str) or not is_epoch(epoch):
        raise ValueError("no tid, or epoch is not 16 lowercase hex characters")
    if type(n) is not int or n < 0:
        raise ValueError("acked_seq is not a non-negative integer")
    return Ack(tid, epoch, n)


def birth(*, version: str, epoch: str, queue: int, trust_seq: int, policy_seq: int, clock: str) -> bytes:
    """The retained ``state`` a terminal publishes on every connect."""
    return dumps({"state": "online", "version": version, "epoch": epoch, "queue": queue,
                  "trust_seq": trust_seq, "policy_seq": policy_seq, "clock": clock})


OFFLINE = dumps({"state": "offline"})  # the will, and the last word of a clean shutdown
