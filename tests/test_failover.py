"""Broker failover: ``[hub] broker`` lists a cluster's nodes; losing the one in use, the terminal
moves to another with the same jittered backoff, and the outbox carries over — every event
reaches the hub exactly once.

Two Mosquittos stand in for the nodes of a cluster (one CA, so one set of client certificates),
with a hub consumer on each writing to one hub database, as the consumers of a real cluster
share theirs.
"""
from __future__ import annotations

import pytest

from hub_helpers import commit_events, keys
from mqtt_fixtures import share_group
from sim.broker import Broker
from sim.hub import HubSim
from terminal import config as cfgmod
from terminal.hub import HubLink
from terminal.state.store import Store
from waiting import DEADLINE, wait_for


@pytest.fixture
def cluster():
    with Broker() as a, Broker(pki=a.pki) as b:
        yield a, b


def test_killing_the_node_in_use_moves_the_terminal_to_the_other_and_loses_nothing(keyset, cluster, tmp_path):
    a, b = cluster
    k = keys(keyset)
    cfg = cfgmod.load(keyset / "config.toml")
    cert, key = a.client_cert(cfg.terminal_id)
    cfg = cfg.with_hub(broker=(a.url, b.url), ca=a.ca, cert=cert, key=key)
    tid, group = cfg.terminal_id, share_group()
    hubs = []
    for node, identity in ((a, "hub"), (b, "hub-2")):
        hcert, hkey = node.client_cert(identity)
        hub = HubSim(node.url, node.ca, hcert, hkey, hub_key=k["hub"], root_key=k["root"],
                     db_path=tmp_path / "hub.db", terminals={tid: k["device"].public_key}, group=group,
                     start_seq=1, time_interval=0, backoff=(0.05, 0.5)).start()
        assert hub.wait_connected(DEADLINE)
        hubs.append(hub)
    store = Store(tmp_path / "state")
    link = HubLink(cfg, store, k["device"], backoff_base=0.05, backoff_cap=0.5, poll=0.05)
    link.start()
    try:
        wait_for(lambda: link.connected, "the first connection")
        first = link.node
        assert first == a.url                                   # the list is tried in order
        commit_events(store, 300)
        link.notify()
        wait_for(lambda: store.outbox_depth() == 0, "the first events to be acked")

        in_use, other = (a, b) if first == a.url else (b, a)
        commit_events(store, 200)                               # some of these are in flight ...
        link.notify()
        in_use.kill()                                           # ... when the node dies
        commit_events(store, 100)                               # and these wait in the outbox
        wait_for(lambda: link.connected and link.node == other.url, "the move to the other node")
        link.notify()
        wait_for(lambda: store.outbox_depth() == 0, "the outbox to drain through the other node")
        assert hubs[0].stored_seqs(tid) == list(range(1, 601))  # one hub database: all of them, once
        assert sum(h.stats["stored"] for h in hubs) == 600      # each stored once, duplicates dropped
        assert link.status()["broker"] == other.url and link.connects == 2
    finally:
        link.stop()
        for h in hubs:
            h.stop()
        store.close()


def test_a_node_that_cannot_be_reached_is_skipped(keyset, cluster, tmp_path):
    """The first node is down from the start: the terminal connects to the second."""
    a, b = cluster
    k = keys(keyset)
    cfg = cfgmod.load(keyset / "config.toml")
    cert, key = b.client_cert(cfg.terminal_id)
    a.kill()
    cfg = cfg.with_hub(broker=(a.url, b.url), ca=b.ca, cert=cert, key=key)
    store = Store(tmp_path / "state")
    link = HubLink(cfg, store, k["device"], backoff_base=0.05, backoff_cap=0.5, poll=0.05)
    link.start()
    try:
        wait_for(lambda: link.connected, "a connection")
        assert link.node == b.url and link.connects == 1
    finally:
        link.stop()
        store.close()
