"""One-time keys of sent new-ticket and reply forms, so a double submit makes
one ticket or one reply."""
from peewee import CharField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model

from desk.models.base import DateTimeField
from desk.models.base import utcnow


def _tables(database):
    class User(Model):
        class Meta:
            table_name = "user"

    class SubmittedForm(Model):
        user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        form_key = CharField(max_length=64)
        record_id = IntegerField(null=True)
        created_at = DateTimeField(default=utcnow, index=True)

        class Meta:
            legacy_table_names = False
            indexes = ((("user", "form_key"), True),)

    for table in (User, SubmittedForm):
        table._meta.set_database(database)
    return [SubmittedForm]


def up(database):
    database.create_tables(_tables(database))


def down(database):
    database.drop_tables(_tables(database))
