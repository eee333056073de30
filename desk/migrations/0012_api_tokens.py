"""Personal access tokens for the JSON API (hashes only) and their last use."""
from peewee import BooleanField
from peewee import CharField
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model

from desk.models.base import utcnow


def _tables(database):
    class User(Model):
        class Meta:
            table_name = "user"

    class ApiToken(Model):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        name = CharField(max_length=100)
        prefix = CharField(max_length=16, unique=True)
        token_hash = CharField(max_length=64, unique=True)
        key_id = CharField(max_length=64)
        read_only = BooleanField(default=False)
        created_at = DateTimeField(default=utcnow)
        expires_at = DateTimeField(index=True)
        revoked_at = DateTimeField(null=True)
        revoked_by = IntegerField(null=True)
        revoke_reason = CharField(max_length=40, default="")
        reminded_at = DateTimeField(null=True)

        class Meta:
            legacy_table_names = False

    class ApiTokenUse(Model):
        token = ForeignKeyField(ApiToken, primary_key=True, backref="+", on_delete="CASCADE")
        last_used_at = DateTimeField()
        last_used_ip = CharField(max_length=64, default="")

        class Meta:
            legacy_table_names = False

    for table in (User, ApiToken, ApiTokenUse):
        table._meta.set_database(database)
    return [ApiToken, ApiTokenUse]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(list(reversed(_tables(database))))
