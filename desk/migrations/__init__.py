"""Numbered schema migrations: plain Python modules ``NNNN_name.py`` with
``up(db)`` and ``down(db)``, applied in order and recorded in a history table.

Each migration describes the schema as it was at that step (frozen table
classes), never the current models, so later model changes cannot alter it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from peewee import CharField
from peewee import DateTimeField
from peewee import IntegerField
from peewee import Model
from peewee import PostgresqlDatabase

from desk.models.base import utcnow

_LOCK_ID = 74_657_331  # an arbitrary constant for pg_advisory_lock


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def discover() -> list[Migration]:
    """Every migration module of this package, in version order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        prefix, _, rest = info.name.partition("_")
        if prefix.isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(Migration(int(prefix), rest, module))
    return sorted(found, key=lambda m: m.version)


def _history(database):
    class SchemaMigration(Model):
        version = IntegerField(primary_key=True)
        name = CharField(max_length=200)
        applied_at = DateTimeField(default=utcnow)

        class Meta:
            table_name = "schema_migration"

    SchemaMigration._meta.set_database(database)
    return SchemaMigration


def _locked(database):
    """Serialize migrators across processes (several app servers starting at once)."""
    if isinstance(database, PostgresqlDatabase):
        class Lock:
            def __enter__(self):
                database.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))

            def __exit__(self, *exc):
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
        return Lock()
    return database.atomic("IMMEDIATE")


def applied(database) -> list[int]:
    history = _history(database)
    if not database.table_exists("schema_migration"):
        return []
    return [row.version for row in history.select().order_by(history.version)]


def migrate(database) -> list[Migration]:
    """Apply every pending migration; returns those applied."""
    history = _history(database)
    done = []
    with _locked(database):
        history.create_table(safe=True)
        have = set(applied(database))
        for migration in discover():
            if migration.version in have:
                continue
            with database.atomic():
                migration.module.up(database)
                history.create(version=migration.version, name=migration.name)
            done.append(migration)
    return done


def rollback(database, to_version: int) -> list[Migration]:
    """Undo applied migrations newer than ``to_version``, newest first."""
    history = _history(database)
    undone = []
    with _locked(database):
        have = set(applied(database))
        for migration in reversed(discover()):
            if migration.version in have and migration.version > to_version:
                with database.atomic():
                    migration.module.down(database)
                    history.delete().where(history.version == migration.version).execute()
                undone.append(migration)
    return undone
