"""Prometheus metrics on this machine only (``[metrics] listen``; absent: none at all).

prometheus_client does the exposition format (escaping, histogram buckets, OpenMetrics
negotiation) and the HTTP thread; each terminal has a registry of its own, so tests and the
simulator never share counters. No label carries personal data: methods, decisions, reasons
and device names only.

    gate_presentations_total{method}              presentations handed in by the inputs
    gate_decisions_total{method,decision,reason}  presentations decided (event committed)
    gate_decision_latency_seconds{method}         frame / card read → event committed
    gate_outbox_depth                             events the hub has not acknowledged
    gate_outbox_oldest_age_seconds                age of the oldest of them (0 when empty)
    gate_hub_connected, gate_hub_reconnects_total
    gate_hub_resent_batches_total{why}            batches sent again: ack_timeout, or unheard (no hub
                                                  subscribed: PUBACK 0x10)
    gate_hub_dropped_messages_total               inbound messages dropped unread (over their topic's
                                                  limit, unknown topic, a late reply, a full inbox)
    gate_rejected_updates_total{kind}             signed documents refused (bad signature, rollback)
    gate_clock_trusted                            1 trusted, 0 clock_untrusted
    gate_device_up{device}, gate_device_errors_total{device}
    gate_storage_alarm                            1 while the state directory's disk is (nearly) full
    gate_alarm{name}                              1 while that alarm is on (terminal/alarms.py), else 0;
                                                  every alarm of fleet.md's table, read at scrape time
"""
from __future__ import annotations

import re
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# The decision budget is 25 ms; the buckets resolve it, and the tail up to a slow hub query.
LATENCY_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.050, 0.100, 0.250, 1.0, 2.5)


class MetricsServer:
    def __init__(self, server, thread):
        self._server = server
        self._thread = thread
        self.port: int = server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self._presentations = Counter("gate_presentations", "Presentations handed in by the inputs",
                                      ["method"], registry=r)
        self._decisions = Counter("gate_decisions", "Presentations decided, event committed",
                                  ["method", "decision", "reason"], registry=r)
        self._latency = Histogram("gate_decision_latency_seconds",
                                  "From the frame's capture or the card read to the event committed",
                                  ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self._outbox_depth = Gauge("gate_outbox_depth", "Events not yet acknowledged by the hub", registry=r)
        self._outbox_age = Gauge("gate_outbox_oldest_age_seconds",
                                 "Age of the oldest event not yet acknowledged (0 when none)", registry=r)
        self._hub_connected = Gauge("gate_hub_connected", "1 while connected to the hub", registry=r)
        self._guidance = Counter("gate_guidance", "Hints shown for a code in view that did not read, by cause",
                                 ["cause"], registry=r)
        self._reconnects = Counter("gate_hub_reconnects", "Connections to the hub re-established", registry=r)
        self._resent = Counter("gate_hub_resent_batches", "Batches sent again: ack_timeout or unheard",
                               ["why"], registry=r)
        self._dropped = Counter("gate_hub_dropped_messages", "Inbound messages dropped unread", registry=r)
        self._rejected = Counter("gate_rejected_updates", "Signed updates refused (forged, rollback, malformed)",
                                 ["kind"], registry=r)
        self._clock = Gauge("gate_clock_trusted", "1 while the clock is trusted, 0 while clock_untrusted",
                            registry=r)
        self._device_up = Gauge("gate_device_up", "1 while the device works", ["device"], registry=r)
        self._device_errors = Counter("gate_device_errors", "Times a device went out of order",
                                      ["device"], registry=r)
        self._storage = Gauge("gate_storage_alarm", "1 while the state directory's disk is (nearly) full",
                              registry=r)
        self._alarm = Gauge("gate_alarm", "1 while the alarm is on (docs/protocol/hub.md, Alarms)", ["name"],
                            registry=r)

    # --- called by the daemon ---------------------------------------------------------
    def presented(self, method: str) -> None:
        self._presentations.labels(method).inc()

    def decided(self, method: str, decision: str, reason: str, latency_ms: float) -> None:
        self._decisions.labels(method, decision, reason).inc()
        self._latency.labels(method).observe(latency_ms / 1000)

    def guided(self, cause: str) -> None:
        self._guidance.labels(cause).inc()

    def device_up(self, device: str) -> None:
        self._device_up.labels(device).set(1)

    def device_error(self, device: str) -> None:
        """A device went out of order (once per outage, as DeviceStatus logs it)."""
        self._device_up.labels(device).set(0)
        self._device_errors.labels(device).inc()

    def hub_connected(self, connected: bool) -> None:
        self._hub_connected.set(1 if connected else 0)

    def reconnected(self, n: int = 1) -> None:
        if n > 0:
            self._reconnects.inc(n)

    def hub_resent(self, why: str, n: int) -> None:
        if n > 0:
            self._resent.labels(why).inc(n)

    def hub_dropped(self, n: int) -> None:
        if n > 0:
            self._dropped.inc(n)

    def rejected_update(self, kind: str, n: int = 1) -> None:
        if n > 0:
            self._rejected.labels(kind).inc(n)

    def clock(self, state: str) -> None:
        self._clock.set(1 if state == "trusted" else 0)

    def storage_alarm(self, on: bool) -> None:
        self._storage.set(1 if on else 0)

    def watch_alarms(self, names: tuple[str, ...], active: Callable[[], dict[str, str]]) -> None:
        """``gate_alarm{name}`` for each of ``names``, 1 or 0, read at scrape time from ``active``
        (the terminal's alarms, terminal/alarms.py)."""
        for name in names:
            self._alarm.labels(name).set_function(lambda name=name: 1 if name in active() else 0)

    def watch_outbox(self, depth: Callable[[], int], oldest_at: Callable[[], float | None],
                     now: Callable[[], float] = time.time) -> None:
        """Outbox gauges read at scrape time (e.g. ``store.outbox_depth``, ``store.oldest_unsynced_at``)."""
        self._outbox_depth.set_function(depth)

        def age() -> float:
            at = oldest_at()
            return max(0.0, now() - at) if at is not None else 0.0
        self._outbox_age.set_function(age)

    # --- endpoint ------------------------------------------------------------------------
    def serve(self, listen: str) -> MetricsServer:
        """Serve /metrics on ``listen`` ("127.0.0.1:9105", "[::1]:9105", "localhost:9105";
        port 0 picks a free one, see ``.port``). Raises OSError if the port is taken."""
        m = re.fullmatch(r"(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})", listen)
        if not m:
            raise ValueError(f"metrics listen address {listen!r}: must be 127.0.0.1:PORT, [::1]:PORT or "
                             "localhost:PORT")
        host = m.group(1).strip("[]")
        server, thread = start_http_server(int(m.group(2)), addr=host, registry=self.registry)
        return MetricsServer(server, thread)
