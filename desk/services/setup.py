"""First start: a one-time link where the first administrator is created."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import NotFound
from desk.models import User
from desk.services import people
from desk.services import settings

_KEY = "setup_token_sha256"


def issue_token() -> str | None:
    """A fresh setup token while there is no administrator (None once there is).
    Only its hash is stored; a new one replaces the old."""
    if people.has_admin():
        return None
    token = crypto.new_token()
    settings.put(audit.SYSTEM, _KEY, crypto.token_hash(token))
    return token


def check_token(token: str) -> None:
    """NotFound unless ``token`` is the current setup token and no admin exists."""
    stored = settings.get(_KEY)
    if not stored or people.has_admin() or not crypto.tokens_equal(stored, crypto.token_hash(token or "")):
        raise NotFound(_l("This setup link is not valid any more."))


def complete(token: str, name: str, email: str, password: str, ip: str) -> User:
    """Create the first administrator and spend the token."""
    with audit.transaction():
        check_token(token)
        admin = people.create_admin(Actor(None, ip), name, email, password)
        settings.remove(Actor(admin.id, ip), _KEY)
    return admin
