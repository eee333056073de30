"""Rate-limit counters shared by every worker process of one machine.

Flask-Limiter counts through a ``limits`` storage. ``limits`` ships in-memory
(one count per worker process, so two workers let twice the limit through),
Redis, Memcached and MongoDB storages, but none that lives on the local disk.
This is one: a small SQLite file in the data folder (``ratelimits.db``), one
row per counter, written in WAL mode without fsync (a counter lost in a power
cut only forgives a few attempts). Several machines share counters through
``DESK_RATELIMIT_STORAGE_URI=redis://…`` instead.

The keys name client addresses, so expired rows are deleted as new ones come
and ``secure_delete`` overwrites them on disk.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from limits.storage import Storage

SCHEME = "desk+sqlite"
FILE_NAME = "ratelimits.db"
BUSY_TIMEOUT_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (
    key TEXT PRIMARY KEY,
    hits INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS counter_expires_at ON counter (expires_at);
"""


def storage_uri(config: dict) -> str:
    """The configured storage, or this machine's file in the data folder."""
    configured = config.get("RATELIMIT_STORAGE_URI") or ""
    if configured:
        return configured
    return f"{SCHEME}:///{Path(config['DATA_DIR']).resolve() / FILE_NAME}"


class SQLiteFileStorage(Storage):
    """Fixed-window counters in one SQLite file (``desk+sqlite:///abs/path``)."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = (uri or "").partition(":///")[2]
        if not self.path:
            raise ValueError(f"{SCHEME} needs a file: {SCHEME}:///path/to/{FILE_NAME}")
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (a forked worker opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA secure_delete=ON")
            conn.executescript(SCHEMA)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count ``amount`` hits on ``key``; a new window lasts ``expiry`` seconds."""
        now = time.time()
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM counter WHERE expires_at <= ?", (now,))
            conn.execute("INSERT INTO counter (key, hits, expires_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET hits = hits + excluded.hits",
                         (key, amount, now + expiry))
            hits = conn.execute("SELECT hits FROM counter WHERE key = ?", (key,)).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return hits

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def _row(self, key: str) -> tuple[int, float] | None:
        return self._db().execute("SELECT hits, expires_at FROM counter WHERE key = ? AND expires_at > ?",
                                  (key, time.time())).fetchone()

    def check(self) -> bool:
        try:
            self._db().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        return self._db().execute("DELETE FROM counter").rowcount

    def clear(self, key: str) -> None:
        self._db().execute("DELETE FROM counter WHERE key = ?", (key,))
