"""terminal/alarms.py: the one list of alarms up now, and how long-ago reads."""
from __future__ import annotations

from terminal.alarms import Alarms, age_text, device_alarm
from terminal.inputs.devices import DeviceStatus


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
