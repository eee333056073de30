"""The register of data subject requests (privacy center)."""
from peewee import BooleanField
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class User(Model):
        class Meta:
            table_name = "user"

    class DataSubjectRequest(Model):
        kind = CharField(max_length=20)
        user = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
        channel = CharField(max_length=20, default="my_info")
        received_at = DateTimeField(default=utcnow, index=True)
        identity_checked = BooleanField(default=False)
        identity_note = TextField(default="")
        extended_days = IntegerField(default=0)
        extension_reason = TextField(default="")
        status = CharField(max_length=20, default="open", index=True)
        handler_id = IntegerField(null=True)
        notes = TextField(default="")
        erasure_request_id = IntegerField(null=True, index=True)
        email_change_id = IntegerField(null=True, index=True)
        export_entry_id = IntegerField(null=True)
        closed_at = DateTimeField(null=True)
        created_by = IntegerField(null=True)
        created_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False

    for table in (User, DataSubjectRequest):
        table._meta.set_database(database)
    return [DataSubjectRequest]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(list(reversed(_tables(database))))
