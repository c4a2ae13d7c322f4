"""The fleet simulator's certificates (sim/fleetpki.py): accepted by Mosquitto as the openssl
ones are, with the CN as the identity the ACL applies to."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest
from mqtt_fixtures import Refused, TestClient, broker  # noqa: F401  (broker is a fixture)

from sim.broker import CertAuthority
from sim.fleetpki import FleetCA

A, B = "370102-F0001-01", "370102-F0002-01"
P = "hc/v1"


def test_a_fleet_certificate_is_a_terminal_identity_at_the_broker(broker, tmp_path):
    ca = FleetCA(broker.ca, broker.pki.key)
    cert, key = ca.issue(A, tmp_path / "a")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    check = subprocess.run(["openssl", "verify", "-CAfile", str(broker.ca), "-purpose", "sslclient", str(cert)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with TestClient(broker, "hub") as hub, TestClient(broker, None, client_id="x", cert=(cert, key)) as a:
        assert hub.subscribe(f"{P}/#") == 1
        assert a.publish(f"{P}/t/{B}/events", b"forged") == 0x87  # the ACL: A's topics only
        assert a.publish(f"{P}/t/{A}/events", b"mine") < 0x80
        assert hub.get().topic == f"{P}/t/{A}/events"


def test_a_certificate_from_another_ca_is_refused(broker, tmp_path):
    other = CertAuthority(tmp_path / "other")
    cert, key = FleetCA(other.cert, other.key).issue(A, tmp_path / "a")
    with pytest.raises(Refused):
        TestClient(broker, None, client_id="x", cert=(cert, key)).connect()
