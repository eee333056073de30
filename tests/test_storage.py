"""How rows are stored and read: timestamps as ISO 8601 read with fromisoformat;
pooled connections taken at a request's first query; SQLite writers in turn."""
from __future__ import annotations

import datetime as dt
import os
import threading
import time

from desk import audit
from desk.db import WriteQueue
from desk.db import db
from desk.models import AuditEntry
from desk.models import Department
from desk.models.base import DateTimeField


def test_every_timestamp_uses_the_iso_field():
    from desk.models import ALL_MODELS
    stamps = [f for m in ALL_MODELS for f in m._meta.sorted_fields
              if f.field_type == "DATETIME"]
    assert stamps and all(isinstance(f, DateTimeField) for f in stamps)


def test_timestamps_round_trip_with_and_without_microseconds(ctx):
    for moment in (dt.datetime(2026, 3, 4, 5, 6, 7, 891011), dt.datetime(2026, 3, 4, 5, 6, 7)):
        dept = audit.create(audit.SYSTEM, Department, name=f"d{moment.microsecond}",
                            created_at=moment)
        assert Department.get_by_id(dept.id).created_at == moment
        raw = db.execute_sql("SELECT created_at FROM department WHERE id = %s" % dept.id).fetchone()[0]
        assert raw == moment or raw == str(moment)  # PostgreSQL hands a datetime, SQLite ISO text
    assert Department.select(Department.created_at).tuples()[0][0].year == 2026


def test_unreadable_text_is_returned_as_stored():
    field = AuditEntry.created_at
    assert field.python_value("not a date") == "not a date"
    assert field.python_value("2026-01-02 03:04:05.000006") == dt.datetime(2026, 1, 2, 3, 4, 5, 6)
    assert field.python_value(None) is None


def test_writers_queue_for_the_sqlite_write_lock_in_turn(tmp_path):
    """Two queues on one database file stand for two processes (each its own
    open file): the second writer waits until the first is done."""
    path = str(tmp_path / "desk.db")
    first, second = WriteQueue(path), WriteQueue(path)
    order = []

    def other():
        with second.turn():
            order.append("second")

    with first.turn():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # still waiting
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
    assert oct(os.stat(path + "-writers").st_mode & 0o777) == "0o600"


def test_a_writer_that_waited_too_long_goes_on_to_sqlite(tmp_path):
    path = str(tmp_path / "desk.db")
    holder, impatient = WriteQueue(path), WriteQueue(path, patience=0.1)
    with holder.turn():
        started = time.monotonic()
        with impatient.turn():
            waited = time.monotonic() - started
    assert waited >= 0.1


def test_a_page_without_queries_takes_no_connection(app, client):
    pool = db.obj
    before = len(pool._connections) + len(pool._in_use)
    assert client.get("/login").status_code == 200
    assert len(pool._connections) + len(pool._in_use) == before
    assert client.get("/healthz").status_code == 200
    assert not pool._in_use  # given back at the end of the request
