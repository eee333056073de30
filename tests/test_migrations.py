"""Migrating from zero gives exactly the schema the models declare."""
from __future__ import annotations

import pytest
from peewee import PostgresqlDatabase

from desk import create_app
from desk import migrations
from desk.db import db
from desk.db import open_database
from desk.models import ALL_MODELS
from desk.models import AuditHead
from desk.models import Role
from desk.models import search
from tests.conftest import TEST_CONFIG


def _schema(database, schema_name=None) -> dict:
    """Tables with their columns, indexes and foreign keys, normalized."""
    kw = {"schema": schema_name} if schema_name else {}
    schema = {}
    for table in sorted(database.get_tables(**kw)):
        if table == "schema_migration":
            continue
        columns = sorted((c.name, c.data_type.lower(), c.null, c.primary_key)
                         for c in database.get_columns(table, **kw))
        indexes = sorted((tuple(i.columns), i.unique) for i in database.get_indexes(table, **kw))
        fks = sorted((f.column, f.dest_table, f.dest_column)
                     for f in database.get_foreign_keys(table, **kw))
        schema[table] = {"columns": columns, "indexes": indexes, "fks": fks}
    schema["(text index)"] = _text_index(database, schema_name)
    return schema


def _text_index(database, schema_name=None) -> list:
    """The text index objects as the database shows them: FTS5 tables with
    their options on SQLite; trigram indexes with their definitions and the
    pg_trgm extension on PostgreSQL."""
    if schema_name is None:
        return sorted(database.execute_sql(
            "SELECT name, sql FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'").fetchall())
    indexes = database.execute_sql(
        "SELECT indexname, replace(indexdef, %s, '') FROM pg_indexes "
        "WHERE schemaname = %s AND indexdef LIKE '%%gin_trgm_ops%%'",
        (f"{schema_name}.", schema_name)).fetchall()
    extension = database.execute_sql("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
    return sorted(indexes) + [row[0] for row in extension.fetchall()]


def _text_index_tables(backend) -> set[str]:
    """FTS5 tables and the shadow tables SQLite keeps for each."""
    if backend != "sqlite":
        return set()
    return {search.fts_table(t) + suffix for t in search.INDEXED
            for suffix in ("", "_data", "_idx", "_docsize", "_config")}


@pytest.fixture
def reference_db(ctx, backend, tmp_path):
    """An empty database (or schema) where the current models create their tables."""
    if backend == "sqlite":
        ref = open_database(f"sqlite:///{tmp_path / 'ref.db'}")
    else:
        db.execute_sql("CREATE SCHEMA IF NOT EXISTS ref")
        ref = PostgresqlDatabase(db.obj.database, options="-c search_path=ref,public",
                                 **db.obj.connect_params)
    with ref.bind_ctx(ALL_MODELS):
        ref.create_tables(ALL_MODELS, safe=False)
        search.create(ref)
    yield ref
    ref.close()


def test_migrating_from_zero_matches_the_models(ctx, reference_db, backend):
    assert migrations.applied(db.obj) == [m.version for m in migrations.discover()]
    migrated = _schema(db.obj, "public" if backend == "postgres" else None)
    declared = _schema(reference_db, "ref" if backend == "postgres" else None)
    assert set(migrated) - {"(text index)"} == (
        {m._meta.table_name for m in ALL_MODELS} | _text_index_tables(backend))
    assert len(migrated["(text index)"]) == (2 if backend == "sqlite" else 4)
    assert migrated == declared


def test_migrations_are_numbered_and_reversible(ctx):
    versions = [m.version for m in migrations.discover()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert migrations.migrate(db.obj) == []  # already applied: nothing to do
    undone = migrations.rollback(db.obj, 0)
    assert [m.version for m in undone] == versions[::-1]
    assert set(db.obj.get_tables()) <= {"schema_migration"}
    assert [m.version for m in migrations.migrate(db.obj)] == versions


def test_initial_data(ctx):
    assert {r.name for r in Role.select().where(Role.builtin == True)} == {  # noqa: E712
        "Administrator", "Agent", "Light Agent"}
    head = AuditHead.get_by_id(1)
    assert head.seq == 0 and head.hash == "0" * 64


def test_sqlite_pragmas(tmp_path):
    """WAL, foreign keys, a busy timeout, secure_delete so erased data is
    overwritten, and reads through a memory map of the file."""
    app = create_app(dict(TEST_CONFIG, DATA_DIR=str(tmp_path)))
    with app.app_context():
        pragma = lambda name: db.execute_sql(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("secure_delete") == 1
        assert pragma("busy_timeout") >= 5000
        assert pragma("mmap_size") == 1 << 30
        db.close()
    assert (tmp_path / "desk.db").exists()
