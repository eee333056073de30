"""The database: an unbound proxy, bound from the URL in the factory.

SQLite runs in WAL mode with foreign keys, a busy timeout and secure_delete,
so deleted personal data is overwritten rather than left in free pages.
Connections come from a pool on both databases (opening a SQLite connection
and setting its pragmas cost more than a simple page), and a request connects
only when it runs its first query.

SQLite allows one writer at a time, and a writer that finds the lock taken
sleeps and retries with growing pauses (its busy handler), so under load some
writes wait many times longer than others. Writers of this app therefore queue
for the lock before they ask SQLite for it (``WriteQueue``): threads on a lock
of their process, processes on an ``flock`` of a file beside the database,
both of which wake the next writer as soon as the last one commits. The busy
timeout remains for writers outside the queue (the sqlite3 tool, another app).
"""
from __future__ import annotations

import contextlib
import fcntl
import inspect
import itertools
import logging
import os
import queue
import threading
import time
from typing import Callable
from typing import Iterable
from typing import Iterator

from flask import Flask
from flask import request
from peewee import SQL
from peewee import DatabaseProxy
from peewee import NodeList
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from peewee import Value
from playhouse.db_url import connect
from playhouse.db_url import parse
from playhouse.pool import PooledSqliteDatabase

db = DatabaseProxy()

BUSY_TIMEOUT_S = 10

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": BUSY_TIMEOUT_S * 1000,
    "secure_delete": 1,
    "synchronous": "normal",
    # Reads map the file instead of copying each page from the OS with read():
    # a list page looks rows up by id by the thousand (a search's matches).
    "mmap_size": 1 << 30,
}


class SqlitePool(PooledSqliteDatabase):
    """Pooled SQLite connections, each with the pragmas set once when opened,
    and a queue for writers (see the module doc)."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.write_queue = WriteQueue(database)

    def _can_reuse(self, conn) -> bool:
        if conn.in_transaction:  # never hand on a connection in the middle of a transaction
            conn.rollback()
        return True


class WriteQueue:
    """Writers wait here, in turn, for SQLite's single write lock: threads of
    one process on a lock (woken as soon as it is free), processes on an flock
    polled every millisecond or two (SQLite's own retries sleep up to 100 ms).
    After ``patience`` seconds a writer stops waiting and lets SQLite's busy
    timeout decide, as it would without the queue."""

    def __init__(self, path: str, patience: float = BUSY_TIMEOUT_S):
        self.threads = threading.Lock()
        self.path = None if path == ":memory:" or path.startswith("file:") else f"{path}-writers"
        self.patience = patience
        self.fd: int | None = None
        self.pid = os.getpid()

    def _file(self) -> int:
        if self.fd is None or self.pid != os.getpid():  # a forked worker opens its own
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self.pid = os.getpid()
        return self.fd

    def _flock(self, fd: int, deadline: float) -> bool:
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        deadline = time.monotonic() + self.patience
        if not self.threads.acquire(timeout=self.patience):
            yield
            return
        try:
            fd = self._file() if self.path else None
            locked = fd is not None and self._flock(fd, deadline)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()


def open_database(url: str):
    """Return a peewee database for ``url`` (sqlite:/// or postgresql://)."""
    if url.startswith("sqlite"):
        return SqlitePool(parse(url)["database"], pragmas=SQLITE_PRAGMAS,
                          check_same_thread=False, max_connections=32, stale_timeout=None)
    if url.startswith(("postgres://", "postgresql://")):
        # A pool: connections are reused across requests instead of opened each time.
        pooled = "postgresql+pool://" + url.split("://", 1)[1]
        return connect(pooled, max_connections=32, stale_timeout=300)
    raise ValueError(f"unsupported database URL: {url.split(':', 1)[0]}")


def bind(url: str) -> None:
    """Point the proxy at the database behind ``url``."""
    current = db.obj
    if current is not None:
        if not current.is_closed():
            current.close()
        current.close_all()
    db.initialize(open_database(url))


def switch(url: str) -> None:
    """Point the proxy at another store while other threads may still be using
    the current one: their connections stay open until they give them back
    (only the idle ones are closed now), so no request fails mid-way."""
    current = db.obj
    db.initialize(open_database(url))
    if current is not None and hasattr(current, "close_idle"):
        current.close_idle()


def is_sqlite() -> bool:
    return isinstance(db.obj, SqliteDatabase)


def is_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


# The write gate of a region move (desk.services.region_move): every write
# transaction first takes this lock shared (PostgreSQL) or the write lock
# (SQLite), so the move's short cut-over pause makes writes wait, not fail.
GATE_LOCK_ID = 74_657_332
# Called when this store says the help center moved; it rebinds ``db``.
_on_moved: Callable[[], None] | None = None


def on_store_moved(callback: Callable[[], None] | None) -> None:
    """Register what to do when the bound store has moved to another region."""
    global _on_moved
    _on_moved = callback


def _has_region_state(database) -> bool:
    known = getattr(database, "_desk_region_state", None)
    if known is None:
        known = database.table_exists("region_state")
        if known:  # before migrations the answer may still change
            database._desk_region_state = True
    return known


def _moved(database) -> bool:
    if not _has_region_state(database):
        return False
    row = database.execute_sql("SELECT status FROM region_state WHERE id = 1").fetchone()
    return bool(row and row[0] == "moved")


def store_moved() -> bool:
    """True when the bound store has handed the help center to another region."""
    return _moved(db.obj)


def follow_if_moved() -> bool:
    """Reconnect to the new store if this one moved (one primary-key read of
    a one-row table, at the start of every request). True if it moved."""
    if _on_moved is None or not store_moved():
        return False
    _on_moved()
    return True


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that will write: on SQLite it takes the write lock first
    (BEGIN IMMEDIATE) so two writers never deadlock on a lock upgrade. It also
    passes the region move's gate: during a cut-over it waits, and if the store
    moved meanwhile it runs on the new store instead."""
    if db.in_transaction():
        with db.atomic():
            yield
        return
    for _attempt in range(3):
        # The transaction belongs to this store object, not to the proxy: if
        # another thread follows a move while this one waits at the gate, the
        # proxy changes, and this transaction must still end where it began.
        database = db.obj
        if isinstance(database, SqliteDatabase):
            turn, begin = database.write_queue.turn(), database.atomic("IMMEDIATE")
        else:
            turn, begin = contextlib.nullcontext(), database.atomic()
        with turn, begin:
            if isinstance(database, PostgresqlDatabase) and _has_region_state(database):
                database.execute_sql("SELECT pg_advisory_xact_lock_shared(%s)", (GATE_LOCK_ID,))
            if _on_moved is None or not _moved(database):
                yield
                return
        if db.obj is database:
            _on_moved()
    raise RuntimeError("the data store moved more than once during one write")


def store_size(tables: Iterable[str] = ()) -> int:
    """Bytes the store takes: the SQLite file with its write-ahead log, or on
    PostgreSQL the named tables with their indexes and TOAST."""
    database = db.obj
    if isinstance(database, SqliteDatabase):
        path = database.database
        return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    total = 0
    for table in tables:
        row = database.execute_sql("SELECT pg_total_relation_size(to_regclass(%s))", (table,)).fetchone()
        total += row[0] or 0
    return total


def compact(tables: Iterable[str]) -> None:
    """Rewrite the store so that deleted and overwritten values leave nothing
    behind in the files. secure_delete zeroes deleted cells and free pages, but
    not the unallocated gap inside live pages that SQLite rebuilds while
    balancing, nor the write-ahead log: VACUUM rebuilds the whole file and the
    checkpoints fold the log in and truncate it. On PostgreSQL a deleted or
    updated row stays in its page as a dead tuple until VACUUM FULL rewrites
    the table. Writers wait meanwhile (SQLite: the write queue)."""
    database = db.obj
    if isinstance(database, SqliteDatabase):
        with database.write_queue.turn():
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            database.execute_sql("VACUUM")
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    _wait_for_older_transactions(database)
    for table in tables:
        database.execute_sql(f'VACUUM FULL "{table}"')  # names from the models, never input


def _wait_for_older_transactions(database, patience: float = 30.0) -> None:
    """VACUUM FULL keeps a deleted row that a transaction begun before the
    deletion might still see, and PostgreSQL counts transactions of every
    database of the server there (an autovacuum worker's ANALYZE, a report, an
    application next door): wait, up to ``patience`` seconds, until every
    transaction that holds an id or a snapshot began after now, so the rewrite
    drops every deleted row."""
    since = database.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        older = database.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) AND xact_start < %s",
            (since,)).fetchone()[0]
        if not older:
            return
        time.sleep(0.2)
    logging.getLogger(__name__).warning(
        "VACUUM FULL went ahead while a transaction older than %.0f s was still open: rows "
        "deleted meanwhile stay in the table files until the next VACUUM FULL", patience)


@contextlib.contextmanager
def roomy_cache(megabytes: int) -> Iterator[None]:
    """A larger page cache for this connection while a batch job runs (SQLite):
    its transactions touch pages all over the file, and with the default 2 MB
    each batch reads pages again and spills them to the log before it commits."""
    if not is_sqlite():
        yield
        return
    before = db.execute_sql("PRAGMA cache_size").fetchone()[0]
    db.execute_sql(f"PRAGMA cache_size = {-int(megabytes) * 1024}")
    try:
        yield
    finally:
        db.execute_sql(f"PRAGMA cache_size = {int(before)}")


def is_in(column, values: list):
    """``column IN (values)`` for a long list, built as one piece: peewee's own
    ``in_`` makes and compiles a node per value, which cost more than running
    the statement in the purge's batches. ``values`` must not be empty."""
    marks = ", ".join([db.param] * len(values))
    return NodeList((column, SQL(f"IN ({marks})", list(values))))


_cursor_names = itertools.count(1)


def stream_rows(query, batch: int = 2000) -> Iterator[tuple]:
    """The rows of ``query`` as plain tuples straight from the driver (no model
    objects, no conversions), fetched ``batch`` at a time so memory stays flat
    at any size: a server-side cursor on PostgreSQL, SQLite's own stepping."""
    sql, params = query.sql()
    if is_postgres():
        name = f"desk_rows_{next(_cursor_names)}"
        with db.atomic():
            db.execute_sql(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", params)
            while rows := db.execute_sql(f"FETCH FORWARD {int(batch)} FROM {name}").fetchall():
                yield from rows
            db.execute_sql(f"CLOSE {name}")
        return
    cursor = db.execute_sql(sql, params)
    try:
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


class Slot:
    """A value of a prepared query (``prepared``), given when it runs."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class Prepared:
    """A query of the hot path written once as SQL, not again on every request.

    peewee writes a query's SQL anew each time it runs, which for a select of
    a few joined models costs more than SQLite takes to answer it (0.3-1 ms a
    query, most of a simple page's own time). ``build`` makes the query with a
    placeholder for each of its parameters (``Value(Slot(name))``, never
    converted); its SQL is written once per database class and per ``shape``
    (arguments that change the query's form rather than its values) and then
    run with the values of each call, rows read by the query's own model
    cursor (joins become attributes as usual). Values are given as the driver
    takes them (ids, text), not model instances."""

    def __init__(self, build: Callable, shape: Iterable[str] = ()):
        self.build = build
        self.shape = tuple(shape)
        self.names = [n for n in inspect.signature(build).parameters if n not in self.shape]
        self._cache: dict = {}

    def _compiled(self, shape: tuple):
        key = (db.obj.__class__, shape)
        entry = self._cache.get(key)
        if entry is None:
            slots = {n: Value(Slot(n), converter=False) for n in self.names}
            query = self.build(**slots, **dict(zip(self.shape, shape)))
            sql, params = query.sql()
            entry = self._cache[key] = (query, sql, tuple(params))
        return entry

    def rows(self, **values):
        """The query's rows (model instances, or what the query returns)."""
        query, sql, params = self._compiled(tuple(values.pop(n) for n in self.shape))
        args = [values[p.name] if p.__class__ is Slot else p for p in params]
        return query._get_cursor_wrapper(db.execute_sql(sql, args))

    def first(self, **values):
        for row in self.rows(**values):
            return row
        return None


def prepared(shape: Iterable[str] = ()) -> Callable[[Callable], Prepared]:
    """Decorator form of ``Prepared``: ``@prepared()`` or ``@prepared(shape=("public",))``."""
    return lambda build: Prepared(build, shape)


_COPY_DONE = object()


def copy_csv(query, chunk: int = 1 << 16) -> Iterator[bytes]:
    """PostgreSQL only: the rows of ``query`` as CSV written by the server
    itself (``COPY (query) TO STDOUT WITH (FORMAT csv)``), in chunks of about
    ``chunk`` bytes, in constant memory: the export's fast path when every
    cell is already text the CSV may hold as it is.

    psycopg2 copies into a file object and returns only when the copy ends, so
    a thread runs the copy into a small bounded queue this generator empties.
    Closing the generator early (the client went away) cancels the statement
    on the server and waits for the thread, so the connection is free again
    when this returns."""
    sql, params = query.sql()
    conn = db.connection()
    with conn.cursor() as cursor:
        statement = cursor.mogrify(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params)
    chunks: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    class Sink:
        def __init__(self):
            self.buffer = bytearray()

        def write(self, data: bytes) -> int:
            if stop.is_set():
                return len(data)
            self.buffer += data
            if len(self.buffer) >= chunk:
                self.put(bytes(self.buffer))
                self.buffer.clear()
            return len(data)

        def put(self, item) -> None:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def copy() -> None:
        sink = Sink()
        try:
            with conn.cursor() as cursor:
                cursor.copy_expert(statement, sink)
            if sink.buffer:
                sink.put(bytes(sink.buffer))
            sink.put(_COPY_DONE)
        except Exception as err:  # handed to the reader, which raises it
            sink.put(err)

    worker = threading.Thread(target=copy, name="desk-copy-csv", daemon=True)
    worker.start()
    try:
        while (item := chunks.get()) is not _COPY_DONE:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        if worker.is_alive():
            stop.set()
            conn.cancel()
        worker.join()


class HideQueryParameters(logging.Filter):
    """peewee logs every query with its parameters at DEBUG; parameters hold
    personal data, so logs keep only the statement."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            sql, params = record.msg
            record.msg = (sql, ["?"] * len(params or ()))
        return True


def init_logging() -> None:
    logger = logging.getLogger("peewee")
    if not any(isinstance(f, HideQueryParameters) for f in logger.filters):
        logger.addFilter(HideQueryParameters())


def init_app(app: Flask) -> None:
    """Bind the database; a request takes a pooled connection at its first
    query and gives it back at the end."""
    init_logging()
    bind(app.config["DATABASE_URL"])

    @app.before_request
    def _follow_a_move() -> None:
        # One primary-key read per request (not for static files or the
        # liveness probe): no page reads a store that has moved away.
        if request.endpoint not in ("static", "health.healthz"):
            follow_if_moved()

    @app.teardown_appcontext
    def _close(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()
