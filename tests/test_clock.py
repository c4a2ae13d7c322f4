"""The clock guard (docs/protocol/token.md §6): a clock moved back is refused, never silently used."""
from __future__ import annotations

import pytest

from sim.issuer import Issuer, Person
from terminal.state import clock
from terminal.state.clock import MIN_PLAUSIBLE_TIME, ClockGuard
from terminal.state.store import Store
from terminal.verifier import Verifier

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, wall=T0, synced=False):
        self.wall, self.synced, self.mono = wall, synced, 1000.0

    def guard(self, store, tolerance=5.0):
        return ClockGuard(store, tolerance, wall=lambda: self.wall, mono=lambda: self.mono,
                          synchronised=lambda: self.synced)


def persist(store, guard):
    with store.write():
        guard.persist()


def test_rtc_reset_to_1970_on_first_boot(tmp_path):
    c = FakeClock(wall=86400.0)
    store = Store(tmp_path)  # nothing on disk yet: the build floor still catches it
    assert c.guard(store).now() is None
    store.close()


def test_backwards_clock_latches_untrusted_across_restart(tmp_path):
    c = FakeClock()
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() == T0
    c.wall = T0 + 100
    assert g.now() == T0 + 100
    persist(store, g)
    c.wall = T0 + 97          # within tolerance (NTP slew, a late write)
    assert g.now() == T0 + 97
    c.wall = T0 + 50          # moved back
    assert g.now() is None and g.state == "untrusted"
    c.wall = T0 + 500         # moving forward again does not make a wrong clock right
    assert g.now() is None
    persist(store, g)
    store.close()
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() is None and g.state == "untrusted"
    c.synced = True           # NTP synchronised: trusted again, floor follows the real time
    assert g.now() == T0 + 500 and g.state == "trusted"
    store.close()


def test_hub_time_restores(tmp_path):
    c = FakeClock(wall=MIN_PLAUSIBLE_TIME - 10)  # RTC lost power: behind any build of this software
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() is None
    g.restore(T0)
    c.mono += 7
    assert g.now() == T0 + 7 and g.state == "trusted"
    store.close()


def test_verifier_refuses_with_clock_untrusted(keyset, keyset_config, tmp_path):
    issuer = Issuer.from_dir(keyset)
    v = Verifier.open(keyset_config, tmp_path / "state")
    c = FakeClock(wall=T0)
    v.clock = c.guard(v.store)
    assert v.verify(issuer.issue(Person(), iat=int(T0))).reason == "ok"
    c.wall = T0 - 3600
    r = v.verify(issuer.issue(Person(), iat=int(T0 - 3600)))
    assert (r.decision, r.reason) == ("deny", "clock_untrusted")
    assert v.verify("https://example.org").reason == "not_health_code"  # step 1 still says what it is
    code = issuer.issue(Person(), iat=int(T0))
    forged = code[:100] + ("0" if code[100] != "0" else "1") + code[101:]
    assert v.verify(forged).reason == "bad_signature"  # a forgery is a forgery, whatever the clock
    # an audit with an explicit trusted time is not subject to the guard
    assert v.verify(issuer.issue(Person(), iat=int(T0)), now=T0).reason == "ok"
    events = v.store.events()
    assert [e["clock"] for e in events] == ["trusted", "untrusted", "untrusted", "untrusted", "trusted"]
    v.close()


# --- the guard's edges: tolerance, floor, restore, persist ----------------------------------------

def test_exactly_tolerance_behind_the_floor_is_trusted_a_bit_more_is_not(tmp_path):
    c = FakeClock()
    store = Store(tmp_path)
    g = c.guard(store, tolerance=5.0)
    assert g.now() == T0 and g.floor == T0
    c.wall = T0 - 5.0
    assert g.now() == T0 - 5.0 and g.state == "trusted"
    assert g.floor == T0                     # a clock behind the floor never lowers it
    c.wall = T0 - 5.001
    assert g.now() is None and g.state == "untrusted"
    c.wall = T0                              # latched: even the floor itself is not trusted now
    assert g.now() is None and g.state == "untrusted"
    store.close()


def test_zero_tolerance_and_the_default(tmp_path):
    c = FakeClock()
    store = Store(tmp_path)
    g = c.guard(store, tolerance=0.0)
    assert g.now() == T0
    c.wall = T0 - 0.001
    assert g.now() is None
    store.close()
    store = Store(tmp_path / "b")
    g = ClockGuard(store, wall=lambda: c.wall, mono=lambda: c.mono, synchronised=lambda: False)
    c.wall = T0
    assert g.now() == T0
    c.wall = T0 - 5.0                        # the default tolerance is five seconds
    assert g.now() == T0 - 5.0
    c.wall = T0 - 5.5
    assert g.now() is None
    store.close()


def test_first_boot_floor_is_the_build_time(tmp_path):
    c = FakeClock(wall=MIN_PLAUSIBLE_TIME - 5.0)
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.floor == MIN_PLAUSIBLE_TIME
    assert g.now() == MIN_PLAUSIBLE_TIME - 5.0
    c.wall = MIN_PLAUSIBLE_TIME - 5.5
    assert g.now() is None
    store.close()


def test_floor_follows_the_highest_time_seen(tmp_path):
    c = FakeClock()
    store = Store(tmp_path)
    g = c.guard(store)
    for wall, floor in ((T0, T0), (T0 + 10, T0 + 10), (T0 + 8, T0 + 10), (T0 + 11.5, T0 + 11.5)):
        c.wall = wall
        assert g.now() == wall and g.floor == floor
    store.close()


def test_persist_round_trip(tmp_path):
    c = FakeClock(wall=T0 + 0.123456789)
    store = Store(tmp_path)
    g = c.guard(store)
    g.now()
    persist(store, g)
    assert (store.get_meta("clock_floor"), store.get_meta("clock_state")) == (repr(T0 + 0.123456789), "trusted")
    store.close()
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.floor == T0 + 0.123456789 and g.state == "trusted"   # exact: repr round-trips a float
    c.wall = T0 + 0.123456789 - 5.0
    assert g.now() == c.wall                                     # the floor on disk is the one used
    c.wall -= 0.001
    assert g.now() is None
    persist(store, g)
    assert store.get_meta("clock_state") == "untrusted"
    store.close()
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.state == "untrusted"
    c.wall = T0 + 1000
    assert g.now() is None                                       # still latched after a restart
    store.close()


def test_restore_runs_on_the_hub_time_and_outranks_the_floor(tmp_path):
    c = FakeClock(wall=T0 + 1000)
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() == T0 + 1000
    g.restore(T0)                            # signed hub time behind the local floor: the hub wins
    assert g.floor == T0 and g.state == "trusted"
    c.wall = 0.0                             # the wall clock is ignored while running on the hub time
    c.mono += 2.5
    assert g.now() == T0 + 2.5 and g.floor == T0 + 2.5
    persist(store, g)
    assert store.get_meta("clock_floor") == repr(T0 + 2.5)
    c.mono += 1
    assert g.now() == T0 + 3.5
    store.close()


def test_restore_clears_a_latch(tmp_path):
    c = FakeClock(wall=T0)
    store = Store(tmp_path)
    g = c.guard(store)
    g.now()
    c.wall = T0 - 100
    assert g.now() is None
    g.restore(T0 + 50)
    assert g.state == "trusted" and g.now() == T0 + 50
    store.close()


def test_synchronised_clock_wins_over_latch_and_hub_time_never_over_the_floor(tmp_path, caplog):
    c = FakeClock(wall=T0)
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() == T0
    c.synced = True
    c.wall = T0 + 1
    with caplog.at_level("WARNING", logger="terminal.state.clock"):
        assert g.now() == T0 + 1 and g.floor == T0 + 1
    c.wall = T0 + 1                          # exactly at the floor: nothing to say either
    with caplog.at_level("WARNING", logger="terminal.state.clock"):
        assert g.now() == T0 + 1
    assert caplog.records == []              # nothing to say: it was trusted and not behind the floor
    c.synced = False
    c.wall = T0 - 200
    assert g.now() is None and g.state == "untrusted"
    c.synced = True
    c.wall = T0 - 100                        # synchronised but behind the floor: the latch stays
    assert g.now() is None and g.floor == T0 + 1
    caplog.clear()
    c.wall = T0 + 2                          # synchronised and past the floor: the latch goes
    with caplog.at_level("WARNING", logger="terminal.state.clock"):
        assert g.now() == T0 + 2 and g.state == "trusted"
    assert [r.getMessage() for r in caplog.records] == ["clock: system clock is synchronised; trusting it again"]
    g.restore(T0 + 5000)
    c.mono += 10
    assert g.now() == T0 + 5010              # signed hub time outranks a synchronised clock behind it
    c.wall = T0 + 5012                       # synchronised and caught up: the hub anchor is dropped
    assert g.now() == T0 + 5012
    c.synced = False
    c.wall = T0 + 5013
    assert g.now() == T0 + 5013              # and not taken up again when sync is lost
    store.close()


def test_a_synchronised_clock_behind_the_floor_is_untrusted(tmp_path, caplog):
    """Issue #12 finding 14: NTP is unauthenticated, and spoofed answers made the kernel
    synchronise to a day back, which the guard trusted unconditionally. Synchronised or not, a
    clock more than `tolerance` behind the floor latches clock_untrusted; only the hub's signed
    time may take the terminal behind its floor."""
    c = FakeClock(synced=True)
    store = Store(tmp_path)
    g = c.guard(store, tolerance=5.0)
    assert g.now() == T0
    c.wall = T0 - 5.0
    assert g.now() == T0 - 5.0 and g.state == "trusted" and g.floor == T0   # tolerance: the floor stays
    c.wall = T0 - 5.001
    with caplog.at_level("ERROR", logger="terminal.state.clock"):
        assert g.now() is None and g.state == "untrusted" and g.floor == T0
    assert [r.getMessage() for r in caplog.records] == [
        "clock: system clock is synchronised but 5 s behind the highest trusted time (NTP answers moved it "
        "back?); refusing tokens (clock_untrusted) until the hub's time or a synchronised clock past that "
        "time restores it"]
    c.wall = T0 - 86400                      # a day back
    assert g.now() is None
    persist(store, g)
    store.close()
    store = Store(tmp_path)
    g = c.guard(store)
    assert g.now() is None and g.state == "untrusted" and g.floor == T0     # across a restart
    g.restore(T0 - 3600)                     # the hub's signed time may go behind the floor
    assert g.now() == T0 - 3600 and g.state == "trusted" and g.floor == T0 - 3600
    store.close()
    store = Store(tmp_path / "b")
    g = c.guard(store)
    c.wall = T0
    assert g.now() == T0
    c.wall = T0 - 86400
    assert g.now() is None                   # the first step back is caught, not only a latch
    c.wall = T0 - 5.0                        # NTP right again: synchronised, within tolerance of the floor
    assert g.now() == T0 - 5.0 and g.state == "trusted"
    store.close()


def test_spoofed_ntp_does_not_let_yesterdays_code_through(keyset, keyset_config, tmp_path):
    """Issue #12 finding 14, at the gate: a code issued a day ago, shown while spoofed NTP has
    the synchronised clock a day back, is clock_untrusted, not ok."""
    issuer = Issuer.from_dir(keyset)
    v = Verifier.open(keyset_config, tmp_path / "state")
    c = FakeClock(wall=T0, synced=True)
    v.clock = c.guard(v.store)
    yesterdays = issuer.issue(Person(), iat=int(T0 - 86400))
    assert v.verify(issuer.issue(Person(), iat=int(T0))).reason == "ok"
    c.wall = T0 - 86400 + 10
    r = v.verify(yesterdays)
    assert (r.decision, r.reason) == ("deny", "clock_untrusted")
    v.close()


def test_latching_is_logged_with_how_far_behind(tmp_path, caplog):
    c = FakeClock(wall=T0)
    store = Store(tmp_path)
    g = c.guard(store)
    g.now()
    c.wall = T0 - 3600
    with caplog.at_level("ERROR", logger="terminal.state.clock"):
        assert g.now() is None
    assert [r.getMessage() for r in caplog.records] == [
        "clock: wall clock is 3600 s behind the highest trusted time; refusing tokens (clock_untrusted) "
        "until the hub's time or a synchronised clock restores it"]
    store.close()


# --- system_clock_synchronised(): the real function, adjtimex stood in for at the C boundary -------

@pytest.mark.parametrize("state, synced", [
    (0, True), (1, True), (2, True), (3, True), (4, True),   # TIME_OK, INS, DEL, OOP, WAIT
    (5, False),                                              # TIME_ERROR: not synchronised
    (-1, False),                                             # the call failed
])
def test_system_clock_synchronised_reads_adjtimex(mocker, state, synced):
    libc = mocker.patch.object(clock, "_libc")
    libc.adjtimex.return_value = state
    assert clock.system_clock_synchronised() is synced
    libc.adjtimex.assert_called_once()
    (buf,), _ = libc.adjtimex.call_args
    # a struct timex (208 bytes on 64-bit) of zeros: modes = 0 is a read-only query, never a set
    assert len(buf.raw) >= 208 and buf.raw == bytes(len(buf.raw))


def test_system_clock_synchronised_without_adjtimex(mocker):
    mocker.patch.object(clock, "_libc", mocker.NonCallableMock(spec=[]))   # a libc that lacks it
    assert clock.system_clock_synchronised() is False


def test_guard_asks_adjtimex_by_default(mocker, tmp_path):
    libc = mocker.patch.object(clock, "_libc")
    store = Store(tmp_path)
    wall = [86400.0]
    g = ClockGuard(store, wall=lambda: wall[0])        # an RTC in 1970 ...
    libc.adjtimex.return_value = 5
    assert g.now() is None
    libc.adjtimex.return_value = 0                     # ... that NTP says is right: behind the floor all the same
    assert g.now() is None
    wall[0] = T0                                       # NTP has set it: past the floor, the same wall clock
    libc.adjtimex.return_value = 5
    assert g.now() is None                             # not synchronised: the latch stays
    libc.adjtimex.return_value = 0
    assert g.now() == T0 and g.state == "trusted"
    store.close()


def test_the_real_adjtimex_answers():
    """No stand-in: the C call works on this machine, read-only, and gives a yes or no."""
    assert clock.system_clock_synchronised() in (True, False)
