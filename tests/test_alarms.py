"""Every alarm of docs/protocol/hub.md, raised and cleared in all three places: the status
command (a PROBLEM line each, exit 1), the retained ``state`` message and ``gate_alarm{name}``."""
from __future__ import annotations

import json
import time

import pytest

from hub_helpers import keys
from mqtt_fixtures import TestClient, broker  # noqa: F401  (fixture)
from terminal.core.trust import EnvelopeError, TrustList
from terminal.hub import wire
from terminal import alarms as alarmsmod
from terminal import config as cfgmod
from terminal.alarms import Alarms, age_text, device_alarm, outbox_backlog, trust_stale
from terminal.inputs.devices import DeviceStatus
from terminal.state.snapshot import status_snapshot
from terminal.core.trust import open_trust_list  # noqa: E402
from terminal.daemon import Daemon
from terminal.ops.metrics import Metrics
from terminal.verifier import TrustListUpdate
from test_ops import add_events
from waiting import wait_for

NOW = 1_780_000_000.0


def gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value("gate_alarm", {"name": name})


# --- the sources' thresholds, both sides ---------------------------------------------------------
def test_outbox_backlog_starts_past_its_minutes():
    assert outbox_backlog(None, 30, NOW) == {}
    assert outbox_backlog(NOW - 30 * 60, 30, NOW) == {}
    assert outbox_backlog(NOW - 30 * 60 - 1, 30, NOW) == {"outbox_backlog": "oldest unacknowledged event 30m01s old"}


def test_trust_stale_starts_past_next_update_plus_grace():
    assert trust_stale(None, 24, NOW) == {}           # a list that promises no next one
    assert trust_stale(int(NOW), 24, None) == {}      # no trusted time: clock_untrusted says it
    assert trust_stale(int(NOW) - 24 * 3600, 24, NOW) == {}
    assert trust_stale(int(NOW) - 24 * 3600 - 1, 24, NOW) == {
        "trust_stale": "trust list 1d0h past its next_update"}
    assert trust_stale(int(NOW) - 1, 0, NOW) == {"trust_stale": "trust list 0m01s past its next_update"}


def test_the_gauges_are_read_at_scrape_time():
    metrics, on = Metrics(), {}
    a = Alarms()
    a.add(lambda: dict(on))
    metrics.watch_alarms(alarmsmod.NAMES, a.active)
    assert {n: gauge(metrics, n) for n in alarmsmod.NAMES} == dict.fromkeys(alarmsmod.NAMES, 0.0)
    assert len(alarmsmod.NAMES) == 13
    on["relay_down"] = "line gone"
    on["update_failed"] = "rolled back from 1.2"
    assert a.active() == {"relay_down": "line gone", "update_failed": "rolled back from 1.2"}
    assert gauge(metrics, "relay_down") == gauge(metrics, "update_failed") == 1.0
    assert gauge(metrics, "disk_low") == 0.0
    on.clear()
    assert a.active() == {}
    assert gauge(metrics, "relay_down") == gauge(metrics, "update_failed") == 0.0


def test_active_merges_every_source_in_name_order():
    alarms, devices, disk = Alarms(), DeviceStatus(), {}
    alarms.add(devices.alarms)
    alarms.add(lambda: dict(disk))
    assert alarms.active() == {}
    devices.fail("relay", "line down")
    devices.fail("camera", "no frames")
    disk["disk_low"] = "3 MiB free"
    assert alarms.active() == {"camera_down": "no frames", "disk_low": "3 MiB free", "relay_down": "line down"}
    assert list(alarms.active()) == ["camera_down", "disk_low", "relay_down"]
    devices.ok("relay")
    disk.clear()
    assert alarms.active() == {"camera_down": "no frames"}


def test_device_alarm_names():
    assert [device_alarm(d) for d in ("camera", "id_card", "ss_card", "relay", "screen")] == \
        ["camera_down", "id_card_down", "ss_card_down", "relay_down", "screen_down"]


def test_age_text_on_both_sides_of_each_unit():
    assert [age_text(s) for s in (-5, 0, 59.9, 60, 725, 3599, 3600, 86399, 86400, 2 * 86400 + 4 * 3600)] == \
        ["0m00s", "0m00s", "0m59s", "1m00s", "12m05s", "59m59s", "1h00m", "23h59m", "1d0h", "2d4h"]


def test_a_failing_source_is_itself_an_alarm_and_hides_no_other():
    a = Alarms()
    a.add(lambda: 1 / 0)
    a.add(lambda: {"disk_low": "full"})
    assert a.active() == {"alarm_source_failed": "ZeroDivisionError", "disk_low": "full"}


def test_a_trust_list_may_carry_next_update(keyset):
    root = keys(keyset)["root"]
    pin = {root.public_key.kid(): root.public_key}
    assert open_trust_list(wire.trust_list(3, 10, [], root), pin).next_update is None
    assert open_trust_list(wire.trust_list(3, 10, [], root, next_update=0), pin).next_update == 0
    assert open_trust_list(wire.trust_list(3, 10, [], root, next_update=2 ** 63 - 1), pin).next_update == 2 ** 63 - 1
    for bad in (-1, 2 ** 63, "soon", True):
        with pytest.raises(EnvelopeError, match="next_update"):
            open_trust_list(wire.trust_list(3, 10, [], root, next_update=bad), pin)


# --- the daemon's wiring: one place, every alarm ---------------------------------------------------
@pytest.fixture
def daemon(keyset):
    d = Daemon(cfgmod.load(keyset / "config.toml"))
    d.open()
    yield d
    d.verifier.close()


def test_every_alarm_from_its_source_in_the_daemon(daemon, keyset):
    d, v = daemon, daemon.verifier
    assert d.alarms.active() == {}
    for device in ("camera", "id_card", "ss_card", "scanner", "relay", "screen", "audio"):
        d.devices.fail(device, f"{device} gone")
    add_events(v.store, [time.time() - 31 * 60])
    v.clock._untrusted = True  # white box: the guard's latch (tests/test_clock.py drives it for real)
    d.disk.alarm = True
    old = TrustList(v.trust.seq + 1, 0, v.trust.issuers, next_update=int(time.time()) - 25 * 3600)
    v.apply(TrustListUpdate(old))
    updater = {"update_failed": "release 9.9 rolled back"}  # the updater's source (branch tuf)
    d.alarms.add(lambda: dict(updater))
    active = d.alarms.active()
    assert set(active) == set(alarmsmod.NAMES) - {"hub_unreachable", "trust_stale"}  # trust_stale: clock untrusted
    v.clock._untrusted = False
    active = d.alarms.active()
    assert set(active) == set(alarmsmod.NAMES) - {"hub_unreachable", "clock_untrusted"}
    assert active["relay_down"] == "relay gone" and active["trust_stale"].startswith("trust list 1d")
    assert all(gauge(d.metrics, n) == 1.0 for n in active)

    for device in ("camera", "id_card", "ss_card", "scanner", "relay", "screen", "audio"):
        d.devices.ok(device)
    v.store.ack(v.store.last_seq(), time.time())
    d.disk.alarm = False
    v.apply(TrustListUpdate(TrustList(old.seq + 1, 0, v.trust.issuers)))
    updater.clear()
    assert d.alarms.active() == {}
    assert all(gauge(d.metrics, n) == 0.0 for n in alarmsmod.NAMES)


# --- end to end: status, state topic and metrics together ------------------------------------------
def test_an_alarm_reaches_status_state_and_metrics_and_clears_in_all_three(keyset, broker, tmp_path):  # noqa: F811
    cfg = cfgmod.load(keyset / "config.toml")
    cert, key = broker.client_cert(cfg.terminal_id)
    cfg = cfg.with_hub(broker=broker.url, ca=broker.ca, cert=cert, key=key)
    d = Daemon(cfg)
    d.housekeeping_every = 0.1
    updater: dict[str, str] = {}                      # the updater's alarm source (branch tuf)
    d.alarms.add(lambda: dict(updater))
    with TestClient(broker, "hub-2") as obs:
        assert obs.subscribe(f"hc/v1/t/{cfg.terminal_id}/state") == 1
        d.start()
        try:
            def next_state():
                while True:
                    doc = json.loads(obs.get().payload)
                    if doc.get("state") == "online":
                        return doc

            assert next_state()["alarms"] == []
            wait_for(lambda: status_snapshot(cfg.state_dir)["daemon"] == "running", "the status file")
            d.devices.fail("relay", "LinkDown: /dev/gate/relay: gone")
            assert next_state()["alarms"] == ["relay_down"]          # republished at once
            wait_for(lambda: status_snapshot(cfg.state_dir)["problems"]
                     == ["relay_down: LinkDown: /dev/gate/relay: gone"], "the PROBLEM line")
            assert gauge(d.metrics, "relay_down") == 1.0
            updater["update_failed"] = "release 9.9 rolled back"
            assert next_state()["alarms"] == ["relay_down", "update_failed"]
            d.devices.ok("relay")
            updater.clear()
            assert next_state()["alarms"] in (["update_failed"], [])
            wait_for(lambda: status_snapshot(cfg.state_dir)["problems"] == [], "the problems to clear")
            assert gauge(d.metrics, "relay_down") == gauge(d.metrics, "update_failed") == 0.0
            assert status_snapshot(cfg.state_dir)["alarms"] == []
        finally:
            d.stop()
