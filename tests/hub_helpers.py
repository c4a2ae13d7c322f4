"""Shared pieces of the hub link tests: keys of a `sim keys` set, events, signed hub documents."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from terminal.hub import wire
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey
from terminal.state.store import Store

# A subject as the verifier writes it (SM2 ciphertext hex); the tests need only its size.
SUBJECT = "04" + "ab" * 150


def keys(keyset: Path) -> dict[str, PrivateKey]:
    return {n: load_private_key(keyset / f"{n}.pem") for n in ("root", "issuer", "hub", "device")}


def event() -> dict:
    return {"id": str(uuid.uuid4()), "at": time.time(), "boot_id": "b", "mono_ns": time.monotonic_ns(),
            "clock": "trusted", "method": "qr", "decision": "allow", "reason": "ok", "status": 0,
            "flags": 0, "latency_ms": 1.0, "subject": SUBJECT}


def commit_events(store: Store, n: int, per_tx: int = 500) -> list[int]:
    seqs = []
    while len(seqs) < n:
        with store.write():
            for _ in range(min(per_tx, n - len(seqs))):
                seqs.append(store.insert_event(event()))
    return seqs


def signed(doc: dict, key: PrivateKey) -> bytes:
    return wire.seal(doc, key)


def policy_doc(seq: int, **fields) -> dict:
    return {"type": "policy", "seq": seq, "venues": {"mall": fields or {"nat_hours": 24}}}


def keys_doc(seq: int, tid: str, device: PrivateKey, dkid: int = 7, key: bytes = b"k" * 16,
             not_after: int | None = None) -> dict:
    return {"type": "data-keys", "seq": seq, "tid": tid, "keys": [{
        "dkid": dkid, "key": device.public_key.encrypt(key).hex(),
        "not_after": not_after if not_after is not None else int(time.time()) + 86400}]}


def time_doc(t: float) -> dict:
    return {"type": "time", "t": t}


def loads(raw: bytes) -> dict:
    return json.loads(raw)
