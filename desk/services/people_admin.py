"""Lists of contacts (end users) and agents for the desk."""
from __future__ import annotations

from desk import policy
from desk.models import User
from desk.services.tickets import PER_PAGE
from desk.services.tickets import Page
from desk.services.tickets import search_text


def people(actor_user: User, kind: str, q: str = "", page: int = 1) -> Page:
    """Live (not deleted) contacts or agents, by name, matching ``q``."""
    policy.require(actor_user, "contacts:view" if kind == "end_user" else "agents:view")
    query = User.select().where(User.kind == kind, User.deleted_at.is_null())
    q = search_text(q)
    if q:
        searchable = [f for f in ("name", "email")
                      if kind != "end_user" or policy.visible(actor_user, "contacts", f)]
        condition = User.id.is_null()
        for name in searchable:
            condition = condition | getattr(User, name).contains(q)
        query = query.where(condition)
    page = max(1, page)
    total = query.count()
    return Page(list(query.order_by(User.name, User.id).paginate(page, PER_PAGE)), page, total)
