"""Lists of contacts (end users) and agents for the desk."""
from __future__ import annotations

from desk import policy
from desk.models import User
from desk.services.listing import PEOPLE_ORDER
from desk.services.listing import Page
from desk.services.listing import page_of
from desk.services.listing import people_query

MODULES = {"end_user": "contacts", "agent": "agents"}


def people(actor_user: User, kind: str, q: str = "", page: int = 1) -> Page:
    """Live (not deleted) contacts or agents, by name, matching ``q``."""
    module = MODULES[kind]
    policy.require(actor_user, f"{module}:view")
    return page_of(people_query(actor_user, module, q).order_by(*PEOPLE_ORDER), page)
