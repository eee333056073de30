"""Copying a help center from one data store to another and keeping the copy
in step: tables in primary-key batches from one snapshot, a change journal
filled by database triggers in the same transaction as every change, catch-up
rounds that re-apply the journalled rows, checksums to verify, and the files.

The engine works on raw rows (no model objects, no per-cell work beyond the
conversions two different engines need), so it copies tens of thousands of
rows a second. Region moves (desk.services.region_move) drive it.
"""
from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hashlib
import io
import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from peewee import BlobField
from peewee import BooleanField
from peewee import DateTimeField
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase

from desk.models import ALL_MODELS
from desk.models import RegionJournal
from desk.models import RegionState
from desk.models.search import INDEXED
from desk.models.search import fts_table
from desk.models.search import trigram_index
from desk.services import attachments
from desk.services import storage
from desk.textindex import CASCADES

BATCH = 5000
BULK_BATCH = 20000  # rows per COPY into an empty PostgreSQL table
CHUNK = 2000  # rows per checksum chunk
FILE_THREADS = 8  # files copied at once
FILE_AREAS = ("attachments", "outbox", "exports")
NOT_COPIED = {RegionState, RegionJournal}
MOVED_MESSAGE = "desk: this data store has moved to another region; writes go to the new store"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Table:
    """What the engine needs to know of one table."""

    name: str
    columns: tuple[str, ...]
    pk: tuple[str, ...]
    fields: tuple  # the model's fields, in column order

    @property
    def int_pk(self) -> bool:
        return self.pk == ("id",)

    def quoted(self, names: Iterable[str]) -> str:
        return ", ".join(f'"{n}"' for n in names)


def tables() -> list[Table]:
    """Every table of the help center, parents before children."""
    found = []
    for model in ALL_MODELS:
        if model in NOT_COPIED:
            continue
        meta = model._meta
        fields = tuple(meta.sorted_fields)
        pk = tuple(f.column_name for f in meta.get_primary_keys())
        found.append(Table(meta.table_name, tuple(f.column_name for f in fields), pk, fields))
    return found


def is_postgres(database) -> bool:
    return isinstance(database, PostgresqlDatabase)


def _param(database) -> str:
    return "%s" if is_postgres(database) else "?"


# -- triggers ------------------------------------------------------------------

_PG_FUNCTION_TEXT = """
CREATE OR REPLACE FUNCTION desk_region_journal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  k text;
  newkey jsonb := '[]'::jsonb;
  oldkey jsonb := '[]'::jsonb;
BEGIN
  IF (SELECT status FROM region_state WHERE id = 1) = 'moved' THEN
    RAISE EXCEPTION '<moved>';
  END IF;
  FOREACH k IN ARRAY TG_ARGV LOOP
    IF TG_OP <> 'DELETE' THEN newkey := newkey || jsonb_build_array(to_jsonb(NEW) -> k); END IF;
    IF TG_OP <> 'INSERT' THEN oldkey := oldkey || jsonb_build_array(to_jsonb(OLD) -> k); END IF;
  END LOOP;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO region_journal (tbl, pk) VALUES (TG_TABLE_NAME, newkey::text);
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND oldkey IS DISTINCT FROM newkey) THEN
    INSERT INTO region_journal (tbl, pk) VALUES (TG_TABLE_NAME, oldkey::text);
  END IF;
  RETURN NULL;
END $$"""
_PG_FUNCTION = _PG_FUNCTION_TEXT.replace("<moved>", MOVED_MESSAGE)


def _sqlite_triggers(t: Table) -> Iterator[str]:
    guard = (f"SELECT RAISE(ABORT, '{MOVED_MESSAGE}') "  # nosec B608
             "WHERE (SELECT status FROM region_state WHERE id = 1) = 'moved';")

    def key(row: str) -> str:
        return "json_array(" + ", ".join(f'{row}."{c}"' for c in t.pk) + ")"

    def journal(row: str) -> str:
        return f"INSERT INTO region_journal (tbl, pk) VALUES ('{t.name}', {key(row)});"  # nosec B608

    yield (f'CREATE TRIGGER IF NOT EXISTS "desk_rj_{t.name}_i" AFTER INSERT ON "{t.name}" '
           f"BEGIN {guard} {journal('NEW')} END")
    yield (f'CREATE TRIGGER IF NOT EXISTS "desk_rj_{t.name}_u" AFTER UPDATE ON "{t.name}" '
           f"BEGIN {guard} {journal('NEW')} "
           f"INSERT INTO region_journal (tbl, pk) SELECT '{t.name}', {key('OLD')} "
           f"WHERE {key('OLD')} IS NOT {key('NEW')}; END")
    yield (f'CREATE TRIGGER IF NOT EXISTS "desk_rj_{t.name}_d" AFTER DELETE ON "{t.name}" '
           f"BEGIN {guard} {journal('OLD')} END")


def install_triggers(database) -> None:
    """Journal every change of every table from now on (idempotent).

    On PostgreSQL each table gets its trigger in a transaction of its own: a
    trigger takes a lock on its table until the transaction ends, and holding
    the locks of every table at once while live requests take them in their
    own order deadlocks (a customer's new ticket failed so). The copy's
    snapshot is taken after the last trigger is in place, so no change falls
    between the two."""
    if isinstance(database, PostgresqlDatabase):
        with database.atomic():
            database.execute_sql(_PG_FUNCTION)
        for t in tables():
            args = ", ".join(f"'{c}'" for c in t.pk)
            with database.atomic():
                database.execute_sql(f'DROP TRIGGER IF EXISTS desk_region_journal ON "{t.name}"')
                database.execute_sql(
                    f'CREATE TRIGGER desk_region_journal AFTER INSERT OR UPDATE OR DELETE ON "{t.name}" '
                    f"FOR EACH ROW EXECUTE FUNCTION desk_region_journal({args})")
        return
    with database.atomic():
        for t in tables():
            for statement in _sqlite_triggers(t):
                database.execute_sql(statement)


def drop_triggers(database) -> None:
    with database.atomic():
        for t in tables():
            if isinstance(database, PostgresqlDatabase):
                database.execute_sql(f'DROP TRIGGER IF EXISTS desk_region_journal ON "{t.name}"')
            else:
                for suffix in "iud":
                    database.execute_sql(f'DROP TRIGGER IF EXISTS "desk_rj_{t.name}_{suffix}"')
        if isinstance(database, PostgresqlDatabase):
            database.execute_sql("DROP FUNCTION IF EXISTS desk_region_journal()")


# -- values between engines ---------------------------------------------------

def _converter(src, dst) -> Callable[[Table], Callable[[tuple], tuple]]:
    """Per table, a function making a source row right for the target engine
    (only booleans, times and bytes differ between SQLite and PostgreSQL)."""
    same = type(src) is type(dst) or (
        isinstance(src, PostgresqlDatabase) and isinstance(dst, PostgresqlDatabase))
    to_pg = isinstance(dst, PostgresqlDatabase)

    def for_table(t: Table) -> Callable[[tuple], tuple]:
        if same:
            return tuple
        fixes = {}
        for i, f in enumerate(t.fields):
            if isinstance(f, BooleanField) and to_pg:
                fixes[i] = lambda v: None if v is None else bool(v)
            elif isinstance(f, DateTimeField) and not to_pg:
                fixes[i] = lambda v, f=f: v if v is None or isinstance(v, str) else f.db_value(v)
            elif isinstance(f, BlobField) and not to_pg:
                fixes[i] = lambda v: None if v is None else bytes(v)
        if not fixes:
            return tuple
        return lambda row: tuple(fixes[i](v) if i in fixes else v for i, v in enumerate(row))
    return for_table


def _upsert_sql(t: Table, param: str) -> str:
    cols = t.quoted(t.columns)
    others = [c for c in t.columns if c not in t.pk]
    action = ("DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in others)  # nosec B608
              if others else "DO NOTHING")
    values = "%s" if param == "%s" else "(" + ", ".join("?" for _ in t.columns) + ")"
    return f'INSERT INTO "{t.name}" ({cols}) VALUES {values} ON CONFLICT ({t.quoted(t.pk)}) {action}'  # nosec B608


# -- rows as SQL builds them ---------------------------------------------------
# The bulk copy and the checksums have each database turn a row into text
# itself, so that Python never touches a value: no per-cell conversion.

_INT_TYPES = {"INT", "INTEGER", "BIGINT", "SMALLINT", "AUTO", "BIGAUTO"}
_TEXT_TYPES = {"VARCHAR", "TEXT", "CHAR"}


def _kind(field) -> str:
    """int, text, bool, time, blob, float or other (a column type the SQL
    forms below do not know)."""
    ftype = str(field.field_type).upper()
    if ftype in _INT_TYPES:
        return "int"
    if ftype in _TEXT_TYPES:
        return "text"
    return {"BOOL": "bool", "DATETIME": "time", "BLOB": "blob",
            "FLOAT": "float", "DOUBLE": "float", "REAL": "float"}.get(ftype, "other")


def _quoted_text(column: str) -> str:
    return f"""'"' || replace({column}, '"', '""') || '"'"""


def _csv_line(database, t: Table) -> str | None:
    """An SQL expression (for ``database``, the source) giving each row of
    ``t`` as one line of PostgreSQL's COPY CSV format: NULL is an empty field,
    text is always quoted (so an empty text is ""), booleans t/f, times as
    text, blobs as \\x hex, floats with every digit. None when a column has a
    type this does not know."""
    pg = is_postgres(database)
    parts = []
    for f in t.fields:
        c, kind = f'"{f.column_name}"', _kind(f)
        if kind == "int":
            value = f"CAST({c} AS TEXT)"
        elif kind == "text" or (kind == "time" and not pg):
            value = _quoted_text(c)
        elif kind == "time":
            value = f"CAST({c} AS TEXT)"
        elif kind == "bool":
            value = f"CASE WHEN {c} THEN 't' WHEN NOT {c} THEN 'f' END"
        elif kind == "blob":
            value = f"'\\x' || encode({c}, 'hex')" if pg else f"'\\x' || lower(hex({c}))"
        elif kind == "float":
            value = f"CAST({c} AS TEXT)" if pg else f"printf('%!.17g', {c})"
        else:
            return None
        parts.append(f"COALESCE({value}, '')")
    return " || ',' || ".join(parts)


def _canonical(database, t: Table) -> str | None:
    """An SQL expression giving each row of ``t`` as text that is the same on
    SQLite and PostgreSQL for the same values: columns joined by commas, NULL
    as ~, integers in decimal, text as its length, a colon and itself,
    booleans 1/0, times as YYYY-MM-DD HH:MM:SS.ffffff (SQLite keeps them as
    ISO text, with or without the microseconds), blobs in lower-case hex.
    None when a column has a type this does not know (floats print
    differently in the two engines): such a table is checked in Python."""
    pg = is_postgres(database)
    parts = []
    for f in t.fields:
        c, kind = f'"{f.column_name}"', _kind(f)
        if kind == "int":
            part = f"COALESCE(CAST({c} AS TEXT), '~')" if pg else f"COALESCE({c}, '~')"
        elif kind == "text":
            part = f"COALESCE(length({c}) || ':' || {c}, '~')"
        elif kind == "bool":
            part = f"CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' ELSE '~' END"
        elif kind == "time" and pg:
            part = f"COALESCE(to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US'), '~')"
        elif kind == "time":
            part = (f"COALESCE(CASE WHEN length({c}) = 26 AND substr({c}, 11, 1) = ' ' THEN {c} "
                    f"ELSE substr({c}, 1, 10) || ' ' || substr({c}, 12) || substr('.000000', length({c}) - 18) "
                    "END, '~')")
        elif kind == "blob":
            part = f"COALESCE(encode({c}, 'hex'), '~')" if pg else f"COALESCE(lower(hex({c})), '~')"
        else:
            return None
        parts.append(part)
    return " || ',' || ".join(parts)


def _batches(src, t: Table, select: str, batch: int) -> Iterator[list[tuple]]:
    """The rows of ``select`` (the key columns first, then anything) over
    ``t`` in primary-key order, ``batch`` at a time."""
    param = _param(src)
    order = t.quoted(t.pk)
    width = len(t.pk)
    last = None
    while True:
        if last is None:
            where, params = "", []
        elif width == 1:
            where, params = f'WHERE "{t.pk[0]}" > {param}', list(last)
        else:
            where, params = f"WHERE ({order}) > ({', '.join(param for _ in t.pk)})", list(last)
        rows = src.execute_sql(f'SELECT {order}, {select} FROM "{t.name}" {where} '  # nosec B608
                               f"ORDER BY {order} LIMIT {int(batch)}", params).fetchall()
        if not rows:
            return
        last = rows[-1][:width]
        yield rows


# -- writing -------------------------------------------------------------------

def write_rows(dst, t: Table, rows: list[tuple]) -> None:
    """Insert or overwrite ``rows`` (already converted) in ``dst``'s table."""
    if not rows:
        return
    cursor = dst.cursor()
    if isinstance(dst, PostgresqlDatabase):
        from psycopg2.extras import execute_values
        execute_values(cursor, _upsert_sql(t, "%s"), rows, page_size=1000)
    else:
        cursor.executemany(_upsert_sql(t, "?"), rows)


def _where_keys(t: Table, keys: list[tuple], param: str) -> tuple[str, list]:
    if len(t.pk) == 1:
        return f'"{t.pk[0]}" IN ({", ".join(param for _ in keys)})', [k[0] for k in keys]
    clause = " AND ".join(f'"{c}" = {param}' for c in t.pk)
    return " OR ".join(f"({clause})" for _ in keys), [v for k in keys for v in k]


def fetch_keys(database, t: Table, keys: list[tuple]) -> list[tuple]:
    """The current rows of ``t`` with these primary keys (absent ones are missing)."""
    found = []
    for i in range(0, len(keys), 500):
        where, params = _where_keys(t, keys[i:i + 500], _param(database))
        found += database.execute_sql(
            f'SELECT {t.quoted(t.columns)} FROM "{t.name}" WHERE {where}', params).fetchall()  # nosec B608
    return found


def delete_keys(database, t: Table, keys: list[tuple]) -> None:
    for i in range(0, len(keys), 500):
        where, params = _where_keys(t, keys[i:i + 500], _param(database))
        database.execute_sql(f'DELETE FROM "{t.name}" WHERE {where}', params)  # nosec B608


@contextlib.contextmanager
def snapshot(database) -> Iterator[None]:
    """One consistent view of ``database`` for every read inside."""
    if isinstance(database, PostgresqlDatabase):
        with database.atomic(isolation_level="REPEATABLE READ"):
            yield
    else:
        with database.atomic():
            yield


def _pk_of(t: Table, row: tuple) -> tuple:
    return tuple(row[t.columns.index(c)] for c in t.pk)


# -- the text index of a SQLite target -----------------------------------------
# An FTS5 table with external content forgets a row only when told the exact
# text it indexed, so rows are forgotten before they change and indexed after.

def _indexed(dst) -> dict[str, tuple[str, ...]]:
    return INDEXED if isinstance(dst, SqliteDatabase) else {}


def _ids_where(dst, table: str, column: str, values: list) -> list:
    found = []
    for i in range(0, len(values), 500):
        part = values[i:i + 500]
        found += [r[0] for r in dst.execute_sql(
            f'SELECT "id" FROM "{table}" WHERE "{column}" IN ({", ".join("?" for _ in part)})', part)]  # nosec B608
    return found


def _index_rows(dst, table: str, ids: list, forget: bool) -> None:
    fts, columns = fts_table(table), ", ".join(f'"{c}"' for c in INDEXED[table])
    command, value = (f'"{fts}", ', "'delete', ") if forget else ("", "")
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        dst.execute_sql(f'INSERT INTO "{fts}"({command}rowid, {columns}) SELECT {value}"id", {columns} '  # nosec B608
                        f'FROM "{table}" WHERE "id" IN ({", ".join("?" for _ in part)})', part)


def rebuild_text_index(dst) -> None:
    """Index every copied row (after the bulk copy)."""
    for table in _indexed(dst):
        dst.execute_sql(f'INSERT INTO "{fts_table(table)}"("{fts_table(table)}") VALUES (\'rebuild\')')  # nosec B608


def _touched_index_rows(dst, changed: dict[str, set]) -> dict[str, set]:
    """The indexed rows of the target that a catch-up changes or deletes
    (with those that go with a deleted parent)."""
    touched: dict[str, set] = {}
    for table in _indexed(dst):
        keys = [k[0] for k in changed.get(table, ())]
        touched.setdefault(table, set()).update(_ids_where(dst, table, "id", keys))
    for parent, children in CASCADES.items():
        keys = [k[0] for k in changed.get(parent, ())]
        for child, column in children if _indexed(dst) else ():
            touched.setdefault(child, set()).update(_ids_where(dst, child, column, keys))
    return touched


# -- the copy ------------------------------------------------------------------

def count_rows(database) -> dict[str, int]:
    """The row count of every table (in one query)."""
    sql = " UNION ALL ".join(f"SELECT '{t.name}', COUNT(*) FROM \"{t.name}\"" for t in tables())  # nosec B608
    return {name: n for name, n in database.execute_sql(sql).fetchall()}


def _is_empty(database, t: Table) -> bool:
    return database.execute_sql(f'SELECT 1 FROM "{t.name}" LIMIT 1').fetchone() is None  # nosec B608


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _CopyWriter:
    """COPY of one batch after another into the target by a thread of its
    own, while the caller reads the next batch from the source (each side
    mostly waits for its database). ``close`` waits for the last batch and
    raises what went wrong."""

    def __init__(self, cursor, command: str):
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(cursor, command), daemon=True)
        self.thread.start()

    def _run(self, cursor, command: str) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    cursor.copy_expert(command, io.StringIO(data))
                except BaseException as exc:  # noqa: BLE001 - raised by put/close
                    self.error = exc

    def put(self, data: str) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _bulk_copy(src, dst, t: Table, line: str, batch: int) -> int:
    """Copy every row of ``t`` into the empty PostgreSQL table in one
    transaction of ``dst``, by COPY, with the table's foreign keys and
    secondary indexes set aside meanwhile and put back after (each checked
    and built once, instead of once per row). The trigram text indexes are
    left to build_text_index, after the switch. A kill rolls it all back:
    the table is empty again, its keys and indexes in place."""
    fks = dst.execute_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", (_quote_name(t.name),)).fetchall()
    indexes = dst.execute_sql(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
        "ORDER BY i.relname", (_quote_name(t.name),)).fetchall()
    later = {trigram_index(t.name, c) for c in INDEXED.get(t.name, ())}
    table = _quote_name(t.name)
    copied = 0
    with dst.atomic():
        for name, _definition in fks:
            dst.execute_sql(f"ALTER TABLE {table} DROP CONSTRAINT {_quote_name(name)}")
        for name, _definition in indexes:
            dst.execute_sql(f"DROP INDEX {_quote_name(name)}")
        width = len(t.pk)
        writer = _CopyWriter(dst.cursor(), f"COPY {table} ({t.quoted(t.columns)}) FROM STDIN WITH (FORMAT csv)")
        try:
            for rows in _batches(src, t, line, batch):
                writer.put("\n".join([r[width] for r in rows]) + "\n")
                copied += len(rows)
        finally:
            writer.close()
        for name, definition in fks:
            dst.execute_sql(f"ALTER TABLE {table} ADD CONSTRAINT {_quote_name(name)} {definition}")
        for name, definition in indexes:
            if name not in later:
                dst.execute_sql(definition)
    return copied


def copy_tables(src, dst, progress: Progress, batch: int = BATCH) -> int:
    """Copy every table from one snapshot of ``src``, in primary-key batches.

    An empty table of a PostgreSQL target is filled by COPY in one
    transaction (_bulk_copy); anything else (a SQLite target, a table a killed
    copy had filled) is upserted batch by batch, so a killed copy simply runs
    again."""
    convert = _converter(src, dst)
    total = 0
    with snapshot(src):
        for t in tables():
            line = _csv_line(src, t) if is_postgres(dst) else None
            if line is not None and _is_empty(dst, t):
                n = _bulk_copy(src, dst, t, line, max(batch, BULK_BATCH))
                total += n
                if n:
                    progress(n)
                continue
            fix = convert(t)
            width = len(t.pk)
            for rows in _batches(src, t, t.quoted(t.columns), batch):
                with dst.atomic():
                    write_rows(dst, t, [fix(r[width:]) for r in rows])
                total += len(rows)
                progress(len(rows))
    return total


class AfterCopy:
    """What a target needs after the bulk copy, before the pause. SQLite: the
    FTS5 tables rebuilt, at once (an index that missed the copied rows would
    give wrong search results). PostgreSQL: every table vacuumed and analysed
    by a thread on a connection of its own, while the move goes on with the
    files and the first verification: statistics for the planner of the new
    store, and a visibility map (counting rows in the pause then reads the
    indexes only). The trigram indexes the bulk copy left out are built after
    the switch (build_text_index), while the new store takes writes."""

    def __init__(self, dst):
        self.dst = dst
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        if not is_postgres(dst):
            rebuild_text_index(dst)
            return
        thread = threading.Thread(target=self._vacuum, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _vacuum(self) -> None:
        try:
            with self.dst.connection_context():
                self.dst.execute_sql("VACUUM ANALYZE")
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self.errors.append(exc)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.threads = []

    def wait(self) -> None:
        self.join()
        if self.errors:
            error, self.errors = self.errors[0], []
            raise error


# -- the text index of a PostgreSQL target, after the switch -------------------

def missing_text_indexes(database) -> list[tuple[str, str, str]]:
    """The trigram indexes (name, table, column) a PostgreSQL store lacks or
    holds only as INVALID (what a killed CREATE INDEX CONCURRENTLY leaves);
    none on SQLite."""
    if not is_postgres(database):
        return []
    missing = []
    for table, columns in INDEXED.items():
        for column in columns:
            name = trigram_index(table, column)
            valid = database.execute_sql("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                         (_quote_name(name),)).fetchone()
            if not (valid and valid[0]):
                missing.append((name, table, column))
    return missing


def build_text_index(database, name: str, table: str, column: str) -> None:
    """Build one trigram index of a PostgreSQL store while its table takes
    writes (CREATE INDEX CONCURRENTLY, outside any transaction), after
    dropping the INVALID leftover of a killed build, if any (the caller knows
    from missing_text_indexes that a valid one is not there)."""
    database.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    index = _quote_name(name)
    database.execute_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
    database.execute_sql(f"CREATE INDEX CONCURRENTLY {index} ON {_quote_name(table)} "
                         f"USING gin ({_quote_name(column)} gin_trgm_ops)")


def reset_sequences(dst) -> None:
    """After explicit ids were copied into PostgreSQL, new rows continue after them."""
    if not isinstance(dst, PostgresqlDatabase):
        return
    # One statement (one round trip inside the pause), a setval per table.
    dst.execute_sql("SELECT " + ", ".join(
        f"(SELECT setval(pg_get_serial_sequence('\"{t.name}\"', 'id'), "  # nosec B608
        f'COALESCE(MAX("id"), 1), MAX("id") IS NOT NULL) FROM "{t.name}")'
        for t in tables() if t.int_pk))


def pending_changes(src) -> int:
    return src.execute_sql("SELECT COUNT(*) FROM region_journal").fetchone()[0]


def catch_up(src, dst) -> dict[str, set]:
    """Re-apply every journalled change: read the journal and the rows it names
    from one snapshot of ``src``, upsert present rows (parents first) and delete
    absent ones (children first) in ``dst``, then forget those journal entries.

    Returns the changed keys per table. Inside the cut-over pause the
    snapshot and the journal clean-up nest as savepoints of the pause."""
    by_name = {t.name: t for t in tables()}
    convert = _converter(src, dst)
    with snapshot(src):
        entries = src.execute_sql("SELECT id, tbl, pk FROM region_journal ORDER BY id").fetchall()
        changed: dict[str, set] = {}
        for _id, tbl, pk in entries:
            if tbl in by_name:
                changed.setdefault(tbl, set()).add(tuple(json.loads(pk)))
        present = {name: fetch_keys(src, by_name[name], sorted(keys, key=repr))
                   for name, keys in changed.items()}
    with dst.atomic():
        touched = _touched_index_rows(dst, changed)
        for table, ids in touched.items():
            _index_rows(dst, table, sorted(ids), forget=True)
        for t in tables():
            if t.name in present:
                write_rows(dst, t, [convert(t)(r) for r in present[t.name]])
        for t in reversed(tables()):
            if t.name in changed:
                kept = {_pk_of(t, r) for r in present[t.name]}
                delete_keys(dst, t, [k for k in changed[t.name] if k not in kept])
        for table, ids in touched.items():
            ids = ids | {k[0] for k in changed.get(table, ())}
            _index_rows(dst, table, sorted(_ids_where(dst, table, "id", sorted(ids))), forget=False)
    ids = [e[0] for e in entries]
    with src.atomic():
        p = _param(src)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            src.execute_sql(f"DELETE FROM region_journal WHERE id IN ({', '.join(p for _ in part)})",  # nosec B608
                            part)
    return changed


# -- verification --------------------------------------------------------------

def _normalizer(t: Table) -> Callable[[tuple], str]:
    """A row as canonical JSON, made in Python (tables _canonical cannot do)."""
    kinds = []
    for f in t.fields:
        if isinstance(f, BooleanField):
            kinds.append(lambda v: None if v is None else int(bool(v)))
        elif isinstance(f, DateTimeField):
            kinds.append(lambda v: None if v is None else (
                dt.datetime.fromisoformat(v) if isinstance(v, str) else v).isoformat(" "))
        elif isinstance(f, BlobField):
            kinds.append(lambda v: None if v is None else bytes(v).hex())
        else:
            kinds.append(lambda v: v)
    return lambda row: json.dumps([k(v) for k, v in zip(kinds, row)], default=str,
                                  ensure_ascii=False)


def _row_hash(text: str) -> int:
    """The first 60 bits of the MD5 of a row's canonical text (a checksum)."""
    return int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:15], 16)


def _digest(database, t: Table, where: str = "", params: Iterable = ()) -> tuple[int, int]:
    """The row count and a checksum of every column of the rows of ``t``
    (``where`` selects some): the sum of each row's _row_hash of its
    _canonical text, which does not depend on the order rows come in.
    PostgreSQL computes it by itself; SQLite makes the text and Python hashes
    it (SQLite has no MD5)."""
    canonical = _canonical(database, t)
    if canonical is None:
        norm = _normalizer(t)
        rows = database.execute_sql(f'SELECT {t.quoted(t.columns)} FROM "{t.name}" {where}',  # nosec B608
                                    list(params))
        n = total = 0
        for row in rows:
            total += _row_hash(norm(row))
            n += 1
        return n, total
    if is_postgres(database):
        n, total = database.execute_sql(_pg_digest_sql(t, canonical, where), list(params)).fetchone()
        return n, int(total)
    n = total = 0
    for (text,) in database.execute_sql(f'SELECT {canonical} FROM "{t.name}" {where}', list(params)):  # nosec B608
        total += _row_hash(text)
        n += 1
    return n, total


def chunks(database, t: Table, size: int = CHUNK) -> list[tuple[int, int]]:
    """Primary-key ranges of about ``size`` rows (integer keys only)."""
    ids = [r[0] for r in database.execute_sql(f'SELECT "id" FROM "{t.name}" ORDER BY "id"')]  # nosec B608
    return [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]


def _pg_digest_sql(t: Table, canonical: str, where: str, label: str = "") -> str:
    return (f"SELECT {label}COUNT(*), "  # nosec B608
            f"COALESCE(SUM(('x' || substr(md5({canonical}), 1, 15))::bit(60)::bigint), 0) "
            f'FROM "{t.name}" {where}')


def _range_where(database, lo: int | None, hi: int | None) -> tuple[str, list]:
    p = _param(database)
    if lo is None:
        return "", []
    if hi is None:
        return f'WHERE "id" >= {p}', [lo]
    return f'WHERE "id" BETWEEN {p} AND {p}', [lo, hi]


def range_digest(database, t: Table, lo: int | None, hi: int | None) -> tuple[int, int]:
    """_digest of the rows with ids from ``lo`` to ``hi`` (None: no bound; no
    ``lo``: the whole table)."""
    return _digest(database, t, *_range_where(database, lo, hi))


def range_digests(database, items: list[tuple[Table, int | None, int | None]]) -> list[tuple[int, int]]:
    """range_digest of each (table, lo, hi); PostgreSQL answers up to 50 of
    them in one query (one round trip instead of 50)."""
    if not is_postgres(database):
        return [range_digest(database, t, lo, hi) for t, lo, hi in items]
    found: dict[int, tuple[int, int]] = {}
    parts: list[tuple[str, list]] = []
    for i, (t, lo, hi) in enumerate(items):
        canonical = _canonical(database, t)
        if canonical is None:
            found[i] = range_digest(database, t, lo, hi)
            continue
        where, params = _range_where(database, lo, hi)
        parts.append((_pg_digest_sql(t, canonical, where, f"{i}, "), params))
    for start in range(0, len(parts), 50):
        group = parts[start:start + 50]
        sql = " UNION ALL ".join(f"({part})" for part, _params in group)
        for i, n, total in database.execute_sql(sql, [v for _part, params in group for v in params]):
            found[i] = (n, int(total))
    return [found[i] for i in range(len(items))]


@dataclass
class Verification:
    """What a full comparison found: chunks that differed (to check again)."""

    ranges: dict[str, list[tuple[int, int]]]
    differing: dict[str, set[tuple[int, int]]]


def verify_all(src, dst) -> Verification:
    """Compare every table chunk by chunk (while writes may still go on:
    differing chunks are rechecked during the pause)."""
    ranges, differing = {}, {}
    # One side after the other: this runs beside the target's vacuum (and a
    # SQLite target's text index), and the help center keeps serving (the
    # pause reads both at once).
    for t in tables():
        if not t.int_pk:
            continue
        ranges[t.name] = chunks(src, t)
        items = [(t, lo, hi) for lo, hi in ranges[t.name]]
        pairs = zip(ranges[t.name], range_digests(src, items), range_digests(dst, items))
        differing[t.name] = {r for r, ours, theirs in pairs if ours != theirs}
    return Verification(ranges, differing)


def verify_final(src, dst, checked: Verification, changed_since: dict[str, set]) -> list[str]:
    """During the pause: row counts of every table, then every chunk that
    differed or changed since ``checked``, the rows after the last chunk, and
    every small table in full. Returns what still differs (empty: identical).
    The source is read by the calling thread (inside the pause), the target
    by another thread meanwhile."""
    plan: list[tuple[Table, str, int | None, int | None]] = []  # what to compare, lo, hi
    for t in tables():
        if not t.int_pk or t.name not in checked.ranges or not checked.ranges[t.name]:
            plan.append((t, "contents differ", None, None))
            continue
        ranges = checked.ranges[t.name]
        keys = sorted(k[0] for k in changed_since.get(t.name, ()))
        again = set(checked.differing[t.name])
        again |= {r for r in ranges if _any_between(keys, *r)}
        plan += [(t, f"rows {lo}-{hi} differ", lo, hi) for lo, hi in sorted(again)]
        tail = ranges[-1][1] + 1
        plan.append((t, f"rows from {tail} differ", tail, None))

    def side(database) -> tuple[dict[str, int], list[tuple[int, int]]]:
        return count_rows(database), range_digests(database, [(t, lo, hi) for t, _what, lo, hi in plan])

    def their_side() -> tuple[dict[str, int], list[tuple[int, int]]]:
        with dst.connection_context():
            return side(dst)

    with ThreadPoolExecutor(1) as other:
        theirs = other.submit(their_side)
        src_counts, ours = side(src)
        dst_counts, their_digests = theirs.result()
    problems = [f"{t.name}: {src_counts[t.name]} rows here, {dst_counts[t.name]} there"
                for t in tables() if src_counts[t.name] != dst_counts[t.name]]
    counted_apart = {t.name for t in tables() if src_counts[t.name] != dst_counts[t.name]}
    problems += [f"{t.name}: {what}" for (t, what, _lo, _hi), a, b in zip(plan, ours, their_digests)
                 if a != b and t.name not in counted_apart]
    return problems


def _any_between(keys: list, lo: int, hi: int) -> bool:
    """Whether the sorted ``keys`` hold one from ``lo`` to ``hi``."""
    i = bisect.bisect_left(keys, lo)
    return i < len(keys) and keys[i] <= hi


# -- files ---------------------------------------------------------------------

def _objects(store) -> dict[str, int]:
    """Every object of the areas a store holds for the help center: key -> size."""
    return {info.key: info.size for area in FILE_AREAS for info in store.list(f"{area}/")}


def _sha256(store, key: str) -> str:
    h = hashlib.sha256()
    with store.open(key) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Hashing:
    """A readable stream that hashes what is read through it."""

    def __init__(self, raw, h):
        self.raw, self.h = raw, h

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.h.update(data)
        return data


class FileSync:
    """Copies the objects of a store's areas (desk.services.storage) to
    another store, each copy checked by SHA-256, and remembers what it copied
    so that later rounds copy only new or changed objects."""

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.seen: dict[str, int] = {}
        self.listed: tuple[dict[str, int], dict[str, int]] | None = None

    def _copy(self, key: str) -> bool:
        """Copy one object unless the target holds the same bytes: the source
        is read once (hashed as it is copied), the copy read back once.
        False when the object left the source after it was listed (the app
        removes files while the move runs: a sealed attachment's clear file,
        a purged one); the next round's listing no longer has it."""
        try:
            if (self.target.exists(key) and self.target.size(key) == self.source.size(key)
                    and _sha256(self.target, key) == _sha256(self.source, key)):
                return True
            h = hashlib.sha256()
            with self.source.open(key) as fh:
                self.target.put(key, _Hashing(fh, h))
        except storage.ObjectMissing:
            if self.source.exists(key):
                raise
            return False
        if _sha256(self.target, key) != h.hexdigest():
            self.target.delete(key)
            raise storage.StorageError(f"the copy of {key} does not match its SHA-256")
        return True

    def sync(self, progress: Progress = lambda n: None, delete: bool = False) -> int:
        """Copy what is new or changed since the last round; with ``delete``
        also remove target objects that are gone from the source."""
        objects = _objects(self.source)
        todo = [key for key, size in objects.items() if self.seen.get(key) != size]
        done = 0
        if todo:
            # Several at once: a copy mostly waits for the disk (each write is synced).
            with ThreadPoolExecutor(FILE_THREADS) as pool:
                for key, copied in zip(todo, pool.map(self._copy, todo)):
                    if not copied:
                        del objects[key]  # gone from the source meanwhile
                        continue
                    self.seen[key] = objects[key]
                    done += 1
                    progress(1)
        if delete:
            there = _objects(self.target)
            for key in set(there) - set(objects):
                self.target.delete(key)
                self.seen.pop(key, None)
                del there[key]
            self.listed = (objects, there)
        return done

    def differences(self) -> list[str]:
        """Objects whose presence or size differs between the stores (as the
        last ``sync(delete=True)`` listed them after its work, else listed now)."""
        src, dst = self.listed or (_objects(self.source), _objects(self.target))
        self.listed = None
        problems = [f"file {key} missing there" for key in sorted(set(src) - set(dst))]
        problems += [f"file {key} should not be there" for key in sorted(set(dst) - set(src))]
        problems += [f"file {key} differs" for key in sorted(set(src) & set(dst)) if src[key] != dst[key]]
        return problems


def copy_named_attachments(database, source, target) -> int:
    """Copy from ``source`` the attachment files that rows of ``database``
    (the new store) name and ``target`` lacks, each checked by SHA-256. An
    upload stores its file before its row waits at the move's gate, so a file
    can land in the old store around the switch; the move copies such files
    once more after it, and when it was killed before that, its rerun does it
    here. Only files the new store's rows name: one deleted there since (a
    purge, an erasure) must not come back from the old store."""
    there = {info.key for info in target.list(attachments.PREFIX)}
    wanted = [key for key in (attachments.key_of(name) for (name,) in
                              database.execute_sql("SELECT stored_name FROM attachment"))
              if key not in there]
    sync = FileSync(source, target)
    return sum(1 for key in wanted if source.exists(key) and sync._copy(key))


def count_files(store) -> int:
    return len(_objects(store))


def remove_files(store) -> int:
    """Delete every object of the help center's areas (wiping an old store)."""
    keys = list(_objects(store))
    for key in keys:
        store.delete(key)
    return len(keys)
