"""MQTT test fixtures: a private Mosquitto per test and a small synchronous paho client.

``from mqtt_fixtures import broker`` (or import it into conftest). The broker is a
:class:`sim.broker.Broker`: TLS with client certificates on a free loopback port, the ACL of
docs/protocol/hub.md, stopped and its files removed after the test.
"""
from __future__ import annotations

import queue
import secrets
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sim.broker import Broker

WAIT = 10.0  # seconds before a wait is a failure (never a measurement)


@pytest.fixture
def broker():
    with Broker() as b:
        yield b


class Refused(Exception):
    """The broker did not accept the connection (TLS or CONNACK)."""


class TestClient:
    """A paho MQTT 5 client whose calls wait for the broker's answer (CONNACK, SUBACK, PUBACK).

    Received messages go to ``messages`` (a queue of paho MQTTMessage).
    """

    __test__ = False  # not a pytest class

    def __init__(self, broker: Broker, cn: str | None, *, client_id: str | None = None,
                 cert: tuple[Path, Path] | None = None, ca: Path | None = None,
                 clean_start: bool = True) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-{cn}", protocol=mqtt.MQTTv5)
        if cert is None and cn is not None:
            cert = broker.client_cert(cn)
        certfile, keyfile = (str(cert[0]), str(cert[1])) if cert else (None, None)
        self.client.tls_set(ca_certs=str(ca or broker.ca), certfile=certfile, keyfile=keyfile)
        self.broker = broker
        self.clean_start = clean_start
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._gone = threading.Event()
        self._connack = None
        self._lock = threading.RLock()  # on_publish may run inside publish()
        self._pending: dict[int, queue.Queue] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = self._on_ack
        self.client.on_publish = self._on_ack

    def _on_connect(self, c, u, flags, rc, props) -> None:
        self._connack = rc
        (self._connected if not rc.is_failure else self._gone).set()

    def _on_disconnect(self, c, u, flags, rc, props) -> None:
        self._gone.set()

    def _on_ack(self, c, u, mid, rc, props) -> None:  # on_subscribe gets a list of reason codes
        with self._lock:
            q = self._pending.setdefault(mid, queue.Queue())
        q.put(rc)

    def _wait_ack(self, mid: int):
        with self._lock:
            q = self._pending.setdefault(mid, queue.Queue())
        try:
            return q.get(timeout=WAIT)
        finally:
            with self._lock:
                self._pending.pop(mid, None)

    def connect(self, *, will: tuple[str, bytes] | None = None, session_expiry: int = 0) -> TestClient:
        """Connect and wait for CONNACK; :class:`Refused` if TLS or the broker says no.

        ``session_expiry`` > 0 keeps the session (subscriptions, queued QoS 1) that long
        after a disconnect, across broker restarts too.
        """
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30,
                                clean_start=self.clean_start, properties=props)
        except (OSError, ssl.SSLError) as e:
            raise Refused(str(e)) from None
        self.client.loop_start()
        for _ in range(int(WAIT / 0.05)):
            if self._connected.is_set():
                return self
            if self._gone.is_set():
                break
            self._connected.wait(0.05)
        self.close()
        raise Refused(f"no CONNACK success (connack={self._connack})")

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """SUBACK reason code value (0-2 granted QoS, 0x87 not authorised, ...)."""
        with self._lock:  # SUBACK may come back before subscribe() returns the mid
            rc, mid = self.client.subscribe(topic, qos)
            self._pending.setdefault(mid, queue.Queue())
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(mid)[0].value

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> int:
        """PUBACK reason code value for QoS 1 (0 ok, 0x87 not authorised, 0x10 no subscribers)."""
        with self._lock:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            self._pending.setdefault(info.mid, queue.Queue())
        if qos == 0:
            with self._lock:
                self._pending.pop(info.mid, None)
            info.wait_for_publish(WAIT)
            return 0
        return self._wait_ack(info.mid).value

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> TestClient:
        return self if self._connected.is_set() else self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


def share_group() -> str:
    """A hub share group as the hub configuration would hold it: random, never guessable."""
    return secrets.token_hex(12)


def response_properties(response_topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props
