"""Admin-defined custom fields for tickets and contacts, and their values.

A value of an encrypted field is kept only as ``sealed`` (AES-256-GCM through
desk.crypto, bound to its table, record, field key and key id, tagged with the
key id in ``key_id``); ``value`` then stays empty.
"""
from peewee import BooleanField
from peewee import CharField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import User
from desk.models.tickets import Ticket

TYPES = ("text", "long_text", "number", "date", "choice", "checkbox", "email", "phone", "card")
FIELD_MODULES = ("tickets", "contacts")


class CustomField(BaseModel):
    """One field definition. ``key`` is stable (forms post ``cf_<key>``);
    labels may change freely. ``encrypting`` is set while existing clear values
    wait for the background job that seals them."""

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

    @property
    def name(self) -> str:
        """The field's name in forms and in field-level permissions."""
        return f"cf_{self.key}"


class _FieldValue(BaseModel):
    secret_fields = ("sealed",)

    field = ForeignKeyField(CustomField, on_delete="CASCADE")
    value = TextField(default="")
    sealed = TextField(null=True)
    key_id = CharField(max_length=64, null=True, index=True)
    updated_at = DateTimeField(default=utcnow)


class TicketFieldValue(_FieldValue):
    """A custom field's value on a ticket; its text is sealed in audit under
    the ticket's own record key (like the subject)."""

    text_fields = ("value",)

    ticket = ForeignKeyField(Ticket, backref="custom_values", on_delete="CASCADE")

    class Meta:
        indexes = ((("ticket", "field"), True),)

    def audit_subject_id(self) -> int | None:
        return Ticket.select(Ticket.requester).where(Ticket.id == self.ticket_id).scalar()


class ContactFieldValue(_FieldValue):
    """A custom field's value on a contact: personal data of that person."""

    personal_fields = ("value",)

    user = ForeignKeyField(User, backref="custom_values", on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "field"), True),)

    def audit_subject_id(self) -> int | None:
        return self.user_id


class StoredSecret(BaseModel):
    """A secret desk keeps (the SMTP password set on the settings page, later
    third-party credentials), sealed by desk.crypto; audit records only that it
    changed."""

    secret_fields = ("sealed",)

    name = CharField(max_length=100, primary_key=True)
    sealed = TextField()
    key_id = CharField(max_length=64, index=True)
    updated_at = DateTimeField(default=utcnow)


class KeyRotation(BaseModel):
    """A run of ``keys-rotate``: from which key ids to which, and how far.
    Operational state (its start and end are audited events)."""

    write_guard = False

    to_key = CharField(max_length=64)
    from_keys = TextField(default="[]")
    status = CharField(max_length=20, default="running")
    done = IntegerField(default=0)
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)
