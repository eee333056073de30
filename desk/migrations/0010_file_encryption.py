"""Attachment bytes encrypted per person: each attachment row keeps its data key,
wrapped under the uploader's subject key (NULL: stored clear, from before; the
encrypt-files job seals those)."""
from peewee import PostgresqlDatabase
from peewee import TextField

from playhouse.migrate import PostgresqlMigrator
from playhouse.migrate import SqliteMigrator
from playhouse.migrate import migrate


def _migrator(database):
    if isinstance(database, PostgresqlDatabase):
        return PostgresqlMigrator(database)
    return SqliteMigrator(database)


def up(database):
    migrate(_migrator(database).add_column("attachment", "data_key", TextField(null=True)))


def down(database):
    migrate(_migrator(database).drop_column("attachment", "data_key"))
