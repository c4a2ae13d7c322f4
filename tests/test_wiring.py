"""The daemon's seams: the backend registries (terminal/inputs/registry.py), Verifier.apply,
the hub bridge's report."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.camera import ImageFileSource
from drivers.relay import LcusRelay, NoRelay
from sim.camera import VirtualCamera
from sim.issuer import Issuer, Person
from terminal.core.trust import TrustList
from terminal.hub.link import HubLink
from terminal.hub.updates import DataKey
from terminal.config import CameraSection, RelaySection
from terminal.inputs import registry
from terminal.ops.metrics import Metrics
from terminal.state.clock import ClockGuard
from terminal.verifier import DataKeysUpdate, PolicyUpdate, Reconfigure, TimeBeacon, TrustListUpdate, Verifier

CAM = {"width": 640, "height": 480, "fps": 10.0, "gap": 1.5}


def test_sim_camera_comes_from_its_entry_point():
    """terminal/ never imports sim/: the virtual camera is found through pyproject's entry point."""
    factory = registry.CAMERA_SOURCES.get("sim")
    assert factory is not None and factory.__module__ == "sim.camera"
    for spec in ("sim", "sim:seed=3,level=clean"):
        grabber = registry.open_camera(CameraSection(source=spec, **CAM))
        assert isinstance(grabber.source, VirtualCamera)
    with pytest.raises(Exception, match="level must be one of"):
        registry.open_camera(CameraSection(source="sim:level=extreme", **CAM))


def test_other_camera_specs_go_to_the_device_driver(tmp_path):
    image = tmp_path / "code.png"
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    grabber = registry.open_camera(CameraSection(source=str(image), **CAM))
    assert isinstance(grabber.source, ImageFileSource)
    assert registry.CAMERA_SOURCES.get("nosuchscheme") is None


def test_readers_and_relays_by_kind():
    assert isinstance(registry.open_relay(RelaySection(kind="none", port=None, pulse_ms=800)), NoRelay)
    with pytest.raises(ValueError, match="needs a serial URL"):
        registry.open_relay(RelaySection(kind="lcus", port=None, pulse_ms=800))
    relay = registry.open_relay(RelaySection(kind="lcus", port="loop://", pulse_ms=800))
    try:
        assert isinstance(relay, LcusRelay)
    finally:
        relay.close()
    with pytest.raises(ValueError, match="unknown relay kind 'usb'"):
        registry.open_relay(RelaySection(kind="usb", port=None, pulse_ms=800))
    with pytest.raises(ValueError, match="unknown card reader 'nfc'"):
        registry.open_reader("nfc", "loop://", 9600)


def test_verifier_apply(keyset, keyset_config, tmp_path):
    issuer = Issuer.from_dir(keyset)
    v = Verifier.open(keyset_config, tmp_path / "state")
    try:
        file_keys = dict(v.data_keys)
        (dkid, key), = file_keys.items()
        # the hub's keys join the file's; for a dkid both name, the hub's wins, not_after included
        v.apply(DataKeysUpdate({dkid: DataKey(b"H" * 16, 1000), 99: DataKey(b"N" * 16, 2000)}))
        assert v.data_keys == {dkid: b"H" * 16, 99: b"N" * 16}
        assert v.data_key_not_after == {dkid: 1000, 99: 2000}
        # a reloaded config brings its key file; the hub's keys stay on top of it
        v.apply(Reconfigure(keyset_config, v.trust, {dkid: key, 7: b"F" * 16}))
        assert v.data_keys == {dkid: b"H" * 16, 7: b"F" * 16, 99: b"N" * 16}
        v.apply(DataKeysUpdate({}))
        assert v.data_keys == {dkid: key, 7: b"F" * 16} and v.data_key_not_after == {}
        assert v.verify(issuer.issue(Person())).reason == "ok"

        v.apply(PolicyUpdate({keyset_config.venue: {"offline_unknown": "deny"}}))
        assert v.policy().offline_unknown == "deny"
        trust = v.trust
        v.apply(TrustListUpdate(TrustList(seq=trust.seq + 1, issued_at=trust.issued_at, issuers={})))
        assert v.verify(issuer.issue(Person())).reason == "unknown_issuer"
    finally:
        v.close()


def test_time_beacon_restores_only_an_untrusted_clock_and_never_backwards(keyset_config, tmp_path, mocker):
    v = Verifier.open(keyset_config, tmp_path / "state")
    try:
        mono = mocker.Mock(return_value=100.0)
        v.clock = ClockGuard(v.store, 5.0, wall=lambda: floor - 3600, mono=mono,
                             synchronised=lambda: False)
        floor = v.clock.floor
        assert v.clock.now() is None                    # an RTC an hour behind: untrusted
        v.apply(TimeBeacon(floor - 1))                  # a stale retained copy
        assert v.clock.state == "untrusted"
        v.apply(TimeBeacon(floor))                      # the limit itself restores
        assert v.clock.state == "trusted" and v.clock.floor == floor
        mono.return_value += 7
        assert v.clock.now() == floor + 7               # runs on the beacon's time
        v.apply(TimeBeacon(floor + 1000))               # trusted already: nothing to restore
        assert v.clock.floor == floor + 7
    finally:
        v.close()


def test_hub_report_gives_the_metrics_increments_only(mocker):
    """The link counts since start; each report adds only what is new since the last one."""
    from terminal.hub.bridge import HubBridge
    st = {"connected": True, "reconnects": 0, "rejected": {}, "last_sync_at": None,
          "in_flight_batches": 0, "down_for": None, "alarms": [], "broker": "mqtts://mq1:8883",
          "resends": 0, "unheard": 0, "dropped_messages": 0}
    link = mocker.create_autospec(HubLink, instance=True)
    link.status.side_effect = lambda: dict(st)  # the link's counts since start, a fresh dict each time
    m = Metrics()

    def counts():
        get = m.registry.get_sample_value
        return (get("gate_hub_connected"), get("gate_hub_reconnects_total"),
                {kind: n for kind in ("trust", "policy")
                 if (n := get("gate_rejected_updates_total", {"kind": kind})) is not None})

    def link_counts():
        get = m.registry.get_sample_value
        return (get("gate_hub_resent_batches_total", {"why": "ack_timeout"}),
                get("gate_hub_resent_batches_total", {"why": "unheard"}), get("gate_hub_dropped_messages_total"))
    bridge = HubBridge(link, None)
    assert bridge.report(m)["state"] == "connected" and counts()[1:] == (0, {})
    assert link_counts() == (None, None, 0.0)
    st.update(connected=False, reconnects=2, rejected={"trust": 1}, down_for=725.0, alarms=["hub_unreachable"],
              resends=3, unheard=2, dropped_messages=4)
    doc = bridge.report(m)
    assert doc["state"] == "disconnected" and doc["reconnects"] == 2 and counts()[0] == 0
    assert (doc["resends"], doc["unheard"], doc["dropped_messages"]) == (3, 2, 4)
    assert link_counts() == (3, 2, 4)
    assert doc["down_for"] == 725.0 and doc["alarms"] == ["hub_unreachable"] and doc["broker"] == "mqtts://mq1:8883"
    assert counts()[1:] == (2, {"trust": 1})
    st.update(connected=True, reconnects=3, rejected={"trust": 1, "policy": 2}, resends=4, unheard=2,
              dropped_messages=6)
    bridge.report(m)
    bridge.report(m)  # nothing new
    assert counts() == (1, 3, {"trust": 1, "policy": 2})
    assert link_counts() == (4, 2, 6)
    assert link.status.call_count == 4
