"""Bulk exports of everything: the job's row (progress, file, key, expiry)."""
from peewee import BigIntegerField
from peewee import CharField
from peewee import DateTimeField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class BulkExport(Model):
        requested_by = IntegerField(null=True)
        status = CharField(max_length=20, default="queued", index=True)
        rows_done = IntegerField(default=0)
        rows_total = IntegerField(default=0)
        files_done = IntegerField(default=0)
        files_total = IntegerField(default=0)
        file_name = CharField(max_length=100, default="")
        size = BigIntegerField(default=0)
        sha256 = CharField(max_length=64, default="")
        wrapped_key = TextField(null=True)
        error = TextField(default="")
        created_at = DateTimeField(default=utcnow)
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)

        class Meta:
            legacy_table_names = False

    BulkExport._meta.set_database(database)
    return [BulkExport]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(_tables(database))
