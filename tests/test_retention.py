"""Retention (terminal/state/retention.py): the cut-off exactly, nonces, nothing with an untrusted clock."""
from __future__ import annotations

import logging

from terminal.state.retention import DAY, Purged, purge
from terminal.state.store import Store

NOW = 1_800_000_000.0


def store_with(tmp_path, ats, acked):
    s = Store(tmp_path)
    with s.write():
        for i, at in enumerate(ats):
            s.insert_event({"id": f"e{i}", "at": at, "boot_id": "b", "mono_ns": i, "clock": "trusted",
                            "method": "qr", "decision": "allow", "reason": "ok", "status": 0, "flags": 0,
                            "latency_ms": 1.0, "subject": None})
    s.ack(acked, now=NOW)
    return s


def seqs(s):
    return [r[0] for r in s.db.execute("SELECT seq FROM events ORDER BY seq")]


def test_cut_off_is_exactly_days_before_now(tmp_path, caplog):
    cut = NOW - 21 * DAY
    s = store_with(tmp_path, [cut - 0.001, cut, cut + 1, cut - 5 * DAY, cut - DAY], acked=4)
    with caplog.at_level(logging.INFO, logger="terminal.state.retention"):
        assert purge(s, 21, NOW) == Purged(events=2, nonces=0)   # seq 1 and 4; seq 2 is at the cut-off
    assert seqs(s) == [2, 3, 5]                                   # seq 5 is older, but not acked
    assert [r.getMessage() for r in caplog.records] == ["retention: purged 2 synced events older than 21 days"]
    s.close()


def test_one_day(tmp_path):
    s = store_with(tmp_path, [NOW - DAY, NOW - DAY - 1], acked=2)
    assert purge(s, 1, NOW).events == 1 and seqs(s) == [1]
    s.close()


def test_nothing_to_purge_is_not_logged(tmp_path, caplog):
    s = store_with(tmp_path, [NOW], acked=1)
    with caplog.at_level(logging.INFO, logger="terminal.state.retention"):
        assert purge(s, 21, NOW) == Purged(0, 0)
    assert caplog.records == [] and seqs(s) == [1]
    s.close()


def test_nonces_past_their_keep_time_go(tmp_path):
    s = store_with(tmp_path, [], acked=0)
    with s.write():
        s.use_nonce(b"past", int(NOW) - 1)
        s.use_nonce(b"now", int(NOW))
        s.use_nonce(b"later", int(NOW) + 60)
    assert purge(s, 21, NOW) == Purged(events=0, nonces=1)
    assert sorted(bytes(r[0]) for r in s.db.execute("SELECT nonce FROM nonces")) == [b"later", b"now"]
    s.close()


def test_untrusted_clock_purges_nothing(tmp_path):
    s = store_with(tmp_path, [1.0, 2.0], acked=2)
    with s.write():
        s.use_nonce(b"ancient", 1)
    assert purge(s, 1, None) == Purged(0, 0)
    assert seqs(s) == [1, 2] and s.db.execute("SELECT count(*) FROM nonces").fetchone()[0] == 1
    s.close()
