"""Tickets, their comments and attachments.

Their free text is sealed in audit under a key of each record's own, owned by
the person it mostly concerns (requester, author, uploader).
"""
from peewee import BigIntegerField
from peewee import BooleanField
from peewee import CharField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import Department
from desk.models.people import User

STATUSES = ("open", "on_hold", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


class Ticket(BaseModel):
    text_fields = ("subject", "description")

    subject = CharField(max_length=255)
    description = TextField(default="")
    status = CharField(max_length=20, default="open")
    priority = CharField(max_length=20, default="normal")
    department = ForeignKeyField(Department, null=True, backref="tickets", on_delete="SET NULL")
    requester = ForeignKeyField(User, backref="requested_tickets", on_delete="RESTRICT")
    assignee = ForeignKeyField(User, null=True, backref="assigned_tickets", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)
    deleted_by = IntegerField(null=True)

    class Meta:
        indexes = (
            (("requester", "deleted_at", "updated_at"), False),
            (("assignee", "status", "updated_at"), False),
            (("department", "status", "updated_at"), False),
            (("status", "updated_at"), False),
            (("requester", "deleted_at", "status"), False),
            # The agents' queue (open, live, mine or unassigned in my departments):
            # counted from this index alone, without reading the rows.
            (("status", "deleted_at", "updated_at", "assignee", "department"), False),
        )

    def audit_subject_id(self) -> int | None:
        return self.requester_id


def _recycled_index(model) -> None:
    """A partial index of the rows in the recycle bin by deletion time (the
    purge reads it; migration 0023)."""
    model.add_index(model.index(model.deleted_at, model.id, name=f"{model._meta.table_name}_recycled",
                                where=model.deleted_at.is_null(False)))


_recycled_index(Ticket)


class Comment(BaseModel):
    text_fields = ("body",)

    ticket = ForeignKeyField(Ticket, backref="comments", on_delete="CASCADE")
    author = ForeignKeyField(User, backref="comments", on_delete="RESTRICT")
    body = TextField()
    is_public = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)
    deleted_by = IntegerField(null=True)

    class Meta:
        indexes = ((("ticket", "created_at"), False),)

    def audit_subject_id(self) -> int | None:
        return self.author_id


_recycled_index(Comment)


class Attachment(BaseModel):
    """An object in the file store; the row keeps its metadata. ``data_key`` is
    the key its bytes are sealed under, wrapped by the uploader's subject key
    (None: stored clear, from before encryption; a job seals those)."""

    text_fields = ("filename",)
    secret_fields = ("data_key",)

    ticket = ForeignKeyField(Ticket, backref="attachments", on_delete="CASCADE")
    comment = ForeignKeyField(Comment, null=True, backref="attachments", on_delete="CASCADE")
    uploader = ForeignKeyField(User, backref="attachments", on_delete="RESTRICT")
    filename = CharField(max_length=255)
    stored_name = CharField(max_length=64, unique=True)
    content_type = CharField(max_length=100, default="application/octet-stream")
    size = BigIntegerField(default=0)
    sha256 = CharField(max_length=64)  # of the clear bytes
    data_key = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)
    deleted_by = IntegerField(null=True)

    def audit_subject_id(self) -> int | None:
        return self.uploader_id


# Partial indexes for the purge's look-up of recycled records: only deleted rows
# are in them, so the planner never prefers them for live-record pages.
for _model in (Ticket, Comment):
    _model.add_index(_model.index(_model.deleted_at, name=f"{_model._meta.table_name}_deleted_at")
                     .where(_model.deleted_at.is_null(False)))


class SubmittedForm(BaseModel):
    """A new-ticket or reply form that was sent, named by the one-time key the
    form carried, with the record it made: a second send of the same form (a
    double click, a reload) finds that record instead of making another.
    Operational: the ticket or reply itself is audited. Kept a day."""

    write_guard = False

    user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
    form_key = CharField(max_length=64)
    record_id = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("user", "form_key"), True),)
