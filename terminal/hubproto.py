"""The terminal ⇄ hub wire formats of docs/protocol/hub.md, shared by the terminal and the hub simulator.

Who signs what (a signed envelope is docs/protocol/token.md §5: ``{"payload", "signer", "sig"}``):

    hc/v1/t/{tid}/events   terminal → hub   signed by the terminal's device key
    hc/v1/t/{tid}/ack      hub → terminal   signed by the hub key   {"acked_seq": N, "tid": tid}
    hc/v1/t/{tid}/query    terminal → hub   plain JSON (the subject inside is SM2-encrypted)
    hc/v1/t/{tid}/reply    hub → terminal   signed by the hub key
    hc/v1/t/{tid}/keys     hub → terminal   signed by the hub key   (data keys wrapped to the device key)
    hc/v1/t/{tid}/state    terminal → hub   plain JSON, retained; the will says offline
    hc/v1/trust            hub → all        signed by a provincial root key (the trust list)
    hc/v1/policy           hub → all        signed by the hub key
    hc/v1/time             hub → all        signed by the hub key

The spec leaves the ack unsigned; a terminal that deletes events on an ack must not take a
forged one, so acks are signed too (and carry the tid they are for). The hub key — the one
``[hub] public_key`` pins and event subjects are encrypted to — signs everything the hub
says except trust lists, which only a root key signs.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from terminal.sm2 import PrivateKey, PublicKey
from terminal.trust import EnvelopeError, open_envelope, seal_envelope

DEFAULT_PREFIX = "hc/v1"
MAX_BATCH = 200
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
        doc = json.loads(payload)
    except ValueError:
        raise EnvelopeError("payload is not JSON") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("payload is not a JSON object")
    return doc


def batch(tid: str, events: list[dict], device_key: PrivateKey) -> bytes:
    """An event batch ``{"tid", "events": [...]}`` (≤ 200 events) signed by the device key."""
    if not 0 < len(events) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1-{MAX_BATCH} events")
    return seal({"tid": tid, "events": events}, device_key)


def ack(tid: str, acked_seq: int, hub_key: PrivateKey) -> bytes:
    return seal({"acked_seq": acked_seq, "tid": tid}, hub_key)
