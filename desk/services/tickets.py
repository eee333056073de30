"""Tickets as their requesters and agents see them (lists for now)."""
from __future__ import annotations

from dataclasses import dataclass

from desk.models import Ticket
from desk.models import User

PER_PAGE = 25


@dataclass(frozen=True)
class Page:
    items: list
    page: int
    total: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _page(query, page: int) -> Page:
    page = max(1, page)
    total = query.count()
    return Page(list(query.paginate(page, PER_PAGE)), page, total)


def my_tickets(user: User, page: int = 1) -> Page:
    """The requester's own tickets, newest activity first."""
    query = (Ticket.select()
             .where(Ticket.requester == user, Ticket.deleted_at.is_null())
             .order_by(Ticket.updated_at.desc(), Ticket.id.desc()))
    return _page(query, page)


def agent_queue(agent: User, page: int = 1) -> Page:
    """Open tickets assigned to the agent or unassigned."""
    query = (Ticket.select()
             .where(Ticket.deleted_at.is_null(), Ticket.status == "open",
                    (Ticket.assignee == agent) | Ticket.assignee.is_null())
             .order_by(Ticket.updated_at.desc(), Ticket.id.desc()))
    return _page(query, page)
