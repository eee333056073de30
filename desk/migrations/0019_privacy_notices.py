"""Privacy notice versions and who accepted or acknowledged which."""
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

    class PrivacyNotice(Model):
        version = IntegerField(unique=True)
        text = TextField()
        created_by = IntegerField(null=True)
        created_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False

    class NoticeConsent(Model):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        version = IntegerField()
        kind = CharField(max_length=20)
        accepted_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False
            indexes = ((("user", "version"), False),)

    for table in (User, PrivacyNotice, NoticeConsent):
        table._meta.set_database(database)
    return [PrivacyNotice, NoticeConsent]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(list(reversed(_tables(database))))
