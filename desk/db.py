"""The database: an unbound proxy, bound from the URL in the factory.

SQLite runs in WAL mode with foreign keys, a busy timeout and secure_delete,
so deleted personal data is overwritten rather than left in free pages.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Iterator

from flask import Flask
from peewee import DatabaseProxy
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from playhouse.db_url import connect

db = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "secure_delete": 1,
    "synchronous": "normal",
}


def open_database(url: str):
    """Return a peewee database for ``url`` (sqlite:/// or postgresql://)."""
    if url.startswith("sqlite"):
        return connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    if url.startswith(("postgres://", "postgresql://")):
        # A pool: connections are reused across requests instead of opened each time.
        pooled = "postgresql+pool://" + url.split("://", 1)[1]
        return connect(pooled, max_connections=32, stale_timeout=300)
    raise ValueError(f"unsupported database URL: {url.split(':', 1)[0]}")


def bind(url: str) -> None:
    """Point the proxy at the database behind ``url``."""
    current = db.obj
    if current is not None and not current.is_closed():
        current.close()
    db.initialize(open_database(url))


def is_sqlite() -> bool:
    return isinstance(db.obj, SqliteDatabase)


def is_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that will write: on SQLite it takes the write lock first
    (BEGIN IMMEDIATE) so two writers never deadlock on a lock upgrade."""
    if is_sqlite() and not db.in_transaction():
        with db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield


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
    """Bind the database and open/close a connection around each request."""
    init_logging()
    bind(app.config["DATABASE_URL"])

    @app.before_request
    def _connect() -> None:
        db.connect(reuse_if_open=True)

    @app.teardown_appcontext
    def _close(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()
