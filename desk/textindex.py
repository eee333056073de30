"""Keeps the SQLite text index (desk/models/search.py) in step with the rows.

desk.audit calls ``removing`` before a write changes or deletes indexed text
and ``added`` after it, inside the write's transaction, so the index never
names text that is gone (erased or purged text leaves it at the same commit).
An external-content FTS5 table forgets a row only when told the exact text it
indexed, so the old text is read from the row itself, never from memory.
On PostgreSQL the trigram indexes live on the columns: nothing to do.
"""
from __future__ import annotations

from desk.db import db
from desk.db import is_sqlite
from desk.models.search import INDEXED
from desk.models.search import fts_table

CHUNK = 500  # ids per statement, under SQLite's variable limit

# Rows that go with a deleted row through ON DELETE CASCADE: (child table, its key to the parent)
CASCADES: dict[str, tuple[tuple[str, str], ...]] = {"ticket": (("comment", "ticket_id"),)}


def indexes(table: str) -> bool:
    return table in INDEXED and is_sqlite()


def indexed_columns(table: str) -> tuple[str, ...]:
    return INDEXED.get(table, ())


def _run(template: str, ids: list[int]) -> None:
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        db.execute_sql(template.format(marks=", ".join("?" * len(part))), part)


def _copy(table: str, key: str, ids: list[int], delete: bool) -> None:
    fts, columns = fts_table(table), ", ".join(INDEXED[table])
    command = f"\"{fts}\", " if delete else ""
    value = "'delete', " if delete else ""
    _run(f'INSERT INTO "{fts}"({command}rowid, {columns}) '  # nosec B608
         f'SELECT {value}id, {columns} FROM "{table}" WHERE "{key}" IN ({{marks}})', ids)


def removing(table: str, ids: list[int], deleting: bool = False) -> None:
    """Before rows of ``table`` change their text or (``deleting``) go, with the
    rows that go with them."""
    if not is_sqlite() or not ids:
        return
    if table in INDEXED:
        _copy(table, "id", ids, delete=True)
    if deleting:
        for child, key in CASCADES.get(table, ()):
            _copy(child, key, ids, delete=True)


def added(table: str, ids: list[int]) -> None:
    """After rows of ``table`` were inserted or their text changed."""
    if indexes(table) and ids:
        _copy(table, "id", ids, delete=False)


def rebuild() -> None:
    """Index every row again from scratch (after a bulk load that bypassed desk.audit)."""
    if is_sqlite():
        for table in INDEXED:
            db.execute_sql(f'INSERT INTO "{fts_table(table)}"("{fts_table(table)}") VALUES (\'rebuild\')')  # nosec B608


def check() -> None:
    """Raise if the index differs from the rows (FTS5's integrity-check against its content)."""
    if is_sqlite():
        for table in INDEXED:
            fts = fts_table(table)
            db.execute_sql(f'INSERT INTO "{fts}"("{fts}", rank) VALUES (\'integrity-check\', 1)')  # nosec B608
