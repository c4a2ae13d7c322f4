"""The SQLite store: WAL, migrations, one owner, seq forever, no personal data on disk."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3

import pytest

from sim.issuer import Issuer, Person
from drivers.idnumber import check_character
from terminal.state.store import MIGRATIONS, Store, StoreError
from terminal.verifier import Verifier


def test_wal_and_user_version(tmp_path):
    s = Store(tmp_path)
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()


def test_one_process_owns_a_state_dir(tmp_path):
    s = Store(tmp_path)
    with pytest.raises(StoreError, match="in use"):
        Store(tmp_path)
    s.close()
    Store(tmp_path).close()  # released on close


def test_corrupt_or_newer_database_is_a_clear_error(tmp_path):
    corrupt, newer = tmp_path / "corrupt", tmp_path / "newer"
    corrupt.mkdir()
    (corrupt / "terminal.db").write_bytes(b"this is not a database" * 100)
    newer.mkdir()
    con = sqlite3.connect(newer / "terminal.db")
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    for state_dir, why in ((corrupt, "terminal.db: file is not a database"),
                           (newer, r"^[^:]*/newer/terminal\.db: schema version \d+ is newer than")):
        fds = len(os.listdir("/proc/self/fd"))
        with pytest.raises(StoreError, match=why) as failed:
            Store(state_dir)
        # While the failure (and with it the half-built store) is still referenced, nothing of
        # it is open: no connection, and not the lock, which would make the next open "in use".
        assert len(os.listdir("/proc/self/fd")) == fds, why
        with open(state_dir / "lock") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        del failed


def event(i):
    return {"id": f"id-{i}", "at": 1.0, "boot_id": "b", "mono_ns": i, "clock": "trusted", "method": "qr",
            "decision": "deny", "reason": "expired", "status": None, "flags": None, "latency_ms": 1.0,
            "subject": None}


def test_seq_survives_ack_and_restart(tmp_path):
    s = Store(tmp_path)
    with s.write():
        seqs = [s.insert_event(event(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in s.events(after_seq=2)] == [3, 4, 5]
    assert s.ack(3, now=10.0) == 3 and s.outbox_depth() == 2
    assert [e["seq"] for e in s.events()] == [4, 5]
    assert s.ack(5, now=11.0) == 2 and s.outbox_depth() == 0 and s.events() == []
    assert s.purge_synced(before=2.0) == 5
    s.close()
    s = Store(tmp_path)
    with s.write():
        assert s.insert_event(event(9)) == 6
    assert s.last_seq() == 6
    s.close()


def test_acked_rows_of_a_version_3_database_become_the_watermark(tmp_path):
    """A terminal upgraded with events in its outbox: what the hub acked stays acked, the rest
    is still to send, seq goes on."""
    con = sqlite3.connect(tmp_path / "terminal.db")
    for i, migration in enumerate(MIGRATIONS[:3]):
        con.executescript(migration)
        con.execute(f"PRAGMA user_version = {i + 1}")
    cols = [f for f in event(0) if f != "seq"]
    for i in range(5):
        con.execute(f"INSERT INTO events ({', '.join(cols)}, acked_at) VALUES ({', '.join('?' * (len(cols) + 1))})",
                    [event(i)[c] for c in cols] + [9.0 if i < 3 else None])
    con.commit()
    con.close()
    s = Store(tmp_path)
    assert s.acked_seq() == 3 and s.outbox_depth() == 2
    assert [e["seq"] for e in s.events()] == [4, 5]
    assert "acked_at" not in {c.name for c in s.db["events"].columns}
    with s.write():
        assert s.insert_event(event(7)) == 6
    s.close()


@pytest.mark.parametrize("crashed", [False, True], ids=["closed", "crashed"])
def test_upgrading_a_version_4_database_erases_the_status_cache_key_and_answers(tmp_path, crashed):
    """Issue #12 finding 13: the releases before kept the status cache's HMAC key in the database,
    beside the digests it keyed. Upgrading deletes both, from every file a copy would take (the
    WAL of a terminal that lost power included), and keeps everything else."""
    old, state = tmp_path / "old", tmp_path / "state"
    old.mkdir()
    con = sqlite3.connect(old / "terminal.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    for i, migration in enumerate(MIGRATIONS[:4]):
        con.executescript(migration)
        con.execute(f"PRAGMA user_version = {i + 1}")
    key = os.urandom(32).hex()
    digests = [os.urandom(32) for _ in range(300)]  # several pages of them
    con.execute("INSERT INTO meta VALUES ('status_cache_key', ?), ('clock_floor', '1800000000.0')", [key])
    con.executemany("INSERT INTO status_cache VALUES (?, 1, 0, 0, 0, 2, 1900000000.0)", [(d,) for d in digests])
    cols = [f for f in event(0) if f != "seq"]
    con.execute(f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [event(1)[c] for c in cols])
    if not crashed:
        con.close()  # the last connection out checkpoints and deletes the WAL
    shutil.copytree(old, state)  # crashed: everything is still in the WAL
    if crashed:
        con.close()
    s = Store(state)
    try:
        assert s.get_meta("status_cache_key") is None
        assert s.db.execute("SELECT count(*) FROM status_cache").fetchone()[0] == 0
        assert s.get_meta("clock_floor") == "1800000000.0" and s.last_seq() == 1
        # deleted content is overwritten whatever SQLite's build default
        assert s.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
        blob = b"".join(p.read_bytes() for p in state.iterdir() if p.name.startswith("terminal.db"))
        assert key.encode() not in blob
        assert not [d for d in digests if d in blob]
    finally:
        s.close()


def test_an_ack_writes_a_page_not_the_events_it_covers(tmp_path):
    """Acks are cumulative: a drained backlog of thousands must not rewrite every event's page
    (flash wear, and WAL traffic queued in front of each presentation's fsync)."""
    s = Store(tmp_path)
    with s.write():
        for i in range(5000):
            s.insert_event(event(i) | {"subject": "ab" * 150})
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert s.ack(4000, now=10.0) == 4000
    busy, wal_frames, _ = s.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and wal_frames <= 4             # the meta row's page(s), not ~200 event pages
    assert s.outbox_depth() == 1000 and s.events(limit=1)[0]["seq"] == 4001
    s.close()


def test_retention_never_purges_unsynced(tmp_path):
    s = Store(tmp_path)
    with s.write():
        for i in range(4):
            s.insert_event(event(i) | {"at": float(i)})
    s.ack(2, now=100.0)
    assert s.oldest_unsynced_at() == 2.0
    assert s.purge_synced(before=1000.0) == 2           # seq 1, 2: synced
    assert [e["seq"] for e in s.events()] == [3, 4]     # unsynced, however old
    s.close()


def test_failed_transaction_leaves_nothing(tmp_path):
    s = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with s.write():
            s.insert_event(event(1))
            raise RuntimeError("power cut")
    assert s.outbox_depth() == 0
    with s.write():
        assert s.insert_event(event(2)) == 1  # the rolled-back seq is not burnt either
    s.close()


def test_nonce_window(tmp_path):
    s = Store(tmp_path)
    with s.write():
        assert s.use_nonce(b"12345678", keep_until=100)
        assert not s.use_nonce(b"12345678", keep_until=100)
    assert s.purge_nonces(now=99) == 0
    assert s.purge_nonces(now=101) == 1
    with s.write():
        assert s.use_nonce(b"12345678", keep_until=200)
    s.close()


def test_no_personal_data_on_disk_or_in_logs(keyset, keyset_config, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    person = Person(name="欧阳娜娜", id_number="37010219900101123" + check_character("37010219900101123"))
    issuer = Issuer.from_dir(keyset)
    v = Verifier.open(keyset_config, tmp_path / "state")
    codes = [issuer.issue(person), issuer.issue(Person(name="欧阳娜娜", id_number=person.id_number,
                                                        status="red"))]
    results = [v.verify(c) for c in codes + codes[:1]]
    assert [r.reason for r in results] == ["ok", "red_code", "replayed"]
    rows = v.store.events()
    v.close()
    secrets = [person.name.encode(), person.id_number.encode(), "娜娜".encode(), b"19900101"]
    for f in (tmp_path / "state").iterdir():
        data = f.read_bytes()
        for s in secrets:
            assert s not in data, (f.name, s)
    for s in secrets:
        assert s.decode() not in caplog.text
    assert "欧***" in caplog.text and f"370102********{person.id_number[-4:]}" in caplog.text
    # the hub, and only the hub, can read who it was
    from terminal.crypto.keyfiles import load_private_key
    hub = load_private_key(keyset / "hub.pem")
    subjects = [json.loads(hub.decrypt(bytes.fromhex(r["subject"]))) for r in rows]
    assert subjects == [{"id_number": person.id_number, "name": person.name}] * 3
    assert set(rows[0]) == {"seq", "id", "at", "boot_id", "mono_ns", "clock", "method", "decision", "reason",
                            "status", "flags", "latency_ms", "subject", "gate", "ref"}


def old_database(path, version: int) -> None:
    """A terminal.db as gate-terminal left it at schema ``version``, holding event(1)."""
    con = sqlite3.connect(path / "terminal.db")
    for i, migration in enumerate(MIGRATIONS[:version]):
        if callable(migration):
            con.execute("INSERT INTO meta (key, value) VALUES ('epoch', '0123456789abcdef')")
        else:
            con.executescript(migration)
        con.execute(f"PRAGMA user_version = {i + 1}")
    cols = [f for f in event(0) if f != "seq"]
    con.execute(f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [event(1)[c] for c in cols])
    con.commit()
    con.close()


def test_a_version_6_database_gets_the_gate_column(tmp_path):
    """Issue #12 finding 1: events from before the gate was recorded read gate None (unknown), the
    outbox and seq go on, and a new event keeps its gate."""
    old_database(tmp_path, 6)
    s = Store(tmp_path)
    try:
        with s.write():
            assert s.insert_event(event(2) | {"decision": "allow", "reason": "ok", "gate": "fault"}) == 2
            assert s.insert_event(event(3)) == 3                    # no gate given: None
        assert [(e["seq"], e["gate"]) for e in s.events()] == [(1, None), (2, "fault"), (3, None)]
    finally:
        s.close()


def test_a_version_4_database_gets_an_epoch_once_and_keeps_it(tmp_path):
    """The previous schema (no epoch): the upgrade makes one, the outbox and seq go on, and every
    later open finds the same epoch (the hub keys this database's seqs by it)."""
    con = sqlite3.connect(tmp_path / "terminal.db")
    for i, migration in enumerate(MIGRATIONS[:4]):
        con.executescript(migration)
        con.execute(f"PRAGMA user_version = {i + 1}")
    cols = [f for f in event(0) if f != "seq"]
    for i in range(3):
        con.execute(f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [event(i)[c] for c in cols])
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('acked_seq', '1')")
    con.commit()
    con.close()
    s = Store(tmp_path)
    epoch = s.epoch
    assert re.fullmatch(r"[0-9a-f]{16}", epoch) and s.get_meta("epoch") == epoch
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 6
    assert s.acked_seq() == 1 and [e["seq"] for e in s.events()] == [2, 3]
    s.close()
    s = Store(tmp_path)
    assert s.epoch == epoch
    with s.write():
        assert s.insert_event(event(9)) == 4
    s.close()


def test_each_new_database_has_its_own_epoch_and_a_bad_one_is_refused(tmp_path):
    epochs = set()
    for i in range(3):
        s = Store(tmp_path / str(i))
        epochs.add(s.epoch)
        s.close()
    assert len(epochs) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", e) for e in epochs)
    for bad, ok in (("0123456789ABCDEF", False), ("0123456789abcde", False), ("0123456789abcdef0", False),
                    ("0123456789abcdef", True)):
        with sqlite3.connect(tmp_path / "0" / "terminal.db") as con:
            con.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", [bad])
        con.close()
        if ok:
            s = Store(tmp_path / "0")
            assert s.epoch == bad
            s.close()
        else:
            with pytest.raises(StoreError, match="epoch"):
                Store(tmp_path / "0")


# --- the outbox and acks, at their edges ------------------------------------------------------------

def outbox_with(tmp_path, ats):
    s = Store(tmp_path)
    with s.write():
        for i, at in enumerate(ats):
            s.insert_event(event(i) | {"at": at})
    return s


def test_stale_and_repeated_acks_change_nothing(tmp_path):
    s = outbox_with(tmp_path, [1.0] * 5)
    assert s.ack(3, now=10.0) == 3
    for stale in (3, 2, 0):        # the hub acks every batch, duplicates and reordered ones included
        assert s.ack(stale, now=20.0) == 0
        assert s.acked_seq() == 3 and s.outbox_depth() == 2 and [e["seq"] for e in s.events()] == [4, 5]
        assert (s.get_meta("acked_seq"), s.last_sync_at()) == ("3", 10.0)   # nothing written
    s.close()
    s = Store(tmp_path)
    assert (s.acked_seq(), s.last_sync_at(), s.outbox_depth()) == (3, 10.0, 2)
    s.close()


def test_an_ack_counts_the_events_it_covers(tmp_path):
    s = outbox_with(tmp_path, [1.0] * 6)
    assert s.last_sync_at() is None and s.acked_seq() == 0
    assert s.ack(1, now=10.0) == 1
    assert s.ack(4, now=11.5) == 3               # seq 2, 3, 4: not the one acked before
    assert (s.acked_seq(), s.last_sync_at(), s.outbox_depth()) == (4, 11.5, 2)
    assert s.ack(5, now=12.0) == 1
    s.close()
    s = Store(tmp_path)                          # the watermark and the sync time are on disk
    assert (s.acked_seq(), s.last_sync_at(), s.outbox_depth()) == (5, 12.0, 1)
    assert [e["seq"] for e in s.events()] == [6]
    s.close()


def test_an_ack_of_purged_events_counts_what_is_there(tmp_path):
    s = outbox_with(tmp_path, [1.0] * 4)
    assert s.ack(2, now=5.0) == 2
    assert s.purge_synced(before=100.0) == 2
    assert s.ack(4, now=6.0) == 2 and s.outbox_depth() == 0
    s.close()


def test_events_after_seq_and_limit(tmp_path):
    s = outbox_with(tmp_path, [float(i) for i in range(201)])
    assert len(s.events()) == 200 and s.events()[-1]["seq"] == 200      # a batch is at most 200
    assert [e["seq"] for e in s.events(after_seq=198)] == [199, 200, 201]
    assert [e["seq"] for e in s.events(after_seq=3, limit=2)] == [4, 5]
    assert s.events(limit=0) == [] and s.events(after_seq=201) == []
    s.ack(10, now=1.0)
    assert [e["seq"] for e in s.events(after_seq=3, limit=2)] == [11, 12]   # never what was acked
    assert [e["seq"] for e in s.events(after_seq=10, limit=1)] == [11]
    assert [e["seq"] for e in s.events(after_seq=11, limit=1)] == [12]
    s.close()


def test_events_are_the_wire_fields_as_inserted(tmp_path):
    s = Store(tmp_path)
    e = {"id": "e-1", "at": 1800000000.25, "boot_id": "boot", "mono_ns": 123456789, "clock": "untrusted",
         "method": "id_card", "decision": "review", "reason": "status_unavailable", "status": 1, "flags": 3,
         "latency_ms": 12.5, "subject": "ab" * 8, "gate": None, "ref": "0190a3b2-review"}
    with s.write():
        assert s.insert_event(e) == 1
    assert s.events() == [e | {"seq": 1}]
    s.close()


def test_a_version_7_database_gains_ref_null_for_its_events(tmp_path):
    """Migration 8 (staff override): the events already in the outbox keep everything and
    have no ref; the next event carries one."""
    old_database(tmp_path, 7)
    s = Store(tmp_path)
    try:
        assert s.events() == [event(1) | {"seq": 1, "gate": None, "ref": None}]
        with s.write():
            assert s.insert_event(event(2) | {"method": "staff", "ref": "id-1"}) == 2
        assert s.events()[1]["ref"] == "id-1"
    finally:
        s.close()


def test_outbox_depth_and_oldest_unsynced(tmp_path):
    s = Store(tmp_path)
    assert (s.outbox_depth(), s.oldest_unsynced_at()) == (0, None)
    with s.write():
        for i, at in enumerate([50.0, 40.0, 70.0, 60.0]):
            s.insert_event(event(i) | {"at": at})
    assert (s.outbox_depth(), s.oldest_unsynced_at()) == (4, 50.0)
    s.ack(1, now=1.0)
    assert (s.outbox_depth(), s.oldest_unsynced_at()) == (3, 40.0)
    s.ack(2, now=1.0)
    assert (s.outbox_depth(), s.oldest_unsynced_at()) == (2, 70.0)     # the first in seq order
    s.ack(4, now=1.0)
    assert (s.outbox_depth(), s.oldest_unsynced_at()) == (0, None)
    s.close()


def test_purge_synced_exactly_at_the_cut_off(tmp_path):
    s = outbox_with(tmp_path, [99.0, 100.0, 101.0, 50.0, 10.0])
    s.ack(4, now=200.0)
    assert s.purge_synced(before=100.0) == 2       # seq 1 (99 < 100) and seq 4 (the watermark itself)
    assert [r[0] for r in s.db.execute("SELECT seq FROM events ORDER BY seq")] == [2, 3, 5]
    assert s.purge_synced(before=100.0) == 0       # at == before is kept
    assert s.purge_synced(before=1e12) == 2        # seq 5 is not acked: kept however old
    assert [r[0] for r in s.db.execute("SELECT seq FROM events")] == [5]
    assert s.outbox_depth() == 1
    s.close()


def test_nonce_keep_until_boundaries(tmp_path):
    s = Store(tmp_path)
    with s.write():
        assert s.use_nonce(b"a" * 8, keep_until=100)
        assert s.use_nonce(b"b" * 8, keep_until=101)
        assert not s.use_nonce(b"a" * 8, keep_until=500)  # a replay does not move its keep time either
    assert s.purge_nonces(now=100) == 0            # keep_until == now: still kept
    with s.write():
        assert not s.use_nonce(b"a" * 8, keep_until=100)
    assert s.purge_nonces(now=101) == 1            # one second past: gone
    with s.write():
        assert not s.use_nonce(b"b" * 8, keep_until=101)
        assert s.use_nonce(b"a" * 8, keep_until=300)
    assert s.purge_nonces(now=102) == 1
    s.close()


def test_a_rolled_back_nonce_is_not_used(tmp_path):
    s = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with s.write():
            assert s.use_nonce(b"n" * 8, keep_until=100)
            raise RuntimeError("power cut before the decision was stored")
    with s.write():
        assert s.use_nonce(b"n" * 8, keep_until=100)
    s.close()
