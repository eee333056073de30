"""Signed-in browsers: one row per browser session (only a keyed hash of its
secret), so signing out revokes the copied cookies of that browser."""
from peewee import BooleanField
from peewee import CharField
from peewee import ForeignKeyField
from peewee import Model

from desk.models.base import DateTimeField
from desk.models.base import utcnow


def _tables(database):
    class User(Model):
        class Meta:
            table_name = "user"

    class BrowserSession(Model):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        secret_hash = CharField(max_length=64, unique=True)
        remember = BooleanField(default=False)
        created_at = DateTimeField(default=utcnow)
        last_seen_at = DateTimeField(default=utcnow)
        ip = CharField(max_length=64, default="")
        user_agent = CharField(max_length=255, default="")

        class Meta:
            legacy_table_names = False

    for table in (User, BrowserSession):
        table._meta.set_database(database)
    return [BrowserSession]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(_tables(database))
