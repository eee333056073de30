"""Email change requests (rectification of the unique identifier)."""
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

    class EmailChangeRequest(Model):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        new_email = CharField(max_length=254)
        status = CharField(max_length=20, default="pending", index=True)
        reason = TextField(default="")
        token_hash = CharField(max_length=64, null=True, unique=True)
        expires_at = DateTimeField(null=True)
        decided_by = IntegerField(null=True)
        decided_at = DateTimeField(null=True)
        confirmed_at = DateTimeField(null=True)
        created_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False

    for table in (User, EmailChangeRequest):
        table._meta.set_database(database)
    return EmailChangeRequest


def up(database):
    database.create_tables([_tables(database)])


def down(database):
    database.drop_tables([_tables(database)])
