"""The hub link wired into the terminal: what the daemon needs from the hub, in one place.

Signed updates (trust list, policy, data keys, time beacon) arrive on the hub-pump thread; the
bridge turns each into an update value (:mod:`terminal.verifier`) and hands it to ``submit``,
which queues it for the decide thread to apply with :meth:`Verifier.apply` between two
presentations — never under a presentation being decided. Cards are asked about through
:class:`HubStatusSource` (on the card readers' threads). Housekeeping reads :meth:`report`.
"""
from __future__ import annotations

import sys
from typing import Callable

from terminal.hub.link import SWITCH_INTERVAL, HubLink
from terminal.hub.query import HubStatusSource
from terminal.hub.updates import load_persisted
from terminal.state.statuscache import StatusCache, cache_key
from terminal.verifier import DataKeysUpdate, PolicyUpdate, TimeBeacon, TrustListUpdate, Update, Verifier


class HubBridge:
    def __init__(self, link: HubLink, status_source: HubStatusSource | None):
        self.link = link
        self.status_source = status_source
        self._reconnects_seen = 0
        self._rejected_seen: dict[str, int] = {}
        self._counts_seen = {"resends": 0, "unheard": 0, "dropped_messages": 0}

    @classmethod
    def open(cls, cfg, verifier: Verifier, submit: Callable[[Update], None], *,
             on_alive: Callable[[], None] = lambda: None,
             alarms: Callable[[], list[str]] = lambda: [],
             on_rollout: Callable[[bytes], None] | None = None, on_command=None) -> "HubBridge":
        """Apply what earlier runs kept (policy, data keys) to ``verifier`` now, and make the link.
        ``on_alive``: hub-net's liveness, for the watchdog; ``alarms``: the terminal's other alarms
        by name, for the birth message; ``on_rollout``: software rollouts, to the updater (None: not
        subscribed); ``on_command(command, reply)``: runs an admitted remote command
        (terminal/remote.py). Raises KeyFileError for an unreadable device key."""
        from terminal.crypto.keyfiles import load_private_key

        # With the pump and paho's threads beside it, a verification that released the GIL for
        # its fsync would wait up to the default 5 ms to get it back (benchmarks/bench_drain.py).
        sys.setswitchinterval(SWITCH_INTERVAL)
        device_key = load_private_key(cfg.device_key)
        kept = load_persisted(verifier.store, cfg, device_key)
        if kept.policy:
            verifier.apply(PolicyUpdate(kept.policy.venues, kept.policy.staff))
        if kept.data_keys:
            verifier.apply(DataKeysUpdate(kept.data_keys))
        link = HubLink(cfg, verifier.store, device_key,
                       on_trust=lambda trust: submit(TrustListUpdate(trust)),
                       on_policy=lambda p: submit(PolicyUpdate(p.venues, p.staff)),
                       on_data_keys=lambda keys: submit(DataKeysUpdate(keys)),
                       on_time=lambda t: submit(TimeBeacon(t)),
                       on_rollout=on_rollout, clock_state=lambda: verifier.clock.state, alarms=alarms,
                       on_alive=on_alive, on_command=on_command, trusted_now=verifier.clock.now)
        return cls(link, HubStatusSource(link, StatusCache(verifier.store, cache_key(device_key)), cfg,
                                         policy=verifier.policy))

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def notify(self) -> None:
        """An event was committed: wake the pump."""
        self.link.notify()

    def report(self, metrics) -> dict:
        """The link's state for the status file; ``metrics`` get the counts' increments since the
        last report (the link counts since start). Called from the housekeeping thread only."""
        st = self.link.status()
        metrics.hub_connected(st["connected"])
        metrics.reconnected(st["reconnects"] - self._reconnects_seen)
        self._reconnects_seen = st["reconnects"]
        for kind, n in st["rejected"].items():
            metrics.rejected_update(kind, n - self._rejected_seen.get(kind, 0))
            self._rejected_seen[kind] = n
        new = {k: st[k] - seen for k, seen in self._counts_seen.items()}
        self._counts_seen = {k: st[k] for k in self._counts_seen}
        metrics.hub_resent("ack_timeout", new["resends"])
        metrics.hub_resent("unheard", new["unheard"])
        metrics.hub_dropped(new["dropped_messages"])
        return {"state": "connected" if st["connected"] else "disconnected", "last_sync_at": st["last_sync_at"],
                "reconnects": st["reconnects"], "in_flight_batches": st["in_flight_batches"],
                "resends": st["resends"], "unheard": st["unheard"], "dropped_messages": st["dropped_messages"],
                "rejected": st["rejected"], "down_for": st["down_for"], "alarms": st["alarms"],
                "broker": st["broker"]}
