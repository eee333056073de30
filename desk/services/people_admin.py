"""Lists of contacts (end users) and agents for the desk."""
from __future__ import annotations

from desk import policy
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.services import custom_fields
from desk.services.listing import PEOPLE_ORDER
from desk.services.listing import Page
from desk.services.listing import page_of
from desk.services.listing import people_query

MODULES = {"end_user": "contacts", "agent": "agents"}


def people(actor_user: User, kind: str, q: str = "", page: int = 1,
           custom: tuple[tuple[str, str], ...] = ()) -> Page:
    """Live (not deleted) contacts or agents, by name, matching ``q`` (and the
    custom field filters of contacts)."""
    module = MODULES[kind]
    policy.require(actor_user, f"{module}:view")
    return page_of(people_query(actor_user, module, q, custom=custom).order_by(*PEOPLE_ORDER), page)


def get_contact(actor_user: User, user_id: int) -> User:
    """A live contact (end user) for an agent who may view contacts."""
    policy.require(actor_user, "contacts:view")
    person = User.get_or_none(User.id == user_id, User.kind == "end_user", User.deleted_at.is_null())
    if person is None:
        raise NotFound(_l("No such person."))
    return person


def update_contact_fields(actor_user: User, user_id: int, raw: dict, ip: str = "") -> dict:
    """Save a contact's custom fields (those the agent's role may edit)."""
    person = get_contact(actor_user, user_id)
    policy.require(actor_user, "contacts:edit")
    return custom_fields.set_values(actor_user, "contacts", person, raw, ip)
