"""The audit log: an append-only hash chain, written only by desk.audit."""
from peewee import BigIntegerField
from peewee import CharField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow


class AuditEntry(BaseModel):
    """One recorded action.

    ``changes`` is JSON {field: [old, new]}; personal values in it are sealed
    under the data subject's key. ``hash`` covers every other column and the
    previous entry's hash, so editing or removing a row breaks the chain: an
    HMAC under the audit key of master key ``key_id`` (see desk.crypto); ""
    marks entries made before the chain was keyed (plain SHA-256).
    """

    seq = BigIntegerField(unique=True)
    created_at = DateTimeField(default=utcnow)
    actor_id = IntegerField(null=True, index=True)
    action = CharField(max_length=40)
    record_type = CharField(max_length=40)
    record_id = CharField(max_length=64, null=True)
    subject_id = IntegerField(null=True, index=True)
    changes = TextField(default="{}")
    ip = CharField(max_length=255, default="")
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)
    key_id = CharField(max_length=64, default="")

    class Meta:
        indexes = ((("record_type", "record_id", "action", "created_at"), False),
                   (("action", "id"), False))


class AuditHead(BaseModel):
    """The single row naming the last entry: a lock for appending, and the
    anchor that makes removing the newest entries detectable (with the witness
    file outside the database, see desk.audit). ``keyed_from``: the first entry
    made with a keyed hash; those before it are from before the cut-over."""

    seq = BigIntegerField(default=0)
    hash = CharField(max_length=64)
    keyed_from = BigIntegerField(default=1)
