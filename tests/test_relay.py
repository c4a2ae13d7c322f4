"""The gate relay driver that ships, against the virtual LCUS relay over real
pseudo-terminals (pyserial) and over socket:// — every line test runs on both."""
from __future__ import annotations

import logging
import time

import pytest

from drivers.relay import LcusRelay, NoRelay, lcus_command, open_relay
from sim.relay import VirtualRelay
from sim.serial_endpoint import SerialEndpoint
from waiting import wait_for

ON = bytes.fromhex("A0 01 01 A2")
OFF = bytes.fromhex("A0 01 00 A1")


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture(params=["pty", "tcp"])
def rig(request):
    relay = VirtualRelay()
    with SerialEndpoint(relay, kind=request.param) as ep:
        gate = LcusRelay(ep.url)
        try:
            yield relay, ep, gate
        finally:
            gate.close()


def raw(relay: VirtualRelay) -> list[bytes]:
    return [c.raw for c in relay.commands]


def gaps(relay: VirtualRelay) -> list[float]:
    times = [c.at for c in relay.commands]
    return [b - a for a, b in zip(times, times[1:])]


def pulse_done(n: int):
    return lambda r: len(r.pulses) >= n and r.pulses[n - 1].off_at is not None


def test_command_bytes():
    assert lcus_command(1, True) == ON
    assert lcus_command(1, False) == OFF
    assert lcus_command(2, True) == bytes.fromhex("A0 02 01 A3")


def test_pulse_is_on_then_off_with_gaps(rig):
    relay, _, gate = rig
    gate.pulse(300)
    assert relay.wait_for(pulse_done(1))
    # The OFF first is the start-up OFF: the relay's state is unknown until we set it.
    assert raw(relay) == [OFF, ON, OFF]
    assert all(g >= 0.1 for g in gaps(relay))
    p = relay.pulses[0]
    # Lower bound only, with 50 ms for the simulator's own thread to be scheduled late.
    assert p.off_at - p.on_at >= 0.25
    assert gate.pulses == 1
    assert relay.bad_checksums == 0


def test_pulse_returns_at_once_and_close_switches_the_relay_off(rig):
    relay, _, gate = rig
    gate.pulse(60_000)           # would hold an event loop for a minute if it blocked
    assert relay.wait_for(lambda r: r.is_on())
    gate.close()                 # the worker is asked to stop mid-pulse
    assert relay.wait_for(lambda r: not r.is_on())
    assert raw(relay) == [OFF, ON, OFF]
    assert not relay.pulses[0].power_lost


def test_pulse_during_a_pulse_extends_it(rig):
    relay, _, gate = rig
    gate.pulse(300)
    assert relay.wait_for(lambda r: r.is_on())
    gate.pulse(300)
    assert relay.wait_for(pulse_done(1))
    assert raw(relay) == [OFF, ON, OFF]
    assert gate.pulses == 1


def test_back_to_back_pulses_keep_100ms_between_commands(rig):
    relay, _, gate = rig
    gate.pulse(10)
    assert relay.wait_for(pulse_done(1))
    gate.pulse(10)
    assert relay.wait_for(pulse_done(2))
    assert raw(relay) == [OFF, ON, OFF, ON, OFF]
    assert all(g >= 0.1 for g in gaps(relay))


def test_unplug_and_replug_recovers(rig):
    relay, ep, gate = rig
    gate.pulse(50)
    assert relay.wait_for(pulse_done(1))
    ep.unplug()
    gate.pulse(50)               # dropped: the line is down for the whole pulse
    wait_for(lambda: gate.failed_pulses == 1, "the pulse to be dropped")
    ep.replug()
    deadline = time.monotonic() + 10
    while not relay.wait_for(pulse_done(2), 0.3):
        assert time.monotonic() < deadline, "relay line never recovered"
        gate.pulse(50)
    assert raw(relay)[-2:] == [ON, OFF]
    assert all(g >= 0.1 for g in gaps(relay))


def test_each_pulse_says_whether_it_went_out(rig):
    """Issue #12 finding 1: the caller learns whether its pulse switched the relay on."""
    relay, ep, gate = rig
    first, told = gate.pulse(300), []
    first.then(told.append)                          # settled by the worker, or at once if it was
    assert first.wait(5) is True and relay.wait_for(lambda r: r.is_on())
    wait_for(lambda: told == [True], "the outcome passed on")
    assert gate.pulse(300).wait(0) is True           # the relay is on: this opening is extended
    assert relay.wait_for(pulse_done(1))
    ep.unplug()
    dropped = gate.pulse(50)
    assert dropped.wait(5) is False                  # the line stayed down for the whole pulse
    dropped.then(told.append)
    assert told == [True, False]
    assert gate.failed_pulses == 1 and len(relay.pulses) == 1


def test_an_idle_relay_unplugged_and_back_is_known_without_a_pulse(rig):
    """Nobody passes, yet the driver knows the relay is gone (its line is looked at every
    PROBE_EVERY seconds), and knows it is back; no command goes out for it."""
    relay, ep, gate = rig
    assert relay.wait_for(lambda r: r.commands)      # the start-up OFF
    wait_for(lambda: gate.error is None, "the relay reachable")
    commands = len(relay.commands)
    ep.unplug()
    wait_for(lambda: gate.error is not None, "the driver to see the relay gone")
    assert gate.link.url in gate.error
    ep.replug()
    wait_for(lambda: gate.error is None, "the driver to see the relay back", timeout=15)
    # Only the OFF owed after an outage (the relay's state was unknown), no pulse.
    assert relay.wait_for(lambda r: len(r.commands) == commands + 1)
    assert raw(relay)[commands:] == [OFF] and gate.pulses == 0


def test_relay_left_on_by_an_outage_is_switched_off_when_the_line_is_back(rig):
    relay, ep, gate = rig
    gate.pulse(200)
    assert relay.wait_for(lambda r: r.is_on())
    ep.unplug()                  # the OFF at the end of the pulse cannot go out
    wait_for(lambda: gate.link.last_error is not None, "the OFF to fail on the line")
    seen = len(relay.commands)
    assert relay.is_on()
    ep.replug()
    # No new pulse: the driver owes the relay an OFF and delivers it.
    assert relay.wait_for(lambda r: len(r.commands) > seen, 10)
    assert raw(relay)[seen:] == [OFF]


def test_line_down_at_close_gives_up_and_says_so(caplog):
    gate = LcusRelay("/nonexistent/ttyRelay", close_timeout=0.3)
    gate.pulse(100)
    with caplog.at_level(logging.WARNING, logger="drivers.relay"):
        gate.close()
    assert "may be left on" in caplog.text
    assert gate.pulses == 0


def test_pulse_that_cannot_start_is_dropped_and_counted():
    gate = LcusRelay("/nonexistent/ttyRelay", close_timeout=0.1)
    outcome = gate.pulse(50)
    wait_for(lambda: gate.failed_pulses == 1, "the pulse to be dropped")
    assert outcome.wait(0) is False and "cannot open" in gate.error
    gate.close()
    assert (gate.pulses, gate.failed_pulses) == (0, 1)


def test_pulse_after_close_is_ignored(rig, caplog):
    relay, _, gate = rig
    gate.close()
    with caplog.at_level(logging.ERROR, logger="drivers.relay"):
        assert gate.pulse().wait(0) is False
    assert "closed relay" in caplog.text
    assert ON not in raw(relay)


# --- the virtual relay's parser ----------------------------------------------------------------

def test_virtual_relay_rejects_bad_checksums_and_resyncs():
    relay = VirtualRelay()
    stream = b"\x00\xff" + bytes.fromhex("A0 01 01 A3") + ON + bytes.fromhex("A0 01 07 A8") + OFF
    for b in stream:                 # one byte at a time, as a slow line delivers them
        relay.received(bytes((b,)))
    assert raw(relay) == [ON, OFF]
    assert (relay.bad_checksums, relay.unknown_commands, relay.garbage_bytes) == (1, 1, 2 + 3)
    assert len(relay.pulses) == 1 and relay.pulses[0].off_at is not None


def test_virtual_relay_opens_when_unpowered():
    relay = VirtualRelay()
    relay.received(ON)
    relay.reset()
    assert not relay.is_on()
    assert relay.pulses[0].power_lost


# --- backends and factory ------------------------------------------------------------------------

def test_none_backend_only_logs(caplog):
    gate = open_relay("none")
    assert isinstance(gate, NoRelay)
    with caplog.at_level(logging.INFO, logger="drivers.relay"):
        assert gate.pulse(500).wait(0) is True
    gate.close()
    assert "gate pulse of 500 ms (no relay configured)" in caplog.text
    assert (gate.wired, gate.error) == (False, None)
    assert gate.pulses == 1


def test_factory_opens_lcus_on_a_url():
    relay = VirtualRelay()
    with SerialEndpoint(relay, kind="pty") as ep:
        gate = open_relay("lcus", ep.url, channel=2)
        gate.pulse(10)
        assert relay.wait_for(pulse_done(1))
        gate.close()
    assert relay.pulses[0].channel == 2


@pytest.mark.parametrize("kind, url, options, words", [
    ("bogus", "/dev/null", {}, "unknown relay kind 'bogus'"),
    ("lcus", None, {}, "needs a serial URL"),
    ("lcus", "/dev/null", {"channel": 0}, "channel 0 out of range"),
])
def test_factory_refuses_bad_configuration(kind, url, options, words):
    with pytest.raises(ValueError, match=words):
        open_relay(kind, url, **options)


def test_nonsense_pulse_length_is_refused():
    gate = LcusRelay("/nonexistent/ttyRelay", close_timeout=0.1)
    with pytest.raises(ValueError):
        gate.pulse(0)
    gate.close()
