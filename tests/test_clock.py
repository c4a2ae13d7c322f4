"""The clock guard (docs/protocol/token.md §6): a clock moved back is refused, never silently used."""
from __future__ import annotations

from sim.issuer import Issuer, Person
from terminal.clock import MIN_PLAUSIBLE_TIME, ClockGuard
from terminal.store import Store
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
