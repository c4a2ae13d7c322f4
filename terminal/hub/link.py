"""The terminal's MQTT 5 connection to the provincial hub (docs/protocol/hub.md).

Two threads of ours, plus paho's network thread for each connection:

    hub-net    connect (TLS, client certificate, clean_start=False + session expiry, will)
               → run paho's network thread until the connection drops → wait a fully
               jittered, exponentially growing delay → connect again with a FRESH client.
               paho's own reconnect (un-jittered, and it resends whatever sat in the old
               client) is off. A TLS file missing or unreadable is one more connect failure.
               It tells ``on_alive`` it is looping (the daemon's watchdog), connected or not.
    hub-pump   everything else: the outbox pump, acks, signed updates, the birth message (again
               whenever the terminal's alarms change, fleet.md "Alarms"). It
               alone reads and writes the store for the link, so a slow disk or a flood of
               messages never stalls the network loop, and verification never waits on it.

paho callbacks only put into queues (no lock of ours, no SQLite): connection changes and
messages go to the pump's inbox; a reply to a card query goes straight to the queue of the
query waiting for it, found by its MQTT 5 correlation data.

Nothing waits inside the client while disconnected: batches are published only on a live
connection, at most ``window`` batches are in flight, and each connection gets a new client,
so a dead connection's unacknowledged messages die with it; the outbox is read again from the
last hub ack instead. ``max_queued_messages_set`` is the backstop.

Inbound, three bounds: the broker sends no packet over ``MAX_PACKET`` (said in CONNECT); a
message over its topic's ``INBOUND_LIMITS`` is dropped unread; the inbox holds at most
``INBOX_SIZE`` messages and ``INBOX_BYTES`` bytes. The terminal's drops are counted in
``dropped_messages``.
"""
from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.backoff import backoff_delay
from terminal.hub import wire
from terminal.config import Config, HubSection
from terminal.hub.commands import CommandGate
from terminal.hub.outbox import OutboxPump
from terminal.hub.updates import DataKey, SignedUpdates
from terminal.update.version import running_version
from terminal.crypto.sm2 import PrivateKey
from terminal.state.store import Store
from terminal.core.trust import TrustList

log = logging.getLogger(__name__)

# The largest message read per topic; anything larger is dropped on receipt, unparsed, and
# counted. Each is ~10x the largest genuine document (docs/protocol/hub.md, "Inbound limits").
INBOUND_LIMITS = {
    "ack": 4 << 10,       # a signed {"acked_seq", "tid"} is ~250 bytes
    "reply": 4 << 10,     # a signed card status answer is ~450 bytes
    "time": 4 << 10,      # a signed beacon is ~250 bytes
    "keys": 64 << 10,     # ~370 bytes a data key: 170 keys, where a bundle holds a handful
    "policy": 256 << 10,  # a few hundred bytes a venue type, 35 bytes a staff digest (≤ 5,000: ~175 KB)
    "trust": 256 << 10,   # ~350 bytes an issuer: 700 issuers, where a province has a few
    "rollout": 256 << 10,  # a named stage of 10,000 tids is ~200 KB (wire.MAX_STAGE_TIDS)
    "cmd": 16 << 10,      # a signed command is ~400 bytes; its args a few small values
}
UPDATE_PUBLISH_WAIT = 5.0  # seconds an update result waits for the broker's PUBACK
# Said in CONNECT (MQTT 5 Maximum Packet Size): the broker sends nothing larger, so paho never
# reads it into memory. The largest message read, plus room for its topic and properties.
MAX_PACKET = max(INBOUND_LIMITS.values()) + (4 << 10)
# The pump's inbox is bounded in bytes too: 10,000 messages of 256 KiB would be 2.5 GB.
INBOX_BYTES = 2 << 20   # eight of the largest messages; a flood beyond it is dropped
# The GIL switch interval the daemon should set (sys.setswitchinterval) when a link runs: with
# the default 5 ms, a verification that released the GIL for its fsync waits up to 5 ms for
# the pump or paho thread to hand it back (benchmarks/bench_drain.py measures both).
SWITCH_INTERVAL = 0.001
INBOX_SIZE = 10_000
NO_MATCHING_SUBSCRIBERS = 0x10   # MQTT 5 PUBACK reason: taken, but nobody was subscribed
ALIVE_EVERY = 1.0        # hub-net reports it is looping at least this often, waiting or not
UNREACHABLE = "hub_unreachable"  # the alarm (docs/protocol/hub.md "Alarms")



class TLSFileError(OSError):
    """A hub TLS file that cannot be read (missing, unreadable): retried like any connect failure."""


def _check_tls_files(hub: HubSection) -> None:
    """paho and ssl say "No such file or directory" without naming the file: name it here."""
    for key, path in hub.tls_files().items():
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise TLSFileError(f"hub.{key} {path}: {e.strerror}") from None


class _Wake:
    """Inbox item: new events were committed."""


_WAKE, _STOP = _Wake(), object()


class HubLink:
    def __init__(self, cfg: Config, store: Store, device_key: PrivateKey, *,
                 on_trust: Callable[[TrustList], None] | None = None,
                 on_policy: Callable[[wire.PolicyBundle], None] | None = None,
                 on_data_keys: Callable[[dict[int, DataKey]], None] | None = None,
                 on_time: Callable[[float], None] | None = None,
                 on_rollout: Callable[[bytes], None] | None = None,
                 clock_state: Callable[[], str] = lambda: "trusted",
                 alarms: Callable[[], list[str]] = lambda: [],
                 on_command: Callable[[wire.Command, Callable[[bool, object], bool]], None] | None = None,
                 trusted_now: Callable[[], float | None] = time.time,
                 window: int = 8, ack_timeout: float = 15.0, poll: float = 0.5, keepalive: int = 30,
                 session_expiry: int = 7 * 86400, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 stable_after: float = 30.0, connect_timeout: float = 10.0, max_rate: float = 3000.0,
                 on_alive: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic):
        if not cfg.hub.broker:
            raise ValueError(f"{cfg.path}: no hub.broker configured")
        self.cfg = cfg
        self.tid = cfg.terminal_id
        self.topics = wire.Topics(cfg.hub.prefix, self.tid)
        # The broker cluster's nodes: one at a time, the next after a loss or a failed attempt.
        self._nodes = [(url, wire.parse_broker_url(url)) for url in cfg.hub.brokers]
        self.node: str | None = None  # the URL of the node connected to (or being tried)
        self._store = store
        self.pump = OutboxPump(store, self.tid, device_key, cfg.hub_key, window=window, ack_timeout=ack_timeout)
        self.updates = SignedUpdates(store, cfg, device_key, on_trust=on_trust, on_policy=on_policy,
                                     on_data_keys=on_data_keys, on_time=on_time)
        self._clock_state = clock_state
        # Remote commands: admitted here (pump thread), run by ``on_command(command, reply)``,
        # which answers through ``reply(ok, detail)`` from whatever thread finishes the op.
        self.commands = CommandGate(store, self.tid, cfg.hub_key, trusted_now)
        self._on_command = on_command or (lambda cmd, reply: reply(False, "not_available: no remote operations"))
        self._device_key = device_key
        # The terminal's other alarms by name (devices, disk, clock): read by the pump each round,
        # the birth message published again on the live connection when they change.
        self._other_alarms = alarms
        self._published_alarms: list[str] | None = None  # pump thread only
        self._poll = poll
        self._keepalive = keepalive
        self._session_expiry = session_expiry
        self._backoff = (backoff_base, backoff_cap)
        self._stable_after = stable_after
        self._connect_timeout = connect_timeout
        # hub-net's liveness (the daemon's watchdog): called every ALIVE_EVERY s at most,
        # connected or not, so only a wedged or dead thread goes quiet.
        self._on_alive = on_alive
        self._clock = clock  # for the unreachable alarm only
        self._alarm_after = 60.0 * cfg.hub.alarm_hub_minutes
        self._down_since: float | None = None  # set by hub-net: no connection since then
        # A backlog drains at most this many events/s: the pump's CPU is the decision thread's
        # lost GIL time, and a drain faster than needed would slow every verification.
        self._max_rate = max_rate
        self._next_send = 0.0
        self._kinds = {self.topics.ack: "ack", self.topics.trust: "trust", self.topics.policy: "policy",
                       self.topics.keys: "keys", self.topics.time: "time", self.topics.reply: "reply",
                       self.topics.cmd: "cmd"}
        # Rollouts go to the updater as they come (it verifies them on its own thread).
        self._on_rollout = on_rollout
        if on_rollout is not None:
            self._kinds[self.topics.rollout] = "rollout"
        self._inbox: queue.Queue = queue.Queue(maxsize=INBOX_SIZE)
        self._wake_pending = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Set by paho callbacks (plain assignments): what queries and status see.
        self._node_tls = False                        # hub-net's: the node being tried speaks TLS
        self._client: mqtt.Client | None = None      # the client of the current attempt
        self._online: mqtt.Client | None = None      # ... once its CONNACK said yes
        self._queries: dict[bytes, queue.Queue] = {}
        # Owned by the pump thread.
        self._conn: mqtt.Client | None = None
        self.connects = 0
        # Bytes of message payload in the inbox: put in by paho's thread, taken out by the pump;
        # one writer each, so the callback takes no lock (the difference is never an underestimate).
        self._inbox_in = self._inbox_out = 0
        self.dropped_messages = 0

    # --- public: lifecycle and status ---------------------------------------------
    def start(self) -> None:
        self._down_since = self._clock()
        for name, target in (("hub-pump", self._pump_loop), ("hub-net", self._net_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline (a clean DISCONNECT discards the will), disconnect, join the threads."""
        if not self._threads:
            return
        self._inbox.put(_STOP)
        self._threads[0].join(timeout)
        self._stop.set()
        self._threads[1].join(timeout + self._connect_timeout)
        self._threads.clear()

    def notify(self) -> None:
        """New events are committed: pump now rather than at the next poll. Never blocks."""
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._inbox.put_nowait(_WAKE)
            except queue.Full:
                pass

    @property
    def connected(self) -> bool:
        return self._online is not None

    def status(self) -> dict:
        """Counters and state for metrics and the status command."""
        return {
            "connected": self.connected,
            "last_sync_at": self.pump.last_sync_at,
            "connects": self.connects,
            "reconnects": max(0, self.connects - 1),
            "outbox_depth": self._store.outbox_depth(),
            "in_flight_batches": len(self.pump.in_flight),
            "acked_seq": self.pump.acked_seq,
            "sent_seq": self.pump.sent_max,
            "resends": self.pump.resends,
            "unheard": self.pump.unheard,   # batches the broker had no subscriber for (PUBACK 0x10)
            "rejected": {"ack": self.pump.rejected_acks, **{k: self.updates.rejected[k] for k in
                                                              ("trust", "policy", "keys", "time")},
                         "cmd": self.commands.rejected},
            "dropped_messages": self.dropped_messages,
            "inbox_bytes": self.inbox_bytes,
            "down_for": self.down_for(),
            "alarms": self.alarms(),
            "broker": self.node,
        }

    @property
    def inbox_bytes(self) -> int:
        return self._inbox_in - self._inbox_out

    def down_for(self) -> float | None:
        """Seconds without a connection (since start or since the last one dropped); None while connected."""
        since = self._down_since
        return None if since is None or self._online is not None else max(0.0, self._clock() - since)

    def alarms(self) -> list[str]:
        """``hub_unreachable`` once there has been no connection for ``[hub] alarm_hub_minutes``."""
        down = self.down_for()
        return [UNREACHABLE] if down is not None and down >= self._alarm_after else []

    # --- remote commands: answers and uploads, from any thread ------------------------
    def send_result(self, cid: str | None, ok: bool, detail: object, wait: float = 0.0) -> bool:
        """Publish a signed command result; with ``wait``, until the broker has it. False if offline."""
        return self._publish([(self.topics.cmd_result, wire.command_result(cid, ok, detail, self._device_key))], wait)

    def send_diag(self, chunks: list[bytes], wait: float = 30.0) -> bool:
        """Publish a diagnostics bundle's chunks (QoS 1) and wait until the broker has them all."""
        return self._publish([(self.topics.diag, c) for c in chunks], wait)

    def _publish(self, messages: list[tuple[str, bytes]], wait: float) -> bool:
        client = self._online
        if client is None:
            return False
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        if any(i.rc != mqtt.MQTT_ERR_SUCCESS for i in infos):
            return False
        end = time.monotonic() + wait
        for info in infos if wait else ():
            try:
                info.wait_for_publish(max(0.0, end - time.monotonic()))
            except (RuntimeError, ValueError):  # the connection went meanwhile
                return False
            if not info.is_published():
                return False
        return True

    # --- card queries (called from the card readers' threads, see Daemon._card_loop) ----
    def query(self, qid: str, payload: bytes) -> queue.Queue | None:
        """Publish a card status query; the queue its replies arrive on, or None if offline.
        Call :meth:`end_query` with the same qid when done waiting."""
        client = self._online
        if client is None:
            return None
        replies: queue.Queue = queue.Queue(maxsize=8)
        self._queries[qid.encode()] = replies
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.topics.reply
        props.CorrelationData = qid.encode()
        info = client.publish(self.topics.query, payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.end_query(qid)
            return None
        return replies

    def end_query(self, qid: str) -> None:
        self._queries.pop(qid.encode(), None)

    # --- software update results (the updater's thread) -------------------------------
    def publish_update(self, payload: bytes) -> bool:
        """Publish a signed update result; True once the broker has it (False: offline, try later)."""
        client = self._online
        if client is None:
            return False
        info = client.publish(self.topics.update, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(UPDATE_PUBLISH_WAIT)
        except (RuntimeError, ValueError):  # the connection went meanwhile
            return False
        return info.is_published()

    # --- hub-net thread -----------------------------------------------------------
    def _new_client(self, gone: threading.Event) -> mqtt.Client:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.tid,
                        protocol=mqtt.MQTTv5, reconnect_on_failure=False, userdata=gone)
        if self._node_tls:
            hub = self.cfg.hub
            _check_tls_files(hub)
            try:
                c.tls_set(ca_certs=str(hub.ca), certfile=str(hub.cert), keyfile=str(hub.key))
            except ssl.SSLError as e:  # ssl names no file: a half-written file mid-rotation, say
                raise TLSFileError(f"hub.ca {hub.ca}, hub.cert {hub.cert}, hub.key {hub.key}: "
                                   f"cannot be loaded: {e}") from None
        c.connect_timeout = self._connect_timeout
        c.suppress_exceptions = True  # a callback bug must not end the network thread silently
        # the batch window, a diagnostics bundle's chunks and a few answers
        c.max_queued_messages_set(self.pump.window + wire.DIAG_TOTAL // wire.DIAG_CHUNK + 16)
        c.will_set(self.topics.state, wire.OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _net_loop(self) -> None:
        attempt = 0
        index = 0  # the node tried next; moves on after every loss and every failed attempt
        logged = None  # the failure this outage last logged: a new one is logged, a repeat is not
        while not self._stop.is_set():
            self._on_alive()
            up_at = None
            url, (self._node_tls, host, port) = self._nodes[index % len(self._nodes)]
            index += 1
            self.node = url
            try:
                gone = threading.Event()
                client = self._new_client(gone)  # a TLS file missing or unreadable fails here
                self._client = client
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self._session_expiry
                props.MaximumPacketSize = MAX_PACKET
                client.connect(host, port, self._keepalive, clean_start=False, properties=props)
                up_at = time.monotonic()
                logged = None
                self._run(client, gone)
            except Exception as e:  # OSError, ssl.SSLError, a TLS file missing: retried alike
                why = str(e)
                (log.debug if why == logged else log.warning)("hub: cannot reach %s: %s (retrying with backoff)",
                                                              url, why)
                logged = why
            self._online = None
            self._client = None
            if self._down_since is None:
                self._down_since = self._clock()
            if up_at is not None and time.monotonic() - up_at >= self._stable_after:
                attempt = 0  # that was a working connection, not a flapping one: start over
            if self._wait(backoff_delay(attempt, base=self._backoff[0], cap=self._backoff[1])):
                break
            attempt += 1

    def _wait(self, delay: float) -> bool:
        """Wait out a backoff, saying alive meanwhile; True if stop() was called."""
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if self._stop.wait(min(left, ALIVE_EVERY)):
                return True
            self._on_alive()
        return self._stop.is_set()

    def _run(self, client: mqtt.Client, gone: threading.Event) -> None:
        """paho's network thread until the connection drops, or stop() asks for a clean DISCONNECT.

        paho's own thread, not ``loop()`` here: with no loop thread of its own, paho writes a
        publish from the calling thread straight into the TLS socket, racing the network loop
        (corrupt TLS records, "bad record mac"); with one, other threads only queue."""
        client.loop_start()
        try:
            while not gone.wait(0.5):
                self._on_alive()
                if self._stop.is_set():
                    client.disconnect()
                    gone.wait(2.0)
                    break
        finally:
            client.loop_stop()

    # --- paho callbacks (hub-net thread): queue puts and plain assignments only -----
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("hub: broker refused the connection: %s", reason_code)
            client.disconnect()
            return
        client.subscribe([(t, SubscribeOptions(qos=0 if t == self.topics.time else 1)) for t in self._kinds])
        self._online = client
        self._down_since = None
        self._inbox.put(("up", client))

    def _on_disconnect(self, client, gone: threading.Event, flags, reason_code, properties) -> None:
        if self._online is client:
            self._online = None
        self._inbox.put(("down", client))
        gone.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # MQTT 5 PUBACK 0x10: the broker took the message and had nobody to give it to.
        if getattr(reason_code, "value", None) == NO_MATCHING_SUBSCRIBERS:
            try:
                self._inbox.put_nowait(("unheard", mid))
            except queue.Full:
                pass  # the ack timeout sends it again: a delay, not a loss

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        kind = self._kinds.get(msg.topic)
        size = len(msg.payload)
        if kind is None or size > INBOUND_LIMITS[kind]:
            self.dropped_messages += 1
            return
        if kind == "reply":
            corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
            replies = self._queries.get(corr) if corr else None
            if replies is None:
                self.dropped_messages += 1  # a late reply, or one for no query of ours
                return
            try:
                replies.put_nowait(msg.payload)
            except queue.Full:
                self.dropped_messages += 1
            return
        # Acks are repeated and updates retained: dropping one costs a delay, not a loss.
        if self.inbox_bytes + size > INBOX_BYTES:
            self.dropped_messages += 1
            return
        self._inbox_in += size  # before the put: the pump may take it out at once
        try:
            self._inbox.put_nowait((kind, msg.payload))
        except queue.Full:
            self._inbox_in -= size
            self.dropped_messages += 1

    # --- hub-pump thread ----------------------------------------------------------
    def _pump_loop(self) -> None:
        pause = self._poll
        while True:
            items = self._take(pause)
            try:
                if _STOP in items:
                    self._say_offline()
                    return
                # A person being decided goes first: the round waits (a few ms) for the decision.
                self._store.no_presentation.wait(0.1)
                self._handle(items)
                self._republish_on_alarm_change()
                pause = min(self._poll, self._send() or self._poll)
            except Exception:  # a bug costs a round, not the link
                log.exception("hub: pump round failed")
                pause = self._poll

    def _take(self, pause: float) -> list:
        """One round's inbox items, up to 256 (waiting up to ``pause`` for the first)."""
        try:
            items = [self._inbox.get(timeout=pause)]
        except queue.Empty:
            items = []
        while len(items) < 256:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._inbox_out += sum(len(i[1]) for i in items if isinstance(i, tuple) and i[0] in INBOUND_LIMITS)
        return items

    def _handle(self, items: list) -> None:
        best_ack = None
        for item in items:
            if item is _WAKE:
                self._wake_pending = False
                continue
            kind, arg = item
            if kind == "up":
                self._conn = arg
                self.connects += 1
                self.pump.reset()
                log.info("hub: connected to %s (outbox %d events)", self.node, self._store.outbox_depth())
                self._birth(arg)
            elif kind == "down":
                if self._conn is arg:
                    self._conn = None
                    self.pump.reset()
                    log.warning("hub: connection lost; events stay in the outbox")
            elif kind == "unheard":
                self.pump.unheard_mid(arg)
            elif kind == "cmd":
                self._command(arg)
            elif kind == "ack":
                n = self.pump.check_ack(arg)
                if n is not None and (best_ack is None or n > best_ack):
                    best_ack = n
            elif kind == "rollout":
                self._on_rollout(arg)
            else:
                self.updates.handle(kind, arg)
        if best_ack is not None:  # many acks in one round: one transaction
            self.pump.apply_ack(best_ack)

    def _send(self) -> float | None:
        """Publish what the window and the pace allow; the seconds until the pace allows more."""
        client = self._conn
        if client is None:
            return None
        self.pump.check_timeout()
        while True:
            wait = self._next_send - time.monotonic()
            if wait > 0:
                return wait
            if not self._store.no_presentation.is_set():
                return 0.002  # a person is being decided: the backlog waits its turn
            nxt = self.pump.next_batch()
            if nxt is None:
                return None
            payload, batch = nxt
            info = client.publish(self.topics.events, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.debug("hub: publish refused: %s", mqtt.error_string(info.rc))
                return None  # the connection is going; its "down" resets the window
            self.pump.sent(batch, info.mid)
            self._next_send = max(self._next_send, time.monotonic()) + (batch.last - batch.first + 1) / self._max_rate

    def _command(self, raw: bytes) -> None:
        a = self.commands.admit(raw)
        if a.command is None:
            if a.answer:
                self.send_result(a.id, False, a.refusal)
            return
        answered = []

        def reply(ok: bool, detail: object, wait: float = 0.0) -> bool:
            if answered:  # one answer per command, whatever an op does
                return False
            answered.append(ok)
            return self.send_result(a.id, ok, detail, wait)
        try:
            self._on_command(a.command, reply)
        except Exception as e:  # a bug costs this command, answered, not the pump round
            log.exception("hub: command %s %s failed", a.id, a.command.op)
            reply(False, f"failed: {type(e).__name__}")

    def _all_alarms(self) -> list[str]:
        return sorted(set(self._other_alarms()) | set(self.alarms()))

    def _birth(self, client: mqtt.Client) -> None:
        alarms = self._all_alarms()
        state = wire.birth(version=running_version(), epoch=self._store.epoch,
                           queue=self._store.outbox_depth(), trust_seq=max(0, int(self.updates.held["trust"])),
                           policy_seq=max(0, int(self.updates.held["policy"])), clock=self._clock_state(),
                           alarms=alarms)
        if client.publish(self.topics.state, state, qos=1, retain=True).rc == mqtt.MQTT_ERR_SUCCESS:
            self._published_alarms = alarms

    def _republish_on_alarm_change(self) -> None:
        """An alarm started or ended since the last birth: say so on ``state`` (retained)."""
        client = self._conn
        if client is not None and self._all_alarms() != self._published_alarms:
            self._birth(client)

    def _say_offline(self) -> None:
        client = self._conn
        if client is not None and self._online is client:
            info = client.publish(self.topics.state, wire.OFFLINE, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(2.0)
