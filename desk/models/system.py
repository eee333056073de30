"""Operational tables: settings, data subject keys, scheduler leases, mail queue."""
from peewee import CharField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow


class Setting(BaseModel):
    """Admin-changeable settings and instance state, as key -> JSON value."""

    key = CharField(max_length=100, primary_key=True)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)


class SubjectKey(BaseModel):
    """A person's own data key, wrapped under the instance key. Destroying it
    (crypto-shredding) makes their sealed values unreadable. Written by
    desk.crypto as part of audited actions."""

    write_guard = False

    subject_id = IntegerField(unique=True)
    key_id = CharField(max_length=64, null=True)
    wrapped_key = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    destroyed_at = DateTimeField(null=True)


class Lease(BaseModel):
    """Who runs a singleton (the scheduler) and until when."""

    write_guard = False

    name = CharField(max_length=100, primary_key=True)
    holder = CharField(max_length=200)
    expires_at = DateTimeField()


class MailMessage(BaseModel):
    """Outgoing mail, queued in the same transaction as the action that sends it
    and delivered by a job with retries."""

    write_guard = False

    recipient = CharField(max_length=254)
    subject = CharField(max_length=255)
    body = TextField()
    subject_id = IntegerField(null=True, index=True)
    status = CharField(max_length=20, default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)


class RecordKey(BaseModel):
    """The key that seals one record's free text in audit (see desk.crypto).
    Destroyed when the record is scrubbed or its owner erased."""

    write_guard = False

    record_type = CharField(max_length=40)
    record_id = CharField(max_length=64)
    owner_subject_id = IntegerField(null=True, index=True)
    key_id = CharField(max_length=64, null=True)
    wrapped_key = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    destroyed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("record_type", "record_id"), False),)


class FileRemoval(BaseModel):
    """A stored file whose row is gone and which is to be removed from disk.
    Written in the same transaction that deletes the row, so a crash between
    the two leaves a note rather than an orphan."""

    write_guard = False

    stored_name = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)


class RegionState(BaseModel):
    """This data store's place among the hosting regions: one row (id 1).

    ``status`` is "active" (the live store), "incoming" (a move is copying
    into it), or "moved" (the help center now lives in the ``peer`` store; app
    processes that find this follow it, and database triggers refuse writes).
    On the live store after a move, ``peer`` names the previous store, kept for
    a rollback until ``wipe_after`` and then wiped. ``peer_url`` is sealed.
    Written only by desk.services.region_move (operational, like leases).
    """

    write_guard = False

    name = CharField(max_length=100, default="")
    status = CharField(max_length=20, default="active")
    peer_name = CharField(max_length=100, default="")
    peer_url = TextField(default="")
    peer_files = TextField(default="")
    phase = CharField(max_length=40, default="")
    progress = TextField(default="{}")
    wipe_after = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)


class RegionJournal(BaseModel):
    """Changes made while a move copies: (table, primary key as JSON), written
    by database triggers in the same transaction as each change."""

    write_guard = False

    tbl = CharField(max_length=100)
    pk = TextField()
