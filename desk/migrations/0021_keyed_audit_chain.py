"""The keyed audit chain: each entry names the key its HMAC was made with
(existing entries keep "", their plain SHA-256), and the chain head records
from which entry on the chain is keyed (the cut-over: the next entry)."""
from peewee import BigIntegerField
from peewee import CharField
from peewee import PostgresqlDatabase

from playhouse.migrate import PostgresqlMigrator
from playhouse.migrate import SqliteMigrator
from playhouse.migrate import migrate


def _migrator(database):
    if isinstance(database, PostgresqlDatabase):
        return PostgresqlMigrator(database)
    return SqliteMigrator(database)


def up(database):
    migrator = _migrator(database)
    migrate(migrator.add_column("audit_entry", "key_id", CharField(max_length=64, default="")),
            migrator.add_column("audit_head", "keyed_from", BigIntegerField(default=1)))
    database.execute_sql("UPDATE audit_head SET keyed_from = seq + 1")


def down(database):
    migrator = _migrator(database)
    migrate(migrator.drop_column("audit_entry", "key_id"),
            migrator.drop_column("audit_head", "keyed_from"))
