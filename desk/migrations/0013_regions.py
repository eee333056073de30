"""Hosting regions: this store's region state, and the change journal a move
fills while it copies (written by triggers the move installs)."""
from peewee import CharField
from peewee import DateTimeField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class RegionState(Model):
        name = CharField(max_length=100, default="")
        status = CharField(max_length=20, default="active")
        peer_name = CharField(max_length=100, default="")
        peer_url = TextField(default="")
        peer_files = TextField(default="")
        phase = CharField(max_length=40, default="")
        progress = TextField(default="{}")
        wipe_after = DateTimeField(null=True)
        updated_at = DateTimeField(default=utcnow)

        class Meta:
            legacy_table_names = False

    class RegionJournal(Model):
        tbl = CharField(max_length=100)
        pk = TextField()

        class Meta:
            legacy_table_names = False

    for table in (RegionState, RegionJournal):
        table._meta.set_database(database)
    return RegionState, RegionJournal


def up(database):
    state, journal = _tables(database)
    database.create_tables([state, journal])
    state.insert(id=1).execute()


def down(database):
    database.drop_tables(list(_tables(database)))
