"""Custom fields and their values (clear or sealed), stored secrets, and the
state of key rotations."""
from peewee import BooleanField
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class Base(Model):
        class Meta:
            legacy_table_names = False

    class User(Base):
        class Meta:
            table_name = "user"

    class Ticket(Base):
        class Meta:
            table_name = "ticket"

    class CustomField(Base):
        module = CharField(max_length=20)
        key = CharField(max_length=40)
        label = CharField(max_length=200)
        label_zh = CharField(max_length=200, default="")
        type = CharField(max_length=20)
        required = BooleanField(default=False)
        public = BooleanField(default=False)
        position = IntegerField(default=0)
        choices = TextField(default="[]")
        encrypted = BooleanField(default=False)
        encrypting = BooleanField(default=False)
        created_at = DateTimeField(default=utcnow)
        updated_at = DateTimeField(default=utcnow)
        deleted_at = DateTimeField(null=True)
        deleted_by = IntegerField(null=True)

        class Meta:
            indexes = ((("module", "key"), True),)

    class TicketFieldValue(Base):
        field = ForeignKeyField(CustomField, on_delete="CASCADE")
        value = TextField(default="")
        sealed = TextField(null=True)
        key_id = CharField(max_length=64, null=True, index=True)
        updated_at = DateTimeField(default=utcnow)
        ticket = ForeignKeyField(Ticket, backref="+", on_delete="CASCADE")

        class Meta:
            indexes = ((("ticket", "field"), True),)

    class ContactFieldValue(Base):
        field = ForeignKeyField(CustomField, on_delete="CASCADE")
        value = TextField(default="")
        sealed = TextField(null=True)
        key_id = CharField(max_length=64, null=True, index=True)
        updated_at = DateTimeField(default=utcnow)
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")

        class Meta:
            indexes = ((("user", "field"), True),)

    class StoredSecret(Base):
        name = CharField(max_length=100, primary_key=True)
        sealed = TextField()
        key_id = CharField(max_length=64, index=True)
        updated_at = DateTimeField(default=utcnow)

    class KeyRotation(Base):
        to_key = CharField(max_length=64)
        from_keys = TextField(default="[]")
        status = CharField(max_length=20, default="running")
        done = IntegerField(default=0)
        started_at = DateTimeField(default=utcnow)
        finished_at = DateTimeField(null=True)

    tables = [User, Ticket, CustomField, TicketFieldValue, ContactFieldValue, StoredSecret,
              KeyRotation]
    for table in tables:
        table._meta.set_database(database)
    return tables[2:]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(list(reversed(_tables(database))))
