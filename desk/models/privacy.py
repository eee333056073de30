"""Privacy requests made by people about their own data."""
from peewee import BigIntegerField
from peewee import CharField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import User

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"


class EmailChangeRequest(BaseModel):
    """A person asks for a new address; an admin approves; the new address
    confirms by a single-use link; only then does the address change."""

    personal_fields = ("new_email", "reason")
    secret_fields = ("token_hash",)

    user = ForeignKeyField(User, backref="email_changes", on_delete="CASCADE")
    new_email = CharField(max_length=254)
    status = CharField(max_length=20, default=PENDING, index=True)
    reason = TextField(default="")
    token_hash = CharField(max_length=64, null=True, unique=True)
    expires_at = DateTimeField(null=True)
    decided_by = IntegerField(null=True)
    decided_at = DateTimeField(null=True)
    confirmed_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    def audit_subject_id(self) -> int | None:
        return self.user_id

ANONYMIZE = "anonymize"
ERASE_WITH_TICKETS = "erase_with_tickets"
REQUESTED = "requested"  # asked for by the person; waits for an admin
RUNNING = "running"
DONE = "done"


class ErasureRequest(BaseModel):
    """Right to be forgotten: a persisted request with per-step state, so a
    crash resumes where it stopped."""

    user = ForeignKeyField(User, backref="erasure_requests", on_delete="CASCADE")
    mode = CharField(max_length=30, default=ANONYMIZE)
    status = CharField(max_length=20, default=REQUESTED, index=True)
    step = IntegerField(default=0)
    requested_by = IntegerField(null=True)
    approved_by = IntegerField(null=True)
    preview = TextField(default="{}")
    reason = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    def audit_subject_id(self) -> int | None:
        return self.user_id


class BulkExport(BaseModel):
    """A ZIP of everything (every module and attachment), made by a job.

    Its file in the data folder is encrypted under a key of its own
    (``wrapped_key``, wrapped by the instance key); it expires, and erasing a
    person deletes every bulk export made before (they contain that person).
    Progress is operational state, updated by the job without audit entries;
    start, download, expiry and deletion are audited as events.
    """

    write_guard = False

    requested_by = IntegerField(null=True)
    status = CharField(max_length=20, default="queued", index=True)
    rows_done = IntegerField(default=0)
    rows_total = IntegerField(default=0)
    files_done = IntegerField(default=0)
    files_total = IntegerField(default=0)
    file_name = CharField(max_length=100, default="")
    size = BigIntegerField(default=0)
    sha256 = CharField(max_length=64, default="")
    wrapped_key = TextField(null=True)
    error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)
