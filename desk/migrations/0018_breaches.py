"""The breach register (privacy center)."""
from peewee import DateTimeField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class Breach(Model):
        discovered_at = DateTimeField(index=True)
        description = TextField()
        categories = TextField(default="")
        people_affected = IntegerField(null=True)
        records_affected = IntegerField(null=True)
        consequences = TextField(default="")
        measures = TextField(default="")
        authority_notified_at = DateTimeField(null=True)
        people_notified_at = DateTimeField(null=True)
        reminded_48_at = DateTimeField(null=True)
        reminded_72_at = DateTimeField(null=True)
        created_by = IntegerField(null=True)
        created_at = DateTimeField(default=utcnow)
        updated_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False

    Breach._meta.set_database(database)
    return [Breach]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(_tables(database))
