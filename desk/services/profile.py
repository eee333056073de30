"""My Info: people view and correct their own personal data (rectification),
and change their password."""
from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.config import LANGUAGES
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import Ticket
from desk.models import User
from desk.services import custom_fields
from desk.services import sessions
from desk.services import tokens
from desk.services.people import NAME_MAX
from desk.services.people import check_password
from desk.services.people import clean_text

PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,48}$")
# Which fields each kind of person edits on their own My Info page.
EDITABLE = {
    "end_user": ("name", "phone", "mobile", "timezone", "language"),
    "agent": ("name", "phone", "mobile", "title", "timezone", "language", "signature"),
}


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _phone(raw: str) -> str:
    value = clean_text(raw, 50, required=False)
    if value and not PHONE_RE.match(value):
        raise InvalidInput(_l("A phone number has digits, spaces and + ( ) - . / only."))
    return value


def _clean(field: str, raw) -> str:
    raw = raw if isinstance(raw, str) else ""
    if field == "name":
        return clean_text(raw, NAME_MAX)
    if field in ("phone", "mobile"):
        return _phone(raw)
    if field == "title":
        return clean_text(raw, 200, required=False)
    if field == "signature":
        return clean_text(raw, 2000, required=False, multiline=True)
    if field == "timezone":
        if raw not in timezones():
            raise InvalidInput(_l("Choose a time zone from the list."))
        return raw
    if field == "language":
        if raw not in ("",) + LANGUAGES:
            raise InvalidInput(_l("Choose a language from the list."))
        return raw
    raise InvalidInput(_l("This field cannot be changed here."))


def clean_field(field: str, raw) -> str:
    """One personal field checked and tidied, as My Info does it."""
    return _clean(field, raw)


def update_my_info(user: User, values: dict, ip: str = "", custom: dict | None = None) -> dict:
    """Correct one's own personal fields, and (end users) the custom contact
    fields shown to them. The email address is not among them (it changes
    through an email change request). Returns what changed."""
    allowed = EDITABLE[user.kind]
    cleaned = {field: _clean(field, values[field]) for field in allowed if field in values}
    with audit.transaction():
        changes = audit.update(Actor.of(user, ip), user, **cleaned)
        if custom and user.is_end_user:
            changes.update(custom_fields.set_values(user, "contacts", user, custom, ip))
    return changes


def ticket_count(user: User) -> int:
    return Ticket.select().where(Ticket.requester == user.id, Ticket.deleted_at.is_null()).count()


def change_password(user: User, current: str, new: str, ip: str = "") -> User:
    """Set a new password after checking the current one; every other session
    of the person ends (the caller signs this browser in anew) and their API
    tokens are revoked."""
    if not crypto.verify_password(user.password_hash, current or ""):
        raise InvalidInput(_l("The current password is wrong."))
    check_password(new)
    actor = Actor.of(user, ip)
    with audit.transaction():
        audit.update(actor, user, password_hash=crypto.hash_password(new),
                     session_token=crypto.new_token(24))
        tokens.revoke_all(actor, user, tokens.PASSWORD_CHANGED)
        sessions.end_all(actor, user, sessions.PASSWORD_CHANGED)
    return user
