"""The privacy center's registers: data subject requests and breaches."""
from peewee import BooleanField
from peewee import CharField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import User

REQUEST_KINDS = ("access", "rectification", "erasure", "portability", "restriction", "objection")
REQUEST_CHANNELS = ("my_info", "email", "phone", "letter", "in_person", "other")
OPEN = "open"
DONE = "done"
REFUSED = "refused"
REQUEST_STATUSES = (OPEN, DONE, REFUSED)


class DataSubjectRequest(BaseModel):
    """One request a person made about their own data (GDPR Art. 15-21), from
    their own buttons (``channel`` "my_info") or logged by an administrator.

    Due 30 days after ``received_at``, plus ``extended_days`` (once, at most 60,
    with a reason: Art. 12(3)). Linked to the action that fulfils it (an
    erasure request, an email change request, or the audit entry of a data
    export); a linked action that completes closes the request.
    """

    personal_fields = ("identity_note", "notes", "extension_reason")

    kind = CharField(max_length=20)
    user = ForeignKeyField(User, null=True, backref="subject_requests", on_delete="SET NULL")
    channel = CharField(max_length=20, default="my_info")
    received_at = DateTimeField(default=utcnow, index=True)
    identity_checked = BooleanField(default=False)
    identity_note = TextField(default="")
    extended_days = IntegerField(default=0)
    extension_reason = TextField(default="")
    status = CharField(max_length=20, default=OPEN, index=True)
    handler_id = IntegerField(null=True)
    notes = TextField(default="")
    erasure_request_id = IntegerField(null=True, index=True)
    email_change_id = IntegerField(null=True, index=True)
    export_entry_id = IntegerField(null=True)
    closed_at = DateTimeField(null=True)
    created_by = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    def audit_subject_id(self) -> int | None:
        return self.user_id


class Breach(BaseModel):
    """A personal data breach (GDPR Art. 33/34): what happened, whom and what
    it touched, what was done, and whether and when the supervisory authority
    and the people were told. The authority is due within 72 hours of
    ``discovered_at``; ``reminded_48_at`` and ``reminded_72_at`` record the
    reminder mails sent while it was not."""

    text_fields = ("description", "categories", "consequences", "measures")

    discovered_at = DateTimeField(index=True)
    description = TextField()
    categories = TextField(default="")
    people_affected = IntegerField(null=True)
    records_affected = IntegerField(null=True)
    consequences = TextField(default="")
    measures = TextField(default="")
    authority_notified_at = DateTimeField(null=True)
    people_notified_at = DateTimeField(null=True)
    reminded_48_at = DateTimeField(null=True)
    reminded_72_at = DateTimeField(null=True)
    created_by = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class PrivacyNotice(BaseModel):
    """One version of the privacy notice people are shown. Editing the notice
    adds a version; the newest is in force."""

    version = IntegerField(unique=True)
    text = TextField()
    created_by = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)


class NoticeConsent(BaseModel):
    """That a person accepted (at sign-up) or acknowledged (after a change) a
    version of the privacy notice, and when."""

    user = ForeignKeyField(User, backref="notice_consents", on_delete="CASCADE")
    version = IntegerField()
    kind = CharField(max_length=20)  # "signup" or "acknowledged"
    accepted_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "version"), False),)

    def audit_subject_id(self) -> int | None:
        return self.user_id
