"""Contacts (end users) as agents manage them: look up, add and correct,
within the role's permissions and field-level permissions."""
from __future__ import annotations

from peewee import IntegrityError

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.models.people import END_USER
from desk.services import profile
from desk.services.people import find_by_email
from desk.services.people import normalize_email
from desk.services import listing

FIELDS = ("name", "phone", "mobile", "title", "timezone", "language")


def find(agent: User, q: str = "", after_id: int = 0, limit: int = 25) -> list[User]:
    """Live contacts matching ``q`` (in the fields the agent may see), by id."""
    policy.require(agent, "contacts:view")
    query = listing.people_query(agent, "contacts", q).where(User.id > after_id)
    return list(query.order_by(User.id).limit(limit))


def get(agent: User, contact_id: int) -> User:
    """One live contact, if the agent may view contacts."""
    policy.require(agent, "contacts:view")
    person = User.get_or_none(User.id == contact_id, User.kind == END_USER, User.deleted_at.is_null())
    if person is None:
        raise NotFound(_l("No such contact."))
    return person


def _cleaned(agent: User, values: dict) -> dict:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InvalidInput(_l("These fields cannot be set here: %(names)s",
                              names=", ".join(sorted(unknown))))
    policy.require_editable(agent, "contacts", values)
    return {name: profile.clean_field(name, value) for name, value in values.items()}


def create(agent: User, email: str, values: dict, ip: str = "") -> User:
    """Add a contact (who has no password until they set one)."""
    policy.require(agent, "contacts:create")
    policy.require_editable(agent, "contacts", ["email"])
    email = normalize_email(email)
    cleaned = _cleaned(agent, values)
    if "name" not in cleaned:
        raise InvalidInput(_l("This field is required."))
    with audit.transaction():
        if find_by_email(email) is not None:
            raise Conflict(_l("An account with this email address already exists."))
        try:
            return audit.create(Actor.of(agent, ip), User, kind=END_USER, email=email,
                                password_hash=None, session_token=crypto.new_token(24), **cleaned)
        except IntegrityError:
            raise Conflict(_l("An account with this email address already exists.")) from None


def update(agent: User, contact_id: int, values: dict, ip: str = "") -> dict:
    """Correct a contact's details (not the email address: that changes by
    request); returns what changed."""
    policy.require(agent, "contacts:edit")
    person = get(agent, contact_id)
    return audit.update(Actor.of(agent, ip), person, **_cleaned(agent, values))
