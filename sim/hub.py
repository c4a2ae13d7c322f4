"""The provincial hub, simulated: event ingest with signed acks, card status answers, broadcasts.

Threads (paho callbacks never lock, sleep or touch SQLite; they only enqueue)::

    paho     network loop; reconnects after exponential backoff with jitter (set per attempt)
    ingest   event batches: verify → store (SQLite) → ack; software update results: verify → the
             rollout judge (sim/rollout.py), which publishes the next stage or the halt
    query    card status queries: decrypt subject → look up → signed reply (after reply_delay)
    beacon   a signed time beacon every time_interval seconds
    commands command results and diagnostics chunks from terminals (sim/hub_commands.py):
             verified, kept for :meth:`HubSim.result` and :meth:`HubSim.diagnostics`
             (commands go out with :meth:`HubSim.send_command`)

Ingest of one batch on ``{prefix}/t/{tid}/events``:
1. the envelope must verify against the device key registered for the topic's ``tid`` and
   name that same ``tid`` inside; otherwise it is dropped and counted ``forged`` (not stored,
   not acked). A well-signed batch that is not ``{"tid", "epoch", "events"}`` with 1-200
   events of integer ``seq`` ≥ 1 is dropped as ``malformed`` (``wire.open_batch``).
2. its events go into SQLite once each by ``(tid, epoch, seq)`` (INSERT OR IGNORE inside
   BEGIN IMMEDIATE), so two consumers may share one DB file (WAL, busy timeout). A terminal
   whose database was lost starts again at seq 1 under a new epoch: those events are new,
   stored beside the old epoch's, never taken for duplicates of them.
3. the ack, signed by the hub key (``wire.ack``), names the tid and epoch and says the
   highest CONTIGUOUS seq held for that pair: never past a gap, since the terminal deletes
   everything up to it. A duplicate batch is acked again (its first ack may have been lost).

Where contiguity starts, per (tid, epoch): with ``start_seq=None`` (the default), for an
epoch the hub holds nothing of, at the lowest seq of the first batch it stores. Caveat: with
batches in flight, if batch 2 of a never-seen epoch lands first, the hub acks it and the
terminal drops batch 1 too, which is lost if it never arrives. A hub that knows terminals
from provisioning should pass ``start_seq=1`` (every epoch's seqs start at 1): then nothing
is acked until seq 1 is held. Acks from two consumers can arrive out of order: a terminal
keeps the highest it has seen.

The share group (``group``) is hub configuration and has no default: on Mosquitto, anyone who
can name it can join it and swallow a share of every terminal's batches (sim/broker.py).

Event subjects are SM2 ciphertext to the hub key and stay so in the DB: decrypting costs
~2 ms each in Python, so it is kept off the ingest path and done on demand
(:meth:`HubSim.subject`). Logs show masked names and ID numbers only.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.backoff import backoff_delay
from sim.issuer import staff_code
from sim.hub_commands import CommandDesk
from sim.rollout import RolloutController, StagePlan
from terminal.hub import wire
from drivers.idnumber import mask_id, mask_name
from terminal.crypto.sm2 import PrivateKey, PublicKey, SM2Error
from terminal.core.trust import EnvelopeError, envelope_payload, parse_trust_list

log = logging.getLogger("sim.hub")

STATUS_FIELDS = ("status", "flags", "nat_at", "nat_result", "vax_doses", "valid_until")
PUBLISH_WAIT = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    tid TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, stored_at REAL NOT NULL,
    PRIMARY KEY (tid, epoch, seq)) WITHOUT ROWID;
-- acked_seq: highest contiguous seq held of that epoch; contiguity starts where its first batch did
CREATE TABLE IF NOT EXISTS acks (tid TEXT NOT NULL, epoch TEXT NOT NULL, acked_seq INTEGER NOT NULL,
    PRIMARY KEY (tid, epoch));
-- the last retained document per topic, published again on every (re)connect
CREATE TABLE IF NOT EXISTS docs (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL);
"""


def connect_db(path: Path) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit BEGIN IMMEDIATE), WAL, long busy wait."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across a process crash
    return db


@contextlib.contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    db = connect_db(path)
    try:
        yield db
    finally:
        db.close()


class HubSim:
    """One hub consumer. ``with HubSim(...) as hub:`` or ``start()``/``stop()``."""

    def __init__(self, broker_url: str, ca: Path | None, cert: Path | None, key: Path | None, *,
                 hub_key: PrivateKey, root_key: PrivateKey | None = None, db_path: Path,
                 prefix: str = wire.DEFAULT_PREFIX, terminals: dict[str, PublicKey],
                 group: str, people: dict[str, dict] | None = None, client_id: str | None = None,
                 start_seq: int | None = None, time_interval: float = 60.0, mute_queries: bool = False,
                 reply_delay: float = 0.0, backoff: tuple[float, float] = (0.2, 30.0),
                 on_line: Callable[[str], None] | None = None) -> None:
        self.tls, self.host, self.port = wire.parse_broker_url(broker_url, plain_anywhere=True)
        self.hub_key = hub_key
        self.root_key = root_key
        self.db_path = Path(db_path)
        self.prefix = prefix
        self.topics = wire.Topics(prefix, "+")  # the query subscription; the broadcasts name no tid
        self.terminals = dict(terminals)
        for k in self.terminals.values():
            k.precompute()  # every batch of that terminal is verified with it
        self.people = dict(people or {})
        self.events_subscription = wire.shared_events_subscription(prefix, group)  # ValueError: guessable
        self.start_seq = start_seq
        self.time_interval = time_interval
        self.mute_queries = mute_queries
        self.reply_delay = reply_delay
        self.backoff = backoff
        self.line = on_line or log.info
        self.stats: Counter[str] = Counter()  # batches, stored, duplicates, forged, malformed, acks, ...

        self._events_q: queue.Queue = queue.Queue()
        self._query_q: queue.Queue = queue.Queue()
        self._order = itertools.count()  # ties in the reply heap: arrival order
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._threads: list[threading.Thread] = []
        self._docs_lock = threading.Lock()  # the retained docs; never taken in a paho callback
        self.rollouts = RolloutController(self._publish_rollout, self.terminals, self.line)
        self.update_results: list[tuple[str, wire.UpdateReport]] = []  # (tid, result), verified

        with _db(self.db_path) as db:
            db.executescript(SCHEMA)  # IF NOT EXISTS: a second consumer on the same file is fine
            if "epoch" not in {r[1] for r in db.execute("PRAGMA table_info(events)")}:
                raise ValueError(f"{self.db_path} was made by a hub without epochs: move it away")
        self._retained = self._load_docs()

        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"hub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        if self.tls:
            self.client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                                keyfile=str(key) if key else None)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: acks wait for the connection
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self._failures = 0  # consecutive connection losses/failures; touched only on paho's thread
        self.desk = CommandDesk(self.client, prefix, hub_key, self.terminals, self.stats, self.line)
        self.send_command, self.result = self.desk.send_command, self.desk.result
        self.answers, self.diagnostics = self.desk.answers, self.desk.diagnostics
        self._backoff()  # the delay before retrying a failed first connection

    # --- paho callbacks: enqueue only ---------------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            return
        self._failures = 0
        client.subscribe([(self.events_subscription, 1),
                          (self.topics.query, 1), (self.topics.update, 1), (self.topics.cmd_result, 1),
                          (self.topics.diag, 1)])
        for topic, (payload, qos) in self._retained.items():  # replaced, never mutated: no lock
            client.publish(topic, payload, qos=qos, retain=True)

    def _on_subscribe(self, client, userdata, mid, rcs, props) -> None:
        self.stats["subscribed"] += 1
        self._connected.set()  # ready: batches and queries reach us from now on

    def _on_disconnect(self, client, userdata, flags, rc, props) -> None:
        self._connected.clear()
        self._backoff()

    def _on_connect_fail(self, client, userdata) -> None:
        self.stats["connect_errors"] += 1
        self._backoff()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith(("/events", "/update")):  # update results: verified on ingest too
            self._events_q.put((msg.topic, msg.payload))
        elif msg.topic.endswith(("/cmd/result", "/diag")):
            self.desk.take(msg.topic, msg.payload)
        elif msg.topic.endswith("/query"):
            self.stats["queries_received"] += 1  # answered or not ("queries" counts the answers)
            p = msg.properties
            self._query_q.put((time.monotonic() + self.reply_delay, next(self._order), msg.topic, msg.payload,
                               getattr(p, "ResponseTopic", None), getattr(p, "CorrelationData", None)))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> HubSim:
        # A clean, non-persistent session on purpose: a dead consumer must leave the share
        # group at once, not keep a queue of the batches dealt to it.
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=True)
        self.client.loop_start()  # paho's thread: retries the first connection too
        for name, target in (("ingest", self._ingest_loop), ("query", self._query_loop),
                             ("beacon", self._beacon_loop), ("commands", self.desk.run)):
            t = threading.Thread(target=target, name=f"hub-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Connected AND subscribed (batches published from now on reach this consumer)."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._events_q.put(None)
        self._query_q.put(None)
        self.desk.stop()
        for t in self._threads:
            t.join(10.0)
        self._threads.clear()
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> HubSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _backoff(self) -> None:
        """Jittered exponential delay before paho's next reconnect attempt (paho's own has no jitter)."""
        lo, hi = self.backoff
        delay = backoff_delay(self._failures, base=lo, cap=hi, floor=0.5)
        self._failures += 1
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    # --- ingest -------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        db = connect_db(self.db_path)
        try:
            while (item := self._events_q.get()) is not None:
                try:
                    self._ingest(db, *item)
                except sqlite3.Error as e:  # no ack: the terminal sends the batch again
                    self.stats["db_errors"] += 1
                    self.line(f"batch not stored: {e}")
                except Exception as e:  # a bug must not stop ingest for every terminal
                    self.stats["errors"] += 1
                    log.exception("batch on %.80r", item[0])
                    self.line(f"batch not stored: {type(e).__name__}")
        finally:
            db.close()

    def _ingest(self, db: sqlite3.Connection, topic: str, raw: bytes) -> None:
        if topic.endswith("/update"):
            self._update_result(topic, raw)
            return
        tid = wire.tid_of(self.prefix, topic, "events")
        key = self.terminals.get(tid) if tid else None
        if key is None:
            self.stats["forged"] += 1
            self.line(f"batch dropped: unknown terminal on {topic[:80]!r}")
            return
        try:
            b = wire.open_batch(raw, key)
        except EnvelopeError as e:
            self.stats["forged"] += 1
            self.line(f"batch dropped: {tid}: {e}")
            return
        except ValueError as e:
            self.stats["malformed"] += 1
            self.line(f"batch dropped: {tid}: {e}")
            return
        if b.tid != tid:
            self.stats["forged"] += 1
            self.line(f"batch dropped: {tid}: signed for tid {b.tid[:40]!r}")
            return
        epoch = b.epoch
        now = time.time()
        # ensure_ascii: a lone surrogate from the JSON stays an escape, never a str SQLite rejects
        rows = [(tid, epoch, e["seq"], json.dumps(e, separators=(",", ":")), now) for e in b.events]
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events (tid, epoch, seq, event, stored_at) VALUES (?, ?, ?, ?, ?)",
                           rows)
            new = db.total_changes - before
            acked = self._advance_ack(db, tid, epoch, min(r[2] for r in rows))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.stats["batches"] += 1
        self.stats["stored"] += new
        self.stats["duplicates"] += len(rows) - new
        lo, hi = rows[0][2], rows[-1][2]
        if acked is None:
            self.line(f"batch {tid} epoch {epoch} seq {lo}..{hi}: {new} new; "
                      f"nothing contiguous from {self.start_seq} yet")
            return
        self.client.publish(wire.Topics(self.prefix, tid).ack, wire.ack(tid, epoch, acked, self.hub_key), qos=1)
        self.stats["acks"] += 1
        self.line(f"batch {tid} epoch {epoch} seq {lo}..{hi}: {new} new, {len(rows) - new} dup; ack {acked}")

    def _advance_ack(self, db: sqlite3.Connection, tid: str, epoch: str, batch_min: int) -> int | None:
        """Inside the transaction: the highest contiguous seq held for ``tid``'s ``epoch`` (stored too)."""
        row = db.execute("SELECT acked_seq FROM acks WHERE tid = ? AND epoch = ?", [tid, epoch]).fetchone()
        if row is not None:
            acked = row[0]
        else:
            acked = (self.start_seq if self.start_seq is not None else batch_min) - 1
        start = acked
        for (seq,) in db.execute("SELECT seq FROM events WHERE tid = ? AND epoch = ? AND seq > ? ORDER BY seq",
                                 [tid, epoch, acked]):
            if seq != acked + 1:
                break
            acked = seq
        if row is None and acked == start and self.start_seq is not None:
            return None  # still waiting for start_seq; nothing to remember yet
        if row is None or acked != start:
            db.execute("INSERT OR REPLACE INTO acks (tid, epoch, acked_seq) VALUES (?, ?, ?)", [tid, epoch, acked])
        return acked

    # --- queries ------------------------------------------------------------------------

    def _query_loop(self) -> None:
        """Answers in due order; a query waits ``reply_delay`` without holding up later ones."""
        pending: list = []
        stopping = False
        while not (stopping and not pending):
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            try:
                item = self._query_q.get(timeout=timeout)
                if item is None:
                    stopping = True
                    pending.clear()  # unanswered at shutdown, as a dead hub would leave them
                else:
                    heapq.heappush(pending, item)
            except queue.Empty:
                pass
            while pending and pending[0][0] <= time.monotonic():
                _, _, topic, payload, rtopic, corr = heapq.heappop(pending)
                try:
                    self._answer(topic, payload, rtopic, corr)
                except Exception as e:  # a bug must not stop the answers
                    self.stats["errors"] += 1
                    log.exception("query on %.80r", topic)
                    self.line(f"query not answered: {type(e).__name__}")

    def _answer(self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None) -> None:
        tid = wire.tid_of(self.prefix, topic, "query")
        if tid is None:
            return
        reply_topic = wire.Topics(self.prefix, tid).reply
        # Reply only where the asker may read: never on a response topic it names for someone else.
        if response_topic not in (None, reply_topic):
            self.stats["bad_queries"] += 1
            self.line(f"query {tid}: response topic {response_topic[:80]!r} is not {reply_topic}; dropped")
            return
        try:
            q = wire.open_query(payload)
        except ValueError:
            self.stats["bad_queries"] += 1
            self.line(f"query {tid}: not a {{qid, method, subject}} object; dropped")
            return
        qid = q.qid
        if self.mute_queries:
            self.stats["muted_queries"] += 1
            self.line(f"query {tid} {qid[:8]}: muted")
            return
        try:
            id_number, name = wire.open_subject(q, self.hub_key)
        except ValueError:
            answer: dict = {"error": "bad_subject"}
            shown = "undecryptable subject"
        else:
            person = self.people.get(id_number)
            shown = f"{q.method} {mask_id(id_number)} {mask_name(name)}"
            if person is None or person.get("name", name) != name:
                answer = {"error": "unknown_person"}
            else:
                answer = {"status": 0, "flags": 0, "nat_at": 0, "nat_result": 0, "vax_doses": 0,
                          "valid_until": int(time.time()) + 86400}
                answer.update({k: person[k] for k in STATUS_FIELDS if k in person})
        props = Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            props.CorrelationData = correlation
        self.client.publish(reply_topic, wire.reply(qid, answer, self.hub_key), qos=1, properties=props)
        self.stats["queries"] += 1
        outcome = answer.get("error") or f"status {answer['status']}"
        self.line(f"query {tid} {qid[:8]}: {shown} -> {outcome}")

    # --- broadcasts ---------------------------------------------------------------------

    def _load_docs(self) -> dict[str, tuple[bytes, int]]:
        with _db(self.db_path) as db:
            return {t: (bytes(p), q) for t, p, q in db.execute("SELECT topic, payload, qos FROM docs")}

    def _next_seq(self, topic: str) -> int:
        with _db(self.db_path) as db:
            row = db.execute("SELECT seq FROM docs WHERE topic = ?", [topic]).fetchone()
        return (row[0] if row else 0) + 1

    def _publish_retained(self, topic: str, seq: int, payload: bytes, qos: int = 1) -> bool:
        """Remember (DB, for reconnects and restarts) and publish; True once the broker has it."""
        with self._docs_lock:
            with _db(self.db_path) as db:
                db.execute("INSERT OR REPLACE INTO docs (topic, seq, payload, qos) VALUES (?, ?, ?, ?)",
                           [topic, seq, payload, qos])
            self._retained = {**self._retained, topic: (payload, qos)}
        # _retained is updated first: either on_connect has yet to run and will send it, or the
        # client is already connected (paho sets that before calling on_connect) and we send it.
        if not self.client.is_connected():
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=True)
        try:
            info.wait_for_publish(PUBLISH_WAIT)
        except (RuntimeError, ValueError):  # connection lost meanwhile: on_connect sends it
            return False
        return info.is_published()

    def publish_trust(self, envelope: bytes) -> bool:
        """The trust list exactly as the root signed it (checked against ``root_key`` if given)."""
        if self.root_key is not None:
            rk = self.root_key.public_key
            seq = wire.open_trust_list(envelope, {rk.kid(): rk}).seq  # EnvelopeError: not the root's
        else:
            seq = parse_trust_list(envelope_payload(envelope)).seq
        return self._publish_retained(self.topics.trust, seq, envelope)

    def publish_policy(self, venues: dict[str, dict], seq: int | None = None,
                       staff: list[str] | None = None) -> bool:
        """``staff``: ID numbers of staff, published as digests under a key new with each bundle
        (so two bundles' digests cannot be matched to follow someone across them)."""
        topic = self.topics.policy
        seq = self._next_seq(topic) if seq is None else seq
        staff_doc = wire.staff_list(secrets.token_bytes(16), staff) if staff is not None else None
        return self._publish_retained(topic, seq, wire.policy(seq, venues, self.hub_key, staff_doc))

    def staff_code(self, sid: str, *, ttl: int = 30, iat: int | None = None) -> str:
        """A staff QR code for ``sid``, as the hub's staff app shows it."""
        return staff_code(self.hub_key, sid, ttl=ttl, iat=iat)

    def publish_keys(self, tid: str, data_keys: dict[int, bytes], seq: int | None = None,
                     not_after: int | None = None) -> bool:
        """The SM4 data keys (dkid → 16 bytes), each wrapped to the terminal's device key."""
        topic = wire.Topics(self.prefix, tid).keys
        seq = self._next_seq(topic) if seq is None else seq
        not_after = int(time.time()) + 365 * 86400 if not_after is None else not_after
        keys = {dkid: wire.DataKey(k, not_after) for dkid, k in data_keys.items()}
        return self._publish_retained(topic, seq, wire.data_keys(seq, tid, keys, self.terminals[tid], self.hub_key))

    def start_rollout(self, version: str, plan: list[StagePlan]) -> wire.Rollout:
        """Roll ``version`` out stage by stage (sim/rollout.py); the rollout as first published."""
        return self.rollouts.start(version, plan, self._next_seq(self.topics.rollout))

    def _publish_rollout(self, r: wire.Rollout) -> None:
        self._publish_retained(self.topics.rollout, r.seq, wire.rollout(r, self.hub_key))

    def _update_result(self, topic: str, raw: bytes) -> None:
        tid = wire.tid_of(self.prefix, topic, "update")
        key = self.terminals.get(tid) if tid else None
        try:
            if key is None:
                raise EnvelopeError("unknown terminal")
            rep = wire.open_update_report(raw, key)
        except EnvelopeError as e:
            self.stats["forged_updates"] += 1
            self.line(f"update result dropped on {topic[:80]!r}: {e}")
            return
        self.stats["update_results"] += 1
        self.update_results.append((tid, rep))
        self.line(f"update {tid}: {rep.version} {rep.state} ({rep.reason})")
        self.rollouts.report(tid, rep)

    def publish_time(self) -> bool:
        t = int(time.time())
        return self._publish_retained(self.topics.time, t, wire.time_beacon(t, self.hub_key), qos=0)

    def _beacon_loop(self) -> None:
        if self.time_interval <= 0:
            return
        while not self._stop.is_set():
            if self._connected.wait(0.2):
                self.publish_time()
                self._stop.wait(self.time_interval)

    # --- what the hub holds -------------------------------------------------------------

    # ``epoch=None``: whatever epoch the hub holds (for a terminal that has only ever had one).

    def epochs(self, tid: str) -> list[str]:
        """The epochs held for ``tid``, in the order their first events were stored."""
        with _db(self.db_path) as db:
            return [e for (e,) in db.execute("SELECT epoch FROM events WHERE tid = ? GROUP BY epoch "
                                             "ORDER BY min(stored_at), epoch", [tid])]

    def acked_seq(self, tid: str, epoch: str | None = None) -> int | None:
        with _db(self.db_path) as db:
            row = db.execute("SELECT max(acked_seq) FROM acks WHERE tid = ? AND ? IN (epoch, '*')",
                             [tid, epoch or "*"]).fetchone()
        return row[0]

    def stored_seqs(self, tid: str, epoch: str | None = None) -> list[int]:
        with _db(self.db_path) as db:
            return [s for (s,) in db.execute("SELECT seq FROM events WHERE tid = ? AND ? IN (epoch, '*') "
                                             "ORDER BY seq", [tid, epoch or "*"])]

    def event(self, tid: str, seq: int, epoch: str | None = None) -> dict | None:
        with _db(self.db_path) as db:
            row = db.execute("SELECT event FROM events WHERE tid = ? AND seq = ? AND ? IN (epoch, '*') "
                             "ORDER BY stored_at LIMIT 1", [tid, seq, epoch or "*"]).fetchone()
        return json.loads(row[0]) if row else None

    def subject(self, tid: str, seq: int, epoch: str | None = None) -> dict | None:
        """Decrypt one event's subject ``{id_number, name}`` on demand (~2 ms); None if absent."""
        e = self.event(tid, seq, epoch)
        if e is None or not isinstance(e.get("subject"), str):
            return None
        try:
            return json.loads(self.hub_key.decrypt(bytes.fromhex(e["subject"])))
        except (ValueError, SM2Error):
            return None
