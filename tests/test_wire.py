"""terminal/hub/wire.py: every message's builder and parser agree, and the one broker URL parser."""
from __future__ import annotations

import re

import pytest

from terminal.hub import wire
from terminal.hub.wire import BrokerUrl


@pytest.mark.parametrize("url, plain_anywhere, expected", [
    ("mqtts://hub.example:8883", False, BrokerUrl(True, "hub.example", 8883)),
    ("mqtts://10.1.2.3:1", False, BrokerUrl(True, "10.1.2.3", 1)),              # the lowest port
    ("mqtts://hub:65535", False, BrokerUrl(True, "hub", 65535)),               # the highest port
    ("mqtts://[2001:db8::1]:8883", False, BrokerUrl(True, "2001:db8::1", 8883)),
    ("mqtt://127.0.0.1:1883", False, BrokerUrl(False, "127.0.0.1", 1883)),
    ("mqtt://localhost:1883", False, BrokerUrl(False, "localhost", 1883)),
    ("mqtt://[::1]:1883", False, BrokerUrl(False, "::1", 1883)),
    ("mqtt://10.1.2.3:1883", True, BrokerUrl(False, "10.1.2.3", 1883)),        # the simulator's dev listener
])
def test_broker_url_parses(url, plain_anywhere, expected):
    assert wire.parse_broker_url(url, plain_anywhere=plain_anywhere) == expected


@pytest.mark.parametrize("url, plain_anywhere, why", [
    ("mqtts://hub:0", False, "must be mqtts://host:port"),
    ("mqtts://hub:65536", False, "must be mqtts://host:port"),
    ("mqtts://hub", False, "must be mqtts://host:port"),                       # no port
    ("mqtts://hub:8883/x", False, "must be mqtts://host:port"),
    ("mqtts://user@hub:8883", False, "must be mqtts://host:port"),
    ("tcp://hub:1883", False, "must be mqtts://host:port"),
    ("http://x", True, "must be mqtts://host:port or mqtt://host:port"),
    ("", False, "must be mqtts://host:port"),
    (None, False, "must be mqtts://host:port"),
    ("mqtt://10.1.2.3:1883", False, "only for a broker on this machine"),
    ("mqtt://127.0.0.2:1883", False, "only for a broker on this machine"),
])
def test_broker_url_refused(url, plain_anywhere, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        wire.parse_broker_url(url, plain_anywhere=plain_anywhere)
