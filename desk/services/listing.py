"""Lists: pages of records, words to search for, and the filters of each list.

A filter definition here is the one both the list page and its CSV export
apply, so an export holds exactly the rows its list shows. Parsing filters
from a query string belongs to desk.forms.filters.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from dataclasses import replace

from peewee import Case
from peewee import fn

from desk import policy
from desk.models import Ticket
from desk.models import User
from desk.models.tickets import PRIORITIES
from desk.services import search

PER_PAGE = 25
SEARCH_MAX = 200


COUNT_CAP = 1000


@dataclass(frozen=True)
class Page:
    """One page of a list. ``capped``: there are more than ``total`` items,
    which were not all counted (a list of very many says "More than 1,000")."""

    items: list
    page: int
    total: int
    per_page: int = PER_PAGE
    capped: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def page_of(query, page: int, count_query=None, cap: int | None = None) -> Page:
    """One page of ``query``; counted on ``count_query`` (without the joins
    that only serve display) when given, and with ``cap`` only up to that many
    (counting every open ticket of a large desk on each request costs more than
    the page). Pages end at the cap."""
    page = max(1, page)
    counted = count_query if count_query is not None else query
    if cap is None:
        return Page(list(query.paginate(page, PER_PAGE)), page, counted.count())
    total = counted.limit(cap + 1).count()
    capped = total > cap
    if capped:
        page = min(page, -(-cap // PER_PAGE))
    return Page(list(query.paginate(page, PER_PAGE)), page, min(total, cap), capped=capped)


def search_text(raw: str) -> str:
    """Words to search for: one line, no control characters, at most 200 characters."""
    text = "".join(ch for ch in (raw or "") if unicodedata.category(ch)[0] != "C")
    return text.strip()[:SEARCH_MAX]


# -- tickets (the desk's list) -------------------------------------------------

TICKET_SORTS = {
    "updated": (Ticket.updated_at.desc(), Ticket.id.desc()),
    "created": (Ticket.created_at.desc(), Ticket.id.desc()),
    "oldest": (Ticket.created_at.asc(), Ticket.id.asc()),
    "priority": (Case(None, [(Ticket.priority == p, i) for i, p in enumerate(reversed(PRIORITIES))],
                      9).asc(), Ticket.updated_at.desc(), Ticket.id.desc()),
}


@dataclass(frozen=True)
class TicketFilters:
    """The desk's ticket list filters (see desk.forms.filters for parsing)."""

    status: str = ""
    priority: str = ""
    department: int | None = None
    assignee: str = ""  # "", "me", "none" or an agent id
    requester: str = ""  # an email address or part of a name
    q: str = ""
    sort: str = "updated"
    default_view: bool = False
    custom: tuple[tuple[str, str], ...] = ()  # (custom field key, value) pairs: cf_<key>=value
    columns: tuple[str, ...] = ()  # custom field keys shown as extra list columns


# Custom field types compared whole (a choice, a date, a number, a checkbox);
# the others (text, long text, email, phone) match on a part of the value.
EXACT_TYPES = ("choice", "date", "number", "checkbox")


def filterable(fields: list) -> list:
    """Of custom fields an agent sees, those a list may filter on: never an
    encrypted one (a filter on it would reveal its values)."""
    return [f for f in fields if not f.encrypted]


def custom_filter_fields(agent: User, module: str = "tickets") -> list:
    """The custom fields ``agent`` may filter on: visible, and ``filterable``."""
    from desk.models import CustomField
    visible = [f for f in CustomField.select().where(CustomField.module == module,
                                                      CustomField.deleted_at.is_null())
               .order_by(CustomField.position, CustomField.id)
               if policy.visible(agent, module, f.name)]
    return filterable(visible)


def custom_condition(module: str, field, value: str):
    """Records of ``module`` whose value of ``field`` matches ``value``."""
    from desk.models import ContactFieldValue
    from desk.models import TicketFieldValue
    model, owner, table = ((TicketFieldValue, TicketFieldValue.ticket, Ticket) if module == "tickets"
                           else (ContactFieldValue, ContactFieldValue.user, User))
    match = (model.value == value) if field.type in EXACT_TYPES else model.value.contains(value)
    return table.id.in_(model.select(owner).where(model.field == field.id, model.sealed.is_null(), match))


def visible_ticket_filters(agent: User, f: TicketFilters) -> TicketFilters:
    """Drop filters and sorting on fields the agent may not see: a filter on a
    hidden field would reveal its values."""
    def hidden(name: str) -> bool:
        return not policy.visible(agent, "tickets", name)
    allowed = {f.key for f in custom_filter_fields(agent)} if f.custom else set()
    return replace(
        f,
        status="" if hidden("status") else f.status,
        priority="" if hidden("priority") else f.priority,
        department=None if hidden("department") else f.department,
        assignee="" if hidden("assignee") else f.assignee,
        requester="" if hidden("requester") else f.requester,
        q="" if hidden("subject") else f.q,
        sort="updated" if f.sort == "priority" and hidden("priority") else f.sort,
        custom=tuple((k, v) for k, v in f.custom if k in allowed) if f.custom else (),
    )


def unknown_custom_filters(agent: User, filters, module: str = "tickets") -> list[str]:
    """The ``cf_<key>`` filters that are not a custom field ``agent`` may filter on."""
    allowed = {f.key for f in custom_filter_fields(agent, module)} if filters.custom else set()
    return [f"cf_{key}" for key, _value in filters.custom if key not in allowed]


def ticket_query(agent: User, filters: TicketFilters, query=None):
    """The live tickets ``agent`` may see that match ``filters`` (no order, no
    joins). The default view: open tickets assigned to me, and unassigned ones
    in my departments."""
    filters = visible_ticket_filters(agent, filters)
    selective = bool(filters.q or filters.custom or filters.requester)
    query = (query if query is not None else Ticket.select()).where(
        policy.ticket_filter(agent, selective), Ticket.deleted_at.is_null())
    if filters.default_view:
        mine = policy.department_ids(agent)
        unassigned_here = Ticket.assignee.is_null() & (
            Ticket.department.in_(mine or [0]) | Ticket.department.is_null())
        query = query.where(Ticket.status == "open", (Ticket.assignee == agent.id) | unassigned_here)
    if filters.status:
        query = query.where(Ticket.status == filters.status)
    if filters.priority:
        query = query.where(Ticket.priority == filters.priority)
    if filters.department:
        query = query.where(Ticket.department == filters.department)
    if filters.assignee == "me":
        query = query.where(Ticket.assignee == agent.id)
    elif filters.assignee == "none":
        query = query.where(Ticket.assignee.is_null())
    elif filters.assignee:
        query = query.where(Ticket.assignee == int(filters.assignee))
    if filters.requester:
        query = query.where(Ticket.requester.in_(_requesters(agent, filters.requester)))
    if filters.q:
        query = query.where(search.mentions(Ticket, [filters.q], ("subject",)))
    if filters.custom:
        fields = {f.key: f for f in custom_filter_fields(agent)}
        for key, value in filters.custom:
            query = query.where(custom_condition("tickets", fields[key], value))
    return query


def _requesters(agent: User, term: str):
    """Ids of people whose email is ``term`` or whose name contains it, as far
    as the agent may see those fields."""
    by_email = fn.LOWER(User.email) == term.lower()
    by_name = User.name.contains(term)
    email_ok = policy.visible(agent, "contacts", "email")
    name_ok = policy.visible(agent, "contacts", "name")
    match = (by_email | by_name) if email_ok and name_ok else \
        by_email if email_ok else by_name if name_ok else User.id.is_null()
    return User.select(User.id).where(match)


def ticket_order(agent: User, filters: TicketFilters) -> tuple:
    return TICKET_SORTS[visible_ticket_filters(agent, filters).sort]


# -- people (contacts and agents) ------------------------------------------------

PEOPLE_MODULES = {"contacts": "end_user", "agents": "agent"}


@dataclass(frozen=True)
class PeopleFilters:
    """The contacts and agents lists' filters: words in the name or email
    (``q``), and for contacts ``cf_<key>=value`` custom field filters."""

    q: str = ""
    custom: tuple[tuple[str, str], ...] = ()
    columns: tuple[str, ...] = ()  # custom field keys shown as extra list columns


def people_query(agent: User, module: str, q: str = "", query=None,
                 custom: tuple[tuple[str, str], ...] = ()):
    """Live contacts or agents matching ``q`` in the fields the agent may see
    (and, for contacts, the ``custom`` field filters the agent may use)."""
    kind = PEOPLE_MODULES[module]
    query = (query if query is not None else User.select()).where(
        User.kind == kind, User.deleted_at.is_null())
    if custom and module == "contacts":
        fields = {f.key: f for f in custom_filter_fields(agent, "contacts")}
        for key, value in custom:
            if key in fields:
                query = query.where(custom_condition("contacts", fields[key], value))
    q = search_text(q)
    if q:
        searchable = [f for f in ("name", "email")
                      if module != "contacts" or policy.visible(agent, "contacts", f)]
        condition = User.id.is_null()
        for name in searchable:
            condition = condition | getattr(User, name).contains(q)
        query = query.where(condition)
    return query


PEOPLE_ORDER = (User.name, User.id)


# -- audit log -------------------------------------------------------------------

AUDIT_RECORD_TYPES = {"ticket": "Ticket", "comment": "Comment", "contact": "User", "agent": "User",
                      "user": "User", "attachment": "Attachment", "department": "Department",
                      "role": "Role"}


@dataclass(frozen=True)
class AuditFilters:
    """The audit log's filters: ``record`` ("ticket:12"), ``actor`` and
    ``subject`` (user ids), ``action``, and a time window [since, until)."""

    record_type: str = ""
    record_id: str = ""
    actor: int | None = None
    subject: int | None = None
    action: str = ""
    since: object = None
    until: object = None


def audit_query(filters: AuditFilters, query=None):
    """Audit entries matching ``filters`` (the caller decides who may read them)."""
    from desk.models import AuditEntry
    query = query if query is not None else AuditEntry.select()
    if filters.record_type == "Ticket" and filters.record_id:
        query = query.where(_ticket_history(int(filters.record_id)))
    else:
        if filters.record_type:
            query = query.where(AuditEntry.record_type == filters.record_type)
        if filters.record_id:
            query = query.where(AuditEntry.record_id == filters.record_id)
    if filters.actor:
        query = query.where(AuditEntry.actor_id == filters.actor)
    if filters.subject:
        query = query.where(AuditEntry.subject_id == filters.subject)
    if filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.since:
        query = query.where(AuditEntry.created_at >= filters.since)
    if filters.until:
        query = query.where(AuditEntry.created_at < filters.until)
    return query


def _ticket_history(ticket_id: int):
    """A ticket's own history: the ticket, and its comments, files and custom
    field values (those still in the database)."""
    from desk.models import Attachment
    from desk.models import AuditEntry
    from desk.models import Comment
    from desk.models import TicketFieldValue
    condition = (AuditEntry.record_type == "Ticket") & (AuditEntry.record_id == str(ticket_id))
    for model in (Comment, Attachment, TicketFieldValue):
        ids = [str(r.id) for r in model.select(model.id).where(model.ticket == ticket_id)]
        if ids:
            condition |= (AuditEntry.record_type == model.__name__) & AuditEntry.record_id.in_(ids)
    return condition
