"""The terminal ⇄ hub wire formats of docs/protocol/hub.md, shared by the terminal and the hub simulator.

Who signs what (a signed envelope is docs/protocol/token.md §5: ``{"payload", "signer", "sig"}``):

    hc/v1/t/{tid}/events   terminal → hub   signed by the device key {"tid", "epoch", "events": [...]}
    hc/v1/t/{tid}/ack      hub → terminal   signed by the hub key   {"tid", "epoch", "acked_seq": N}
    hc/v1/t/{tid}/query    terminal → hub   plain JSON {"qid", "method", "subject"} (subject SM2-encrypted)
    hc/v1/t/{tid}/reply    hub → terminal   signed by the hub key   {"qid", status fields...} | {"qid", "error"}
    hc/v1/t/{tid}/keys     hub → terminal   signed by the hub key   {"type":"data-keys","seq","tid","keys":[...]}
                                            (each data key wrapped to the device key)
    hc/v1/t/{tid}/state    terminal → hub   plain JSON, retained; the will says offline
    hc/v1/trust            hub → all        signed by a provincial root key (the trust list, core/trust.py)
    hc/v1/policy           hub → all        signed by the hub key   {"type":"policy","seq","venues":{...},
                                            "staff":{"key","digests":[...]}} (staff optional, core/staff.py)
    hc/v1/time             hub → all        signed by the hub key   {"type":"time","t"}
    hc/v1/rollout          hub → all        signed by the hub key, retained: a staged software rollout
                                            {"type":"rollout","seq","version","stages":[...],"stage","halt"}
    hc/v1/t/{tid}/update   terminal → hub   signed by the device key {"version","state","reason"}
    hc/v1/t/{tid}/cmd      hub → terminal   signed by the hub key   {"type":"cmd","id","tid","op","args","not_after"}
    hc/v1/t/{tid}/cmd/result terminal → hub signed by the device key {"id","ok","detail"}
    hc/v1/t/{tid}/diag     terminal → hub   plain JSON chunks {"type":"diag","id","part","parts","data"}
                                            (the signed result names the bundle's SM3 digest)

Each kind has its builder and its parser side by side below (``batch``/``open_batch``,
``policy``/``open_policy``, ...): the terminal and the hub simulator use only these. A parser
raises a ValueError for anything forged or malformed (out of bounds included: nesting or numbers
:mod:`terminal.core.boundedjson` refuses, a seq beyond SQLite's 2^63-1, a time beyond the year
9999); forged is always EnvelopeError, its subclass.

The ack is signed (a terminal that deletes events on an ack must not take a forged one) and
names the tid and epoch it is for. ``epoch`` (16 lowercase hex characters, made once per
terminal database) names one run of seqs: a terminal whose state was lost starts again at
seq 1 under a new epoch, and the hub keeps and acks each epoch's seqs apart. The hub key —
the one ``[hub] public_key`` pins and event subjects are encrypted to — signs everything the
hub says except trust lists, which only a root key signs. The ``state`` birth message and
will are built here too (:func:`birth`, :data:`OFFLINE`).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from terminal.core import boundedjson
from terminal.core import policy as pol
from terminal.core.brokerurl import BrokerUrl, parse_broker_url  # noqa: F401  (the hub's side uses these)
from terminal.core.boundedjson import MAX_SQL_INT, MAX_UNIX_TIME
from terminal.core.policy import HealthStatus
# The staff list rides in the policy bundle and the staff QR code is the hub's: core/staff.py
# builds and parses both (a QR text, like a health code), named here.
from terminal.core.staff import NO_STAFF, StaffList, open_staff_qr, parse_staff_list, staff_list, staff_qr  # noqa: F401
from terminal.crypto.gmcrypto import sm3
from terminal.crypto.sm2 import PrivateKey, PublicKey, SM2Error
# The trust list is the core's document (token.md §5): built and parsed there, named here.
from terminal.core.trust import (EnvelopeError, envelope_payload, json_payload, open_envelope,  # noqa: F401
                                 open_trust_list, seal_envelope, trust_list)

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
    def cmd(self) -> str:
        return self.t("cmd")

    @property
    def cmd_result(self) -> str:
        return self.t("cmd/result")

    @property
    def diag(self) -> str:
        return self.t("diag")

    @property
    def trust(self) -> str:
        return f"{self.prefix}/trust"

    @property
    def policy(self) -> str:
        return f"{self.prefix}/policy"

    @property
    def time(self) -> str:
        return f"{self.prefix}/time"

    @property
    def rollout(self) -> str:
        return f"{self.prefix}/rollout"

    @property
    def update(self) -> str:
        return self.t("update")


def tid_of(prefix: str, topic: str, leaf: str) -> str | None:
    """The tid of ``{prefix}/t/{tid}/{leaf}``, or None (the hub's side: which terminal sent it)."""
    head, tail = f"{prefix}/t/", f"/{leaf}"
    if topic.startswith(head) and topic.endswith(tail):
        tid = topic[len(head):-len(tail)]
        if tid and "/" not in tid:
            return tid
    return None


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
    doc = json_payload(open_envelope(raw, keys))
    if not isinstance(doc, dict):
        raise EnvelopeError("payload is not a JSON object")
    return doc


# An event's "gate" (docs/protocol/hub.md): what became of the gate for it. Absent in the events of
# a terminal from before it was recorded.
GATES = ("opened", "fault", None)


def batch(tid: str, epoch: str, events: list[dict], device_key: PrivateKey) -> bytes:
    """An event batch ``{"tid", "epoch", "events": [...]}`` (≤ 200 events) signed by the device key."""
    if not 0 < len(events) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1-{MAX_BATCH} events")
    if not all(e.get("gate") in GATES for e in events):
        raise ValueError(f"an event's gate is one of {GATES}")
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
    not ``{"tid", "epoch", "events"}`` with 1-200 events of integer seq 1 ≤ seq < 2^63 whose
    ``gate``, if there is one, is "opened", "fault" or null."""
    doc = open_signed(raw, {device_key.kid(): device_key})
    tid, epoch, events = doc.get("tid"), doc.get("epoch"), doc.get("events")
    if not isinstance(tid, str) or not is_epoch(epoch):
        raise ValueError("no tid, or epoch is not 16 lowercase hex characters")
    if (not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH
            or not all(isinstance(e, dict) and type(e.get("seq")) is int and 1 <= e["seq"] < 2 ** 63
                       for e in events)):
        raise ValueError(f"not 1-{MAX_BATCH} events with integer seq >= 1")
    if not all(e.get("gate") in GATES for e in events):
        raise ValueError('an event\'s gate is not "opened", "fault" or null')
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


def birth(*, version: str, epoch: str, queue: int, trust_seq: int, policy_seq: int, clock: str,
          alarms: list[str]) -> bytes:
    """The retained ``state`` a terminal publishes on every connect and whenever its alarms change."""
    return dumps({"state": "online", "version": version, "epoch": epoch, "queue": queue,
                  "trust_seq": trust_seq, "policy_seq": policy_seq, "clock": clock, "alarms": sorted(alarms)})


OFFLINE = dumps({"state": "offline"})  # the will, and the last word of a clean shutdown


def _count(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise EnvelopeError(f"{what} must be a non-negative integer")
    if v > MAX_SQL_INT:  # kept in an SQLite INTEGER
        raise EnvelopeError(f"{what} is beyond 2^63-1")
    return v


def policy(seq: int, venues: dict[str, dict], hub_key: PrivateKey, staff: dict | None = None) -> bytes:
    """The policy bundle: venue type → overrides of its preset (core/policy.py), and the staff
    list (:func:`staff_list`) when the hub keeps one."""
    doc = {"type": "policy", "seq": seq, "venues": venues}
    if staff is not None:
        doc["staff"] = staff
    return seal(doc, hub_key)


@dataclass(frozen=True)
class PolicyBundle:
    seq: int
    venues: dict[str, dict]  # venue type → validated overrides
    staff: StaffList = NO_STAFF


def open_policy(raw: bytes, hub_keys: dict[str, PublicKey]) -> PolicyBundle:
    doc = open_signed(raw, hub_keys)
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
    staff = NO_STAFF
    if "staff" in doc:
        try:
            staff = parse_staff_list(doc["staff"])
        except ValueError as e:
            raise EnvelopeError(f"policy: {e}") from None
    return PolicyBundle(_count(doc.get("seq"), "policy seq"), venues, staff)


DATA_KEY_BYTES = 16


@dataclass(frozen=True)
class DataKey:
    """A key from the hub: usable up to and including ``not_after``, which the verifier checks
    at each use against the decision's trusted time (not once, when the bundle arrives)."""
    key: bytes
    not_after: int


def data_keys(seq: int, tid: str, keys: dict[int, DataKey], device: PublicKey, hub_key: PrivateKey) -> bytes:
    """The SM4 data keys for ``tid`` (dkid → key), each wrapped to its device key, in dkid order."""
    return seal({"type": "data-keys", "seq": seq, "tid": tid,
                 "keys": [{"dkid": dkid, "key": device.encrypt(k.key).hex(), "not_after": k.not_after}
                          for dkid, k in sorted(keys.items())]}, hub_key)


@dataclass(frozen=True)
class DataKeys:
    seq: int
    keys: dict[int, DataKey]


def open_data_keys(raw: bytes, hub_keys: dict[str, PublicKey], tid: str, device_key: PrivateKey) -> DataKeys:
    """A bundle for ``tid``, unwrapped with its device key."""
    doc = open_signed(raw, hub_keys)
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
    return DataKeys(_count(doc.get("seq"), "keys seq"), keys)


def time_beacon(t: int | float, hub_key: PrivateKey) -> bytes:
    return seal({"type": "time", "t": t}, hub_key)


def open_time(raw: bytes, hub_keys: dict[str, PublicKey]) -> float:
    """The beacon's unix seconds, above 0 and up to the year 9999."""
    doc = open_signed(raw, hub_keys)
    t = doc.get("t")
    if doc.get("type") != "time" or isinstance(t, bool) or not isinstance(t, (int, float)) \
            or not 0 < t <= MAX_UNIX_TIME:
        raise EnvelopeError("time: not a {type: time, t: <unix seconds up to year 9999>} document")
    return float(t)


QUERY_METHODS = ("id_card", "ss_card")


def query(qid: str, method: str, id_number: str, name: str, hub_key: PublicKey) -> bytes:
    """A card status query; only the hub can read who it is about."""
    subject = hub_key.encrypt(json.dumps({"id_number": id_number, "name": name}, ensure_ascii=False).encode())
    return dumps({"qid": qid, "method": method, "subject": subject.hex()})


@dataclass(frozen=True)
class Query:
    qid: str
    method: str
    subject: object  # as sent: :func:`open_subject` reads it


def open_query(raw: bytes) -> Query:
    """``{"qid": str, "method": id_card|ss_card, "subject"}``; ValueError otherwise."""
    try:
        q = boundedjson.loads(raw)
        qid = q["qid"]
        if not isinstance(qid, str) or q.get("method") not in QUERY_METHODS:
            raise ValueError
        return Query(qid, q["method"], q.get("subject"))
    except (ValueError, KeyError, TypeError):
        raise ValueError("not a {qid, method, subject} object") from None


def open_subject(q: Query, hub_key: PrivateKey) -> tuple[str, str]:
    """(id_number, name) the query is about; ValueError if it does not decrypt to them."""
    try:
        who = boundedjson.loads(hub_key.decrypt(bytes.fromhex(q.subject)))  # type: ignore[arg-type]
        id_number, name = who["id_number"], who["name"]
        if not isinstance(id_number, str) or not isinstance(name, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, SM2Error):
        raise ValueError("the subject does not decrypt to {id_number, name}") from None
    return id_number, name


# A reply's status fields and their ranges (docs/protocol/hub.md); valid_until is unix seconds.
REPLY_RANGES = {"status": (0, 2), "flags": (0, 0xFF), "nat_at": (0, 1 << 40), "nat_result": (0, 3),
                "vax_doses": (0, 99)}


def reply(qid: str, answer: dict, hub_key: PrivateKey) -> bytes:
    """``answer`` is the status fields and ``valid_until``, or ``{"error": ...}``
    ("unknown_person", "bad_subject"); sent as given (the simulator may send what a terminal refuses)."""
    return seal({"qid": qid, **answer}, hub_key)


@dataclass(frozen=True)
class Reply:
    status: HealthStatus | None  # None with an error
    valid_until: float | None
    error: object = None


def open_reply(raw: bytes, hub_keys: dict[str, PublicKey], qid: str) -> Reply:
    """The hub's answer to query ``qid``: an error, or every status field in range."""
    doc = open_signed(raw, hub_keys)
    if doc.get("qid") != qid:
        raise EnvelopeError("reply is for another query")
    if "error" in doc:
        return Reply(None, None, doc["error"])
    values = {}
    for name, (lo, hi) in REPLY_RANGES.items():
        v = doc.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise EnvelopeError(f"reply: {name} must be an integer from {lo} to {hi}")
        values[name] = v
    valid_until = doc.get("valid_until")
    if isinstance(valid_until, bool) or not isinstance(valid_until, (int, float)) \
            or not 0 <= valid_until <= MAX_UNIX_TIME:
        raise EnvelopeError("reply: valid_until must be unix seconds up to year 9999")
    return Reply(HealthStatus(**values), float(valid_until))


# --- software updates (docs/protocol/updates.md) -------------------------------------------
# A release version: dotted numbers only (1-4 of them, each ≤ 6 digits), compared as numbers.
VERSION = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}")
MAX_STAGES = 16
MAX_STAGE_TIDS = 10_000
UPDATE_STATES = ("installed", "good", "rolled_back", "refused")
MAX_REASON = 200


def version_key(version: str) -> tuple[int, ...]:
    """``"1.10.0"`` → (1, 10, 0, 0): compares as numbers, 1.2 == 1.2.0; ValueError if not a VERSION."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise ValueError(f"{str(version)[:32]!r} is not a release version (dotted numbers, as 1.4.2)")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


@dataclass(frozen=True)
class Stage:
    name: str
    tids: tuple[str, ...] | None = None  # a named list of terminals ...
    percent: int | None = None           # ... or the terminals whose hash bucket is under it


def bucket(tid: str) -> int:
    """A terminal's place 0-99 for percentage stages: the same for every release, so a rollout
    widening from 10 % to 50 % keeps its first 10 %."""
    return int.from_bytes(hashlib.sha256(tid.encode()).digest()[:8], "big") % 100


@dataclass(frozen=True)
class Rollout:
    seq: int
    version: str
    stages: tuple[Stage, ...]
    stage: int   # the current stage: it and every earlier one are rolled out
    halt: bool

    def stage_of(self, tid: str) -> int | None:
        """The first stage naming ``tid`` (or whose percentage covers its bucket), or None."""
        for i, s in enumerate(self.stages):
            if (tid in s.tids) if s.tids is not None else bucket(tid) < s.percent:
                return i
        return None

    def includes(self, tid: str) -> bool:
        """Whether ``tid`` should run this version now: its stage is reached and nothing halted."""
        i = self.stage_of(tid)
        return not self.halt and i is not None and i <= self.stage


def _stage_doc(s: Stage) -> dict:
    return {"name": s.name, "tids": list(s.tids)} if s.tids is not None else {"name": s.name, "percent": s.percent}


def rollout(r: Rollout, hub_key: PrivateKey) -> bytes:
    return seal({"type": "rollout", "seq": r.seq, "version": r.version,
                 "stages": [_stage_doc(s) for s in r.stages], "stage": r.stage, "halt": r.halt}, hub_key)


def _open_stage(i: int, doc: object) -> Stage:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not 0 < len(doc["name"]) <= 32:
        raise EnvelopeError(f"rollout: stages[{i}] has no name of 1-32 characters")
    tids, percent = doc.get("tids"), doc.get("percent")
    if (tids is None) == (percent is None):
        raise EnvelopeError(f"rollout: stages[{i}] must have either tids or percent")
    if tids is not None:
        if (not isinstance(tids, list) or len(tids) > MAX_STAGE_TIDS
                or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tids)):
            raise EnvelopeError(f"rollout: stages[{i}].tids is not a list of at most {MAX_STAGE_TIDS} tids")
        return Stage(doc["name"], tids=tuple(tids))
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise EnvelopeError(f"rollout: stages[{i}].percent is not an integer from 0 to 100")
    return Stage(doc["name"], percent=percent)


def open_rollout(raw: bytes, hub_keys: dict[str, PublicKey]) -> Rollout:
    """A hub-signed rollout; EnvelopeError for anything forged or malformed."""
    doc = open_signed(raw, hub_keys)
    if doc.get("type") != "rollout":
        raise EnvelopeError("rollout: not a {type: rollout, ...} document")
    try:
        version_key(doc.get("version"))
    except ValueError as e:
        raise EnvelopeError(f"rollout: version {e}") from None
    stages = doc.get("stages")
    if not isinstance(stages, list) or not 0 < len(stages) <= MAX_STAGES:
        raise EnvelopeError(f"rollout: stages is not a list of 1-{MAX_STAGES} stages")
    parsed = tuple(_open_stage(i, s) for i, s in enumerate(stages))
    stage, halt = doc.get("stage"), doc.get("halt")
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < len(parsed):
        raise EnvelopeError("rollout: stage is not the index of one of its stages")
    if not isinstance(halt, bool):
        raise EnvelopeError("rollout: halt is not true or false")
    return Rollout(_count(doc.get("seq"), "rollout seq"), doc["version"], parsed, stage, halt)


@dataclass(frozen=True)
class UpdateReport:
    version: str
    state: str    # one of UPDATE_STATES
    reason: str


def update_report(r: UpdateReport, device_key: PrivateKey) -> bytes:
    return seal({"version": r.version, "state": r.state, "reason": r.reason[:MAX_REASON]}, device_key)


def open_update_report(raw: bytes, device_key: PublicKey) -> UpdateReport:
    """A terminal's report, signed by its device key; EnvelopeError if forged or malformed."""
    doc = open_signed(raw, {device_key.kid(): device_key})
    version, state, reason = doc.get("version"), doc.get("state"), doc.get("reason")
    if not isinstance(version, str) or not 0 < len(version) <= 32:
        raise EnvelopeError("update: version is not a string of 1-32 characters")
    if state not in UPDATE_STATES:
        raise EnvelopeError(f"update: state is not one of {', '.join(UPDATE_STATES)}")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise EnvelopeError(f"update: reason is not a string of at most {MAX_REASON} characters")
    return UpdateReport(version, state, reason)


# --- remote commands (docs/protocol/hub.md, Remote commands) --------------------------------------
CMD_OPS = ("ping", "reload", "set_log_level", "diagnostics", "gate_test", "open_gate", "update", "restart")
CMD_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # a UUID, as the hub makes them; bounded, safe in a log


def command(cid: str, tid: str, op: str, args: dict, not_after: int, hub_key: PrivateKey) -> bytes:
    """A remote command for ``tid``, to be run at most once and not after ``not_after`` (unix s)."""
    return seal({"type": "cmd", "id": cid, "tid": tid, "op": op, "args": args, "not_after": not_after}, hub_key)


@dataclass(frozen=True)
class Command:
    id: str
    tid: str
    op: str          # may be an op this terminal does not know: refused with unknown_op, not malformed
    args: dict
    not_after: int


def open_command(raw: bytes, hub_keys: dict[str, PublicKey]) -> Command:
    """A hub-signed command: EnvelopeError if it does not verify, ValueError if it is not
    ``{"type": "cmd", "id", "tid", "op", "args": {...}, "not_after"}`` with an id of 1-64
    ``[A-Za-z0-9-]``, string tid and op (≤ 64), and not_after unix seconds up to the year 9999."""
    doc = open_signed(raw, hub_keys)
    cid, tid, op, args, not_after = (doc.get(k) for k in ("id", "tid", "op", "args", "not_after"))
    if doc.get("type") != "cmd" or not isinstance(cid, str) or not CMD_ID.fullmatch(cid):
        raise ValueError("not a {type: cmd, id: <1-64 of A-Z a-z 0-9 ->, ...} document")
    if not isinstance(tid, str) or not isinstance(op, str) or len(tid) > 64 or len(op) > 64:
        raise ValueError("tid and op must be strings of up to 64 characters")
    if not isinstance(args, dict):
        raise ValueError("args must be an object")
    if isinstance(not_after, bool) or not isinstance(not_after, int) or not 0 <= not_after <= MAX_UNIX_TIME:
        raise ValueError("not_after must be unix seconds up to year 9999")
    return Command(cid, tid, op, args, not_after)


def command_id_of(raw: bytes) -> str | None:
    """The id a command that could not be opened claims (unverified), to answer it by; None if
    there is no well-formed one."""
    try:
        doc = json_payload(envelope_payload(raw))
    except (EnvelopeError, ValueError, TypeError):
        return None
    cid = doc.get("id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, str) and CMD_ID.fullmatch(cid) else None


def command_result(cid: str | None, ok: bool, detail: object, device_key: PrivateKey) -> bytes:
    """The terminal's answer: ``detail`` is a refusal's ``"<reason>: <words>"``, or what the op says."""
    return seal({"id": cid, "ok": ok, "detail": detail}, device_key)


@dataclass(frozen=True)
class CommandResult:
    id: str | None
    ok: bool
    detail: object


def open_command_result(raw: bytes, device_key: PublicKey) -> CommandResult:
    doc = open_signed(raw, {device_key.kid(): device_key})
    if not isinstance(doc.get("ok"), bool) or not (doc.get("id") is None or isinstance(doc.get("id"), str)):
        raise ValueError("not an {id, ok: true/false, detail} result")
    return CommandResult(doc.get("id"), doc["ok"], doc.get("detail"))


DIAG_CHUNK = 64 << 10      # the largest diag message
DIAG_TOTAL = 1 << 20       # all of one bundle's messages together
# Raw bytes per chunk: base64 makes 4/3 of it, and the chunk's JSON around it stays under 1 KiB.
DIAG_RAW_CHUNK = (DIAG_CHUNK - 1024) // 4 * 3
DIAG_MAX_BUNDLE = DIAG_TOTAL // DIAG_CHUNK * DIAG_RAW_CHUNK  # 16 chunks


def diag_chunks(cid: str, bundle: bytes) -> list[bytes]:
    """A diagnostics bundle as ``{"type": "diag", "id", "part", "parts", "data": <base64>}``
    messages of ≤ 64 KiB, ≤ 1 MiB together (ValueError for a larger bundle). Plain JSON: the
    signed command result carries the bundle's SM3 digest (:func:`diag_digest`)."""
    if len(bundle) > DIAG_MAX_BUNDLE:
        raise ValueError(f"a diagnostics bundle is at most {DIAG_MAX_BUNDLE} bytes")
    pieces = [bundle[i:i + DIAG_RAW_CHUNK] for i in range(0, len(bundle), DIAG_RAW_CHUNK)] or [b""]
    return [dumps({"type": "diag", "id": cid, "part": i, "parts": len(pieces),
                   "data": base64.b64encode(p).decode()}) for i, p in enumerate(pieces)]


def diag_digest(bundle: bytes) -> str:
    return sm3(bundle).hex()


@dataclass(frozen=True)
class DiagChunk:
    id: str
    part: int
    parts: int
    data: bytes


def open_diag_chunk(raw: bytes) -> DiagChunk:
    """One chunk, bounded: ValueError unless ≤ 64 KiB and well formed."""
    if len(raw) > DIAG_CHUNK:
        raise ValueError("a diag chunk is at most 64 KiB")
    try:
        doc = boundedjson.loads(raw)
        cid, part, parts = doc["id"], doc["part"], doc["parts"]
        if doc.get("type") != "diag" or not isinstance(cid, str) or type(part) is not int \
                or type(parts) is not int or not 0 <= part < parts <= DIAG_TOTAL // DIAG_CHUNK:
            raise ValueError
        return DiagChunk(cid, part, parts, base64.b64decode(doc["data"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValueError("not a {type: diag, id, part, parts, data} chunk") from None
