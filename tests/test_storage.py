"""How rows are stored and read: timestamps as ISO 8601 read with fromisoformat."""
from __future__ import annotations

import datetime as dt

from desk import audit
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
