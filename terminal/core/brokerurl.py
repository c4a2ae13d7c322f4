"""The hub's broker URL, parsed once for the config, the link and the hub simulator.

It lives in ``core`` (pure, no I/O) rather than ``hub/wire.py`` because the config sits below
the hub and must not import it; :mod:`terminal.hub.wire` re-exports it for the hub's side.
"""
from __future__ import annotations

import re
from typing import NamedTuple

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_URL = re.compile(r"(mqtts?)://([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})")


class BrokerUrl(NamedTuple):
    tls: bool
    host: str  # an IPv6 address without its brackets
    port: int


def parse_broker_url(url: object, *, plain_anywhere: bool = False) -> BrokerUrl:
    """``mqtts://host:port``, or ``mqtt://`` (no TLS) to a broker on this machine only — unless
    ``plain_anywhere`` (the hub simulator's dev listener). ValueError otherwise."""
    m = _URL.fullmatch(url) if isinstance(url, str) else None
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError("must be mqtts://host:port or mqtt://host:port" if plain_anywhere else
                         "must be mqtts://host:port (or mqtt://127.0.0.1:port for a broker on this machine)")
    tls, host = m.group(1) == "mqtts", m.group(2).strip("[]")
    if not tls and not plain_anywhere and host not in LOOPBACK:
        raise ValueError("mqtt:// (no TLS) is allowed only for a broker on this machine; use mqtts://")
    return BrokerUrl(tls, host, int(m.group(3)))
