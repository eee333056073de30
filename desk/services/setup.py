"""First start: a one-time link where the first administrator is created."""
from __future__ import annotations

from peewee import IntegrityError

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.services import people
from desk.services import settings

_KEY = "setup_token"


def _stored_token() -> str | None:
    return crypto.open_secret(_KEY, settings.get(_KEY))


def issue_token() -> str | None:
    """The setup token while there is no administrator (None once there is).
    It is made once and kept sealed in the database, so every app server that
    starts prints the same working link."""
    if people.has_admin():
        return None
    token = _stored_token()
    if token is not None:
        return token
    try:
        with audit.transaction():
            token = _stored_token()
            if token is None:
                token = crypto.new_token()
                settings.add(audit.SYSTEM, _KEY, crypto.seal_secret(_KEY, token))
    except IntegrityError:
        # Another server made it at the same moment: use theirs.
        token = _stored_token()
    return token


def check_token(token: str) -> None:
    """NotFound unless ``token`` is the current setup token and no admin exists."""
    stored = _stored_token()
    if not stored or people.has_admin() or not crypto.tokens_equal(stored, token or ""):
        raise NotFound(_l("This setup link is not valid any more."))


def complete(token: str, name: str, email: str, password: str, ip: str) -> User:
    """Create the first administrator and spend the token."""
    with audit.transaction():
        check_token(token)
        admin = people.create_admin(Actor(None, ip), name, email, password)
        settings.remove(Actor(admin.id, ip), _KEY)
    return admin
