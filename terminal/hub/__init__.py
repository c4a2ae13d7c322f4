"""The terminal's side of the hub connection (docs/protocol/hub.md).

    link.py     HubLink: MQTT 5 connection (TLS, jittered reconnect), the pump thread
    outbox.py   OutboxPump: outbox → signed batches, bounded window, signed acks
    updates.py  SignedUpdates: trust list, policy, data keys, time beacon; load_persisted
    query.py    HubStatusSource: card status queries, with terminal.state.statuscache standing in
    wire.py     every message's builder and parser, the topics and the broker URL, for both ends
    bridge.py   HubBridge: the link wired to the daemon (updates → Verifier.apply, card queries)
"""
from terminal.hub.link import HubLink
from terminal.hub.query import HubStatusSource
from terminal.hub.updates import Persisted, SignedUpdates, load_persisted

__all__ = ["HubLink", "HubStatusSource", "Persisted", "SignedUpdates", "load_persisted"]
