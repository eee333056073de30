"""Record keys (shreddable audit text), pending file removals (crash-safe
purge), erasure requests (right to be forgotten) and the anonymized mark."""
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import PostgresqlDatabase
from peewee import TextField

from playhouse.migrate import PostgresqlMigrator
from playhouse.migrate import SqliteMigrator
from playhouse.migrate import migrate

from desk.models.base import utcnow


def _tables(database):
    class Base(Model):
        class Meta:
            legacy_table_names = False

    class User(Base):
        class Meta:
            table_name = "user"

    class RecordKey(Base):
        record_type = CharField(max_length=40)
        record_id = CharField(max_length=64)
        owner_subject_id = IntegerField(null=True, index=True)
        key_id = CharField(max_length=64, null=True)
        wrapped_key = TextField(null=True)
        created_at = DateTimeField(default=utcnow)
        destroyed_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("record_type", "record_id"), False),)

    class FileRemoval(Base):
        stored_name = CharField(max_length=64, unique=True)
        created_at = DateTimeField(default=utcnow)

    class ErasureRequest(Base):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        mode = CharField(max_length=30, default="anonymize")
        status = CharField(max_length=20, default="requested", index=True)
        step = IntegerField(default=0)
        requested_by = IntegerField(null=True)
        approved_by = IntegerField(null=True)
        preview = TextField(default="{}")
        reason = TextField(default="")
        created_at = DateTimeField(default=utcnow)
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)

    tables = [User, RecordKey, FileRemoval, ErasureRequest]
    for table in tables:
        table._meta.set_database(database)
    return tables[1:]


def _migrator(database):
    if isinstance(database, PostgresqlDatabase):
        return PostgresqlMigrator(database)
    return SqliteMigrator(database)


def up(database):
    database.create_tables(_tables(database))
    migrate(_migrator(database).add_column("user", "anonymized_at", DateTimeField(null=True)))


def down(database):
    migrate(_migrator(database).drop_column("user", "anonymized_at"))
    database.drop_tables(list(reversed(_tables(database))))
