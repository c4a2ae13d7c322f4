"""The daemon with a scan engine: the simulated engine on a pseudo-terminal, opened from the config
by the registry, read by the shipping driver."""
from __future__ import annotations

import pytest

from sim.demo import write_config as demo_config
from sim.idcard_sam import VirtualSam
from sim.issuer import Issuer, Person
from sim.relay import VirtualRelay
from sim.scan_engine import VirtualScanEngine
from sim.serial_endpoint import SerialEndpoint
from sim.sscard_reader import VirtualSsReader
from drivers.scanner.hid import HidScanner
from drivers.scanner.reader import SerialScanner
from terminal import config as cfgmod
from terminal.daemon import Daemon
from terminal.inputs import registry

from test_daemon import events
from waiting import wait_for


@pytest.fixture
def door(keyset, tmp_path):
    """A scan engine (repeating every 0.3 s while a code is in view), card readers and a relay on
    pseudo-terminals; the daemon opens them all from its config."""
    engine = VirtualScanEngine(repeat=0.3).start()
    relay = VirtualRelay()
    eps = {"id_card": SerialEndpoint(VirtualSam()), "ss_card": SerialEndpoint(VirtualSsReader()),
           "relay": SerialEndpoint(relay)}
    for ep in eps.values():
        ep.start()
    ports = {**{k: e.url for k, e in eps.items()}, "scanner": engine.url}
    cfg = cfgmod.load(demo_config(keyset, tmp_path / "screens", "mall", ports, pulse_ms=200, result_seconds=0.5))
    results = []
    daemon = Daemon(cfg, on_result=lambda p, r: results.append((p, r)))
    yield {"engine": engine, "relay": relay, "daemon": daemon, "results": results, "keys": keyset,
           "issuer": Issuer.from_dir(keyset)}
    daemon.stop()
    for ep in eps.values():
        ep.stop()
    engine.stop()


def scanned(door, text):
    """Hold a code under the engine until the daemon has decided it; then take it away."""
    n = len(door["results"])
    door["engine"].show(text)
    wait_for(lambda: len(door["results"]) > n, "a decision for the scanned code")
    # the engine keeps repeating it while it is in view: still that one presentation
    sent = len(door["engine"].sent)
    wait_for(lambda: len(door["engine"].sent) >= sent + 3, "the engine's repeats")
    door["engine"].clear()
    return door["results"][-1]


def test_a_scanned_code_is_decided_like_a_camera_code_and_opens_the_gate(door):
    door["daemon"].start()
    assert door["daemon"].scanner is not None
    green = door["issuer"].issue(Person(name="张三"))
    p, r = scanned(door, green)
    assert (p.method, p.source, p.text) == ("qr", "scanner", green)
    assert (r.decision, r.reason, r.method, r.name) == ("allow", "ok", "qr", "张*")
    assert wait_for(lambda: len(door["relay"].pulses) == 1 and door["relay"].pulses[0].off_at)
    assert len(door["results"]) == 1                         # its repeats were not decided again
    p, r = scanned(door, door["issuer"].issue(Person(status="red")))
    assert (r.decision, r.reason) == ("deny", "red_code")
    rows = events(door["keys"])
    assert [(e["method"], e["decision"], e["reason"]) for e in rows] == [("qr", "allow", "ok"),
                                                                         ("qr", "deny", "red_code")]
    assert len(door["relay"].pulses) == 1
    assert "scanner" in door["daemon"]._housekeeping._device_names


def test_scanner_unplugged_raises_its_alarm_and_recovers_when_replugged(door):
    daemon, engine = door["daemon"], door["engine"]
    daemon.start()
    engine.unplug()
    assert wait_for(lambda: "scanner" in daemon.devices.errors(), "scanner_down", timeout=10)
    assert list(daemon.alarms.active()) == ["scanner_down"]
    assert daemon.screen_loop.alarms() == ["扫码器故障"]
    assert "devices down: scanner" in daemon.summary()
    # no camera here: with the engine down the idle screen no longer asks for a code
    assert daemon._idle_prompt() == "请刷身份证/社保卡"
    engine.replug()
    assert wait_for(lambda: "scanner" not in daemon.devices.errors(), "the scanner back", timeout=15)
    assert daemon.alarms.active() == {} and daemon.screen_loop.alarms() == []
    assert daemon._idle_prompt() == "请出示健康码或刷身份证/社保卡"   # the engine alone takes codes
    wait_for(lambda: engine.endpoint.connected, "the engine connected")
    _, r = scanned(door, door["issuer"].issue(Person()))
    assert (r.decision, r.method) == ("allow", "qr")


def test_registry_opens_the_configured_kind(keyset, tmp_path):
    base = (keyset / "config.toml").read_text()
    path = tmp_path / "c.toml"
    path.write_text(base + '\n[scanner]\nport = "/dev/gate/scanner"\nprefix = "]Q1"\nsuffix = "crlf"\ngap = 2.5\n')
    engine = registry.open_scanner(cfgmod.load(path).scanner)
    assert isinstance(engine, SerialScanner)
    assert (engine.link.url, engine.link.baudrate, engine.decoder.suffix, engine.parser.prefix, engine.fold.window) == \
        ("/dev/gate/scanner", 9600, b"\r\n", "]Q1", 2.5)
    path.write_text(base + '\n[scanner]\nkind = "hid"\ndevice = "/dev/input/event9"\n')
    engine = registry.open_scanner(cfgmod.load(path).scanner)
    assert isinstance(engine, HidScanner)
    assert (engine.path, engine.parser.prefix, engine.fold.window) == ("/dev/input/event9", "", 1.5)


def test_a_missing_keyboard_mode_engine_is_an_alarm_not_a_setup_error(keyset, tmp_path):
    path = keyset / "hid.toml"  # beside the keys: its relative paths name them
    path.write_text((keyset / "config.toml").read_text() +
                    f'\n[scanner]\nkind = "hid"\ndevice = "{tmp_path / "event-kbd"}"\n')
    daemon = Daemon(cfgmod.load(path))
    daemon.start()
    try:
        assert wait_for(lambda: "scanner" in daemon.devices.errors(), "scanner_down", timeout=10)
        assert "cannot open" in daemon.devices.errors()["scanner"]
    finally:
        daemon.stop()
