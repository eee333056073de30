"""Signed-in browsers: one row per browser session, so signing out revokes it."""
from peewee import BooleanField
from peewee import CharField
from peewee import ForeignKeyField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow
from desk.models.people import User


class BrowserSession(BaseModel):
    """One browser a person is signed in with.

    Both the session cookie and the remember-me cookie carry a random secret;
    only its keyed hash (``secret_hash``, see desk.crypto) is kept here, and a
    cookie opens nothing once its row is gone. Operational: rows come and go
    with sign-in and sign-out, which are audited themselves.
    """

    write_guard = False

    user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
    secret_hash = CharField(max_length=64, unique=True)
    remember = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    ip = CharField(max_length=64, default="")
    user_agent = CharField(max_length=255, default="")

    def audit_subject_id(self) -> int | None:
        return self.user_id
