"""The terminal's one SQLite database: event outbox, replay window, signed state, clock floor.

One process owns a state directory (an exclusive ``flock`` on ``state_dir/lock``), and in it
one writing connection, shared by the daemon's threads under one lock, so a transaction never
interleaves with another thread's statements (a reader never sees an uncommitted event): WAL,
``synchronous=FULL`` (an event is on disk before the gate opens, power cut or not), write
transactions that ``BEGIN IMMEDIATE`` so a writer never discovers a lock half-way, and
``PRAGMA user_version`` migrations. Two more connections never write rows: one reads the
outbox for the hub pump and status, one runs WAL checkpoints.
"""
from __future__ import annotations

import fcntl
import logging
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

log = logging.getLogger(__name__)

DB_NAME = "terminal.db"


def _make_epoch(db: sqlite_utils.Database) -> None:
    """The database's epoch (docs/protocol/hub.md): 16 lowercase hex characters from the OS
    CSPRNG, made once, when the database is created or first opened by this version, and
    never changed: the hub tells this database's seqs apart from those of a lost one by it."""
    db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", [secrets.token_hex(8)])


# Each entry moves the schema from version i to i+1: SQL (statements split on ";", so none in
# comments) or a function of the database. Never edit a released entry: append.
MIGRATIONS = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- signed documents last accepted (trust list, later policy, keys, time): kept across restarts
    CREATE TABLE signed_docs (kind TEXT PRIMARY KEY, seq INTEGER NOT NULL, envelope BLOB NOT NULL);
    -- nonces of tokens already presented, kept until the token could no longer be fresh
    CREATE TABLE nonces (nonce BLOB PRIMARY KEY, keep_until INTEGER NOT NULL);
    CREATE INDEX nonces_keep_until ON nonces (keep_until);
    -- the outbox: exactly the event fields of spec/mqtt.md (AUTOINCREMENT never reuses a seq,
    -- even after every row has been acked and deleted)
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        at REAL NOT NULL,
        boot_id TEXT NOT NULL,
        mono_ns INTEGER NOT NULL,
        clock TEXT NOT NULL,
        method TEXT NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        status INTEGER,
        flags INTEGER,
        latency_ms REAL,
        subject TEXT
    );
    """,
    """
    -- an event acked by the hub stays (synced) for local history until retention purges it;
    -- the outbox is the events not yet acked
    ALTER TABLE events ADD COLUMN acked_at REAL;
    CREATE INDEX events_unacked ON events (seq) WHERE acked_at IS NULL;
    """,
    """
    -- the hub's answers for cards, to stand in during an outage: keyed by HMAC-SM3 of the ID
    -- number under a per-terminal secret (meta status_cache_key), never by the number itself
    CREATE TABLE status_cache (
        digest BLOB PRIMARY KEY,
        status INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        nat_at INTEGER NOT NULL,
        nat_result INTEGER NOT NULL,
        vax_doses INTEGER NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX status_cache_expires ON status_cache (expires);
    """,
    """
    -- acks are cumulative, so the acked events are always the prefix seq <= meta acked_seq:
    -- an ack writes that one row instead of rewriting every page of the events it covers
    INSERT OR REPLACE INTO meta (key, value)
        SELECT 'acked_seq', CAST(COALESCE(max(seq), 0) AS TEXT) FROM events WHERE acked_at IS NOT NULL;
    DROP INDEX events_unacked;
    ALTER TABLE events DROP COLUMN acked_at
    """,
    _make_epoch,
    """
    -- the status cache's HMAC key is now derived from the device key and never stored
    -- (terminal/state/statuscache.py): the key kept here until now goes, with every answer cached
    -- under it (a convenience only: the hub answers again)
    DELETE FROM meta WHERE key = 'status_cache_key';
    DELETE FROM status_cache
    """,
    """
    -- what became of the gate for this event (fleet.md): 'opened', 'fault' (an allow the relay
    -- could not open) or NULL (deny, review, no gate wired, and every event before this column)
    ALTER TABLE events ADD COLUMN gate TEXT
    """,
    """
    -- a staff override's event names the review event it confirms (docs/protocol/staff.md);
    -- NULL for every other event
    ALTER TABLE events ADD COLUMN ref TEXT
    """,
    """
    -- remote commands already run (or refused after being claimed), kept until their not_after:
    -- a command is run at most once, across restarts too
    CREATE TABLE commands (id TEXT PRIMARY KEY, not_after INTEGER NOT NULL);
    CREATE INDEX commands_not_after ON commands (not_after)
    """,
)
EPOCH = re.compile(r"[0-9a-f]{16}")

EVENT_FIELDS = ("id", "seq", "at", "boot_id", "mono_ns", "clock", "method", "decision", "reason",
                "status", "flags", "latency_ms", "subject", "gate", "ref")


LOCK_NAME = "lock"
# `gate-terminal status` takes the lock shared for an instant to see whether a daemon holds it
# (statusfile.daemon_lock_held): a daemon starting in that instant tries again, for this long.
LOCK_PATIENCE = 1.0


def _lock(f) -> bool:
    """The state directory's exclusive flock; False if another process holds it."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


class StoreError(RuntimeError):
    """The state directory or database cannot be used; the message says which and why."""


def inspect_database(state_dir: Path) -> int | None:
    """The schema version of ``state_dir``'s database, or None if there is none yet; StoreError
    if it is corrupt or of a schema newer than this software. Read-only, for ``check-config``:
    creates, locks and migrates nothing, the daemon running or not.

    ``mode=ro`` reads through a running daemon's WAL; with no -wal and -shm (no daemon) even a
    read-only connection would create them, so ``immutable=1`` reads the main file alone."""
    db = Path(state_dir) / DB_NAME
    if not db.exists():
        return None
    live = all(db.with_name(db.name + suffix).exists() for suffix in ("-wal", "-shm"))
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?{'mode=ro' if live else 'immutable=1'}", uri=True, timeout=5)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"{db}: {e}") from None
    if problems != ["ok"]:
        raise StoreError(f"{db}: database is corrupt: {'; '.join(problems)}")
    if version > len(MIGRATIONS):
        raise StoreError(f"{db}: schema version {version} is newer than this gate-terminal ({len(MIGRATIONS)})")
    return version


class Store:
    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._flock = open(self.state_dir / LOCK_NAME, "a+")
        except OSError as e:
            raise StoreError(f"state directory {self.state_dir}: {e.strerror}") from None
        if not _lock(self._flock):
            self._flock.close()
            raise StoreError(f"state directory {self.state_dir} is in use by another gate-terminal process") from None
        self._lock = threading.RLock()
        # Clear while a presentation is being decided: background work (the hub pump) waits
        # for it, so a person at the gate never waits for a backlog being sent.
        self.no_presentation = threading.Event()
        self.no_presentation.set()
        opened: list[sqlite3.Connection] = []

        def connect(**kw) -> sqlite3.Connection:
            opened.append(sqlite3.connect(self.state_dir / DB_NAME, timeout=10, check_same_thread=False, **kw))
            return opened[-1]

        try:
            conn = connect()
            self.db = sqlite_utils.Database(conn)
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.state_dir / DB_NAME}: cannot switch to WAL (journal_mode={mode})")
            self.db.execute("PRAGMA synchronous=FULL")
            # Deleted rows are overwritten, not left in free space for a copy of the file to show
            # (the default depends on how SQLite was built).
            self.db.execute("PRAGMA secure_delete=ON")
            # No checkpoint inside a presentation's commit: checkpoint() runs them from
            # background threads, on a connection of their own.
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = connect(isolation_level=None)
            self._migrate()
            # The outbox is read (hub pump, status, metrics) on a connection of its own: a WAL
            # reader sees committed rows only and never holds up a presentation's commit.
            self._reader = connect(isolation_level=None)
            self._reader_lock = threading.Lock()
            self._acked = int(self.get_meta("acked_seq", "0"))
            self.epoch = self.get_meta("epoch", "")
            if not EPOCH.fullmatch(self.epoch):
                raise sqlite3.DatabaseError(f"meta epoch {self.epoch[:40]!r} is not 16 lowercase hex characters")
        except (sqlite3.DatabaseError, StoreError) as e:
            # Nothing half-open outlives a failed open: not the lock (the next try would find
            # the directory "in use"), not a connection.
            for c in opened:
                c.close()
            self._flock.close()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"{self.state_dir / DB_NAME}: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            self._checkpointer.close()
            self.db.close()
        self._flock.close()

    def checkpoint(self) -> None:
        """Copy the WAL back into the database (PASSIVE: never waits for, nor blocks, the writer).
        Called by the hub pump after acks and by housekeeping; never on the decision path."""
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as e:  # busy or full: the next call tries again
            log.debug("checkpoint deferred: %s", e)

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.state_dir / DB_NAME}: schema version {version} is newer than this "
                             f"gate-terminal ({len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            with self.write():
                step = MIGRATIONS[i]
                if callable(step):
                    step(self.db)
                else:
                    for stmt in step.split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {i + 1}")
        if version < len(MIGRATIONS):
            # What a migration deleted may still be in older WAL frames: empty the WAL.
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def write(self):
        """One write transaction, begun IMMEDIATE; nested sqlite-utils calls become savepoints."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def presentation(self):
        """Mark a presentation in progress (the decision thread only)."""
        self.no_presentation.clear()
        try:
            yield
        finally:
            self.no_presentation.set()

    @contextmanager
    def read(self):
        """Reads from other threads wait for a write in progress: they see committed rows only."""
        with self._lock:
            yield self.db

    # --- meta -------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value])

    # --- signed documents ---------------------------------------------------------
    def signed_doc(self, kind: str) -> tuple[int, bytes] | None:
        with self.read() as db:
            row = db.execute("SELECT seq, envelope FROM signed_docs WHERE kind = ?", [kind]).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def save_signed_doc(self, kind: str, seq: int, envelope: bytes) -> None:
        with self.write():
            self.db["signed_docs"].upsert({"kind": kind, "seq": seq, "envelope": envelope}, pk="kind")

    # --- replay window ------------------------------------------------------------
    def use_nonce(self, nonce: bytes, keep_until: int) -> bool:
        """Record a nonce inside a write() transaction; False if an earlier presentation used it."""
        cur = self.db.execute("INSERT OR IGNORE INTO nonces (nonce, keep_until) VALUES (?, ?)",
                              [nonce, keep_until])
        return cur.rowcount == 1

    def purge_nonces(self, now: float) -> int:
        with self.write():
            return self.db.execute("DELETE FROM nonces WHERE keep_until < ?", [int(now)]).rowcount

    # --- outbox -------------------------------------------------------------------
    def insert_event(self, event: dict) -> int:
        """Insert inside a write() transaction; returns the event's seq. ``gate`` and ``ref`` may
        be left out (None: an event that involved no gate, an event that is not a staff override)."""
        cur = self.db.execute(
            "INSERT INTO events (id, at, boot_id, mono_ns, clock, method, decision, reason, status, flags,"
            " latency_ms, subject, gate, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [event.get(k) if k in ("gate", "ref") else event[k] for k in EVENT_FIELDS if k != "seq"])
        return cur.lastrowid

    # Outbox = events with seq > acked_seq (meta); acked events stay as local history until
    # retention purges them. INTEGER PRIMARY KEY seq: every query below is a rowid range.
    def acked_seq(self) -> int:
        return self._acked

    def _read_outbox(self, sql: str, params: list) -> list[tuple]:
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    def events(self, after_seq: int = 0, limit: int = 200) -> list[dict]:
        """Outbox events after ``after_seq``, in seq order, wire fields only."""
        rows = self._read_outbox(f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                 [max(after_seq, self._acked), limit])
        return [dict(zip(EVENT_FIELDS, r)) for r in rows]

    def ack(self, acked_seq: int, now: float) -> int:
        """The hub holds every event up to ``acked_seq``: they leave the outbox, and ``now`` is
        the last successful sync, in one transaction; returns how many events just left.

        Committed without an fsync (``synchronous=NORMAL`` for this transaction only): an ack
        lost to a power cut only means those events are sent again and the hub drops the
        duplicates, while an fsync here would hold the store for milliseconds that the next
        presentation's commit would wait out."""
        with self._lock:
            if acked_seq <= self._acked:
                return 0
            self.db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.write():
                    n = self.db.execute("SELECT count(*) FROM events WHERE seq > ? AND seq <= ?",
                                        [self._acked, acked_seq]).fetchone()[0]
                    self.set_meta("acked_seq", str(acked_seq))
                    self.set_meta("last_sync_at", repr(now))
            finally:
                self.db.execute("PRAGMA synchronous=FULL")
            self._acked = acked_seq
        return n

    def outbox_depth(self) -> int:
        """Counted on the reader connection: a backlog of 100,000 takes tens of ms to count,
        which must not hold the store's lock (status and metrics ask every few seconds)."""
        return self._read_outbox("SELECT count(*) FROM events WHERE seq > ?", [self._acked])[0][0]

    def oldest_unsynced_at(self) -> float | None:
        """When the first event not yet acked was decided (first in seq order: one row, not a scan)."""
        rows = self._read_outbox("SELECT at FROM events WHERE seq > ? ORDER BY seq LIMIT 1", [self._acked])
        return rows[0][0] if rows else None

    def purge_synced(self, before: float) -> int:
        """Delete acked events decided before ``before``; an unsynced event is never purged."""
        with self.write():
            return self.db.execute("DELETE FROM events WHERE seq <= ? AND at < ?", [self._acked, before]).rowcount

    def last_seq(self) -> int:
        with self.read() as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return row[0] if row else 0

    def last_sync_at(self) -> float | None:
        value = self.get_meta("last_sync_at")
        return float(value) if value is not None else None

    # --- remote commands --------------------------------------------------------------
    def claim_command(self, cid: str, not_after: int, now: float) -> bool:
        """Remember command ``cid`` until ``not_after``; False if it was claimed before. Ids past
        their not_after are forgotten on the way (such a command is refused as expired anyway)."""
        with self.write():
            self.db.execute("DELETE FROM commands WHERE not_after < ?", [int(now)])
            cur = self.db.execute("INSERT OR IGNORE INTO commands (id, not_after) VALUES (?, ?)", [cid, not_after])
            return cur.rowcount == 1

    # --- card status cache ----------------------------------------------------------
    STATUS_FIELDS = ("status", "flags", "nat_at", "nat_result", "vax_doses")

    def cached_status(self, digest: bytes, now: float) -> dict | None:
        with self.read() as db:
            row = db.execute(f"SELECT {', '.join(self.STATUS_FIELDS)} FROM status_cache"
                             " WHERE digest = ? AND expires > ?", [digest, now]).fetchone()
        return dict(zip(self.STATUS_FIELDS, row)) if row else None

    def cache_status(self, digest: bytes, fields: dict, expires: float, now: float) -> None:
        """Keep one answer until ``expires``; answers already expired are purged on the way."""
        with self.write():
            self.db.execute("DELETE FROM status_cache WHERE expires <= ?", [now])
            self.db.execute(
                f"INSERT OR REPLACE INTO status_cache (digest, {', '.join(self.STATUS_FIELDS)}, expires)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", [digest, *(fields[k] for k in self.STATUS_FIELDS), expires])

    def drop_cached_status(self, digest: bytes) -> None:
        with self.write():
            self.db.execute("DELETE FROM status_cache WHERE digest = ?", [digest])
