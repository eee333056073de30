"""Ticket lists read in slices after a position (keyset pagination), for
callers that page by cursor (the API) rather than by page number. The same
filter definition (desk.services.listing) and the same policy as the list
pages."""
from __future__ import annotations

import datetime as dt

from desk import policy
from desk.models import Ticket
from desk.models import User
from desk.services import listing
from desk.services import tickets as ticket_service

# sort -> (column, descending)
ORDERS = {"updated": (Ticket.updated_at, True), "created": (Ticket.created_at, True),
          "oldest": (Ticket.created_at, False)}
Position = tuple[dt.datetime, int]


def tickets(user: User, filters: listing.TicketFilters, after: Position | None,
            limit: int) -> list[Ticket]:
    """Up to ``limit`` tickets after ``after`` in ``filters.sort`` order:
    agents get the desk list's filters, end users their own tickets (status
    and words in the subject)."""
    if policy.is_agent(user):
        policy.require(user, "tickets:view")
        query = listing.ticket_query(user, filters)
    else:
        query = _own(user, filters)
    column, descending = ORDERS.get(filters.sort, ORDERS["updated"])
    if after is not None:
        at, last_id = after
        if descending:
            query = query.where((column < at) | ((column == at) & (Ticket.id < last_id)))
        else:
            query = query.where((column > at) | ((column == at) & (Ticket.id > last_id)))
    order = (column.desc(), Ticket.id.desc()) if descending else (column.asc(), Ticket.id.asc())
    return list(ticket_service.with_people(query).order_by(*order).limit(limit))


def position(ticket: Ticket, sort: str) -> Position:
    column, _ = ORDERS.get(sort, ORDERS["updated"])
    return getattr(ticket, column.name), ticket.id


def _own(user: User, filters: listing.TicketFilters):
    query = Ticket.select().where(policy.ticket_filter(user), Ticket.deleted_at.is_null())
    if filters.status:
        query = query.where(Ticket.status == filters.status)
    q = listing.search_text(filters.q)
    if q:
        query = query.where(Ticket.subject.contains(q))
    return query
