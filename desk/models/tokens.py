"""Personal access tokens for the JSON API: only a keyed hash is stored."""
from peewee import BooleanField
from peewee import CharField

from peewee import ForeignKeyField
from peewee import IntegerField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import User

class ApiToken(BaseModel):
    """A token someone made for their own tools.

    ``token_hash`` is an HMAC-SHA-256 of the whole token under a key derived
    from the instance keyring (``key_id`` names it); ``prefix`` is the short
    visible part that lists and logs show.
    """

    secret_fields = ("token_hash",)
    text_fields = ("name",)

    user = ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE")
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

    def audit_subject_id(self) -> int | None:
        return self.user_id

class ApiTokenUse(BaseModel):
    """When and from where a token was last used. Operational (written on
    use, at most once a minute); a use from a new address is also audited.
    Goes with its token."""

    write_guard = False

    token = ForeignKeyField(ApiToken, primary_key=True, backref="+", on_delete="CASCADE")
    last_used_at = DateTimeField()
    last_used_ip = CharField(max_length=64, default="")
