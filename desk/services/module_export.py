"""CSV exports of one module (``/agent/export/<module>.csv``): tickets,
comments, contacts, agents, departments and the audit log.

Each module is a table of columns (``Spec``): the column, the SQL expression
that yields it, and the field a role may hide. An export holds the rows its
list page shows (the filters of desk.services.listing), only the columns the
exporter may see (a hidden field is left out, not blanked), is audited before
the first byte, and streams plain tuples from the cursor through the shared
writer (desk.services.csv_export). Other areas add columns (custom fields)
with ``register_columns``.
"""
from __future__ import annotations

import json
from itertools import chain
from dataclasses import asdict
from dataclasses import replace
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from peewee import JOIN
from peewee import Case
from peewee import Value
from peewee import fn

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.db import is_postgres
from desk.db import copy_csv
from desk.db import stream_rows
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import AgentDepartment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Department
from desk.models import Role
from desk.models import Ticket
from desk.models import User
from desk.services import audit_log
from desk.services import listing
from desk.services.csv_export import BOOL
from desk.services.csv_export import FORMULA_START
from desk.services.csv_export import PLAIN
from desk.services.csv_export import TEXT
from desk.services.csv_export import TIME
from desk.services.csv_export import Column
from desk.services.csv_export import write_csv
from desk.services.csv_export import write_jsonl

MODULES = ("tickets", "comments", "contacts", "agents", "departments", "audit")


@dataclass(frozen=True)
class Spec:
    """One exported column: how it is written, the expression that selects it,
    and the field permission (``"module.field"``) that can hide it (None:
    visible to whoever may export the module)."""

    column: Column
    expr: Any
    field: str | None = None

    def visible_to(self, user) -> bool:
        if self.field is None:
            return True
        return all(policy.visible(user, *f.split(".", 1)) for f in self.field.split("+"))


Requester = User.alias("requester")
Assignee = User.alias("assignee")
Author = User.alias("author")
ActorUser = User.alias("actor")


def _ticket_specs() -> list[Spec]:
    return [
        Spec(Column("id", _l("Ticket"), PLAIN), Ticket.id),
        Spec(Column("subject", _l("Subject")), Ticket.subject, "tickets.subject"),
        Spec(Column("description", _l("Description")), Ticket.description, "tickets.description"),
        Spec(Column("status", _l("Status"), PLAIN), Ticket.status, "tickets.status"),
        Spec(Column("priority", _l("Priority"), PLAIN), Ticket.priority, "tickets.priority"),
        Spec(Column("department", _l("Department")), Department.name, "tickets.department"),
        Spec(Column("requester_id", _l("Requester id"), PLAIN), Ticket.requester, "tickets.requester"),
        Spec(Column("requester", _l("Requester")), Requester.name, "tickets.requester+contacts.name"),
        Spec(Column("requester_email", _l("Requester email")), Requester.email,
             "tickets.requester+contacts.email"),
        Spec(Column("assignee", _l("Assignee")), Assignee.name, "tickets.assignee"),
        Spec(Column("created_at", _l("Created"), TIME), Ticket.created_at),
        Spec(Column("updated_at", _l("Last activity"), TIME), Ticket.updated_at),
    ]


def _comment_specs() -> list[Spec]:
    return [
        Spec(Column("id", _l("Comment"), PLAIN), Comment.id),
        Spec(Column("ticket_id", _l("Ticket"), PLAIN), Comment.ticket),
        Spec(Column("author", _l("Author")), Author.name),
        Spec(Column("public", _l("Public"), BOOL), Comment.is_public),
        Spec(Column("body", _l("Text")), Comment.body),
        Spec(Column("created_at", _l("Created"), TIME), Comment.created_at),
    ]


def _contact_specs() -> list[Spec]:
    specs = [Spec(Column("id", _l("Contact"), PLAIN), User.id)]
    for name, label in (("name", _l("Name")), ("email", _l("Email")), ("phone", _l("Phone")),
                        ("mobile", _l("Mobile")), ("title", _l("Job title")),
                        ("timezone", _l("Time zone")), ("language", _l("Language"))):
        specs.append(Spec(Column(name, label), getattr(User, name), f"contacts.{name}"))
    return specs + [Spec(Column("created_at", _l("Created"), TIME), User.created_at),
                    Spec(Column("updated_at", _l("Updated"), TIME), User.updated_at)]


def _agent_specs() -> list[Spec]:
    return [
        Spec(Column("id", _l("Agent"), PLAIN), User.id),
        Spec(Column("name", _l("Name")), User.name),
        Spec(Column("email", _l("Email")), User.email),
        Spec(Column("phone", _l("Phone")), User.phone),
        Spec(Column("title", _l("Job title")), User.title),
        Spec(Column("role", _l("Role")), Role.name),
        Spec(Column("active", _l("Active"), BOOL), User.is_active),
        Spec(Column("created_at", _l("Created"), TIME), User.created_at),
    ]


def _department_specs() -> list[Spec]:
    members = (AgentDepartment.select(fn.COUNT(AgentDepartment.agent))
               .join(User, on=(AgentDepartment.agent == User.id))
               .where(AgentDepartment.department == Department.id, User.deleted_at.is_null()))
    return [
        Spec(Column("id", _l("Department"), PLAIN), Department.id),
        Spec(Column("name", _l("Name")), Department.name),
        Spec(Column("private", _l("Private"), BOOL), Department.is_private),
        Spec(Column("members", _l("Members"), PLAIN), members),
        Spec(Column("created_at", _l("Created"), TIME), Department.created_at),
    ]


def _audit_specs() -> list[Spec]:
    return [
        Spec(Column("seq", _l("Entry"), PLAIN), AuditEntry.seq),
        Spec(Column("created_at", _l("Time"), TIME), AuditEntry.created_at),
        Spec(Column("actor_id", _l("Actor id"), PLAIN), AuditEntry.actor_id),
        Spec(Column("actor", _l("Actor")), ActorUser.name, "contacts.name"),
        Spec(Column("action", _l("Action"), PLAIN), AuditEntry.action),
        Spec(Column("record_type", _l("Record type"), PLAIN), AuditEntry.record_type),
        Spec(Column("record_id", _l("Record"), PLAIN), AuditEntry.record_id),
        Spec(Column("subject_id", _l("Whose data"), PLAIN), AuditEntry.subject_id),
        Spec(Column("changes", _l("Changes")), AuditEntry.changes),
    ]


SPECS: dict[str, Callable[[], list[Spec]]] = {
    "tickets": _ticket_specs, "comments": _comment_specs, "contacts": _contact_specs,
    "agents": _agent_specs, "departments": _department_specs, "audit": _audit_specs,
}
_EXTRA: dict[str, list[Callable[[User], list[Spec]]]] = {m: [] for m in MODULES}


def register_columns(module: str, provider: Callable[[User], list[Spec]]) -> None:
    """Add columns to a module's export (custom fields): ``provider(exporter)``
    returns Specs whose expressions refer to the module's table."""
    if provider not in _EXTRA[module]:
        _EXTRA[module].append(provider)


def columns_for(user: User, module: str) -> list[Spec]:
    """The module's columns ``user`` may see, in order."""
    specs = SPECS[module]() + [s for provider in _EXTRA[module] for s in provider(user)]
    return [s for s in specs if s.visible_to(user)]


# -- the rows of each module -------------------------------------------------------

def _tickets(user: User, filters: listing.TicketFilters, specs: list[Spec]):
    query = listing.ticket_query(user, filters, Ticket.select(*[s.expr for s in specs]))
    count = listing.ticket_query(user, filters)
    query = (query.join_from(Ticket, Department, JOIN.LEFT_OUTER)
             .join_from(Ticket, Requester, on=(Ticket.requester == Requester.id))
             .join_from(Ticket, Assignee, JOIN.LEFT_OUTER, on=(Ticket.assignee == Assignee.id)))
    return query.order_by(*listing.ticket_order(user, filters)), count


def _comments(user: User, filters: listing.TicketFilters, specs: list[Spec]):
    """Comments (live, on live tickets) of the tickets the list shows; private
    notes only for those who see them."""
    tickets = listing.ticket_query(user, filters, Ticket.select(Ticket.id))
    condition = Comment.ticket.in_(tickets) & Comment.deleted_at.is_null()
    if not policy.sees_private_comments(user):
        condition &= Comment.is_public == True  # noqa: E712
    query = (Comment.select(*[s.expr for s in specs])
             .join_from(Comment, Author, on=(Comment.author == Author.id)).where(condition))
    return query.order_by(Comment.ticket, Comment.id), Comment.select().where(condition)


def _people(module: str):
    def rows(user: User, filters, specs: list[Spec]):
        q, custom = (filters, ()) if isinstance(filters, str) else (filters.q, filters.custom)
        query = listing.people_query(user, module, q, User.select(*[s.expr for s in specs]), custom)
        if module == "agents":
            query = query.join_from(User, Role, JOIN.LEFT_OUTER, on=(User.role == Role.id))
        return query.order_by(*listing.PEOPLE_ORDER), listing.people_query(user, module, q, custom=custom)
    return rows


def _departments(user: User, _filters, specs: list[Spec]):
    query = Department.select(*[s.expr for s in specs])
    return query.order_by(Department.name), Department.select()


def _audit(user: User, filters: listing.AuditFilters, specs: list[Spec]):
    query = listing.audit_query(filters, AuditEntry.select(*[s.expr for s in specs]))
    if any(s.column.key == "actor" for s in specs):
        query = query.join_from(AuditEntry, ActorUser, JOIN.LEFT_OUTER,
                                on=(AuditEntry.actor_id == ActorUser.id))
    scope = _audit_scope(user)
    count = listing.audit_query(filters)
    if scope is not None:
        query, count = query.where(scope), count.where(scope)
    return query.order_by(AuditEntry.seq), count


def _audit_scope(user: User):
    """The entries the exporter may see: the audit page's own scope."""
    return audit_log.scope(user)


ROWS = {"tickets": _tickets, "comments": _comments, "contacts": _people("contacts"),
        "agents": _people("agents"), "departments": _departments, "audit": _audit}
AUDIT_FIELD_MODULES = {"Ticket": "tickets", "User": "contacts"}


def _audit_values(specs: list[Spec], reader: bool, levels: dict) -> Callable[[tuple], tuple]:
    """Open the sealed values of an entry's changes where the exporter may read
    them (``reader``), "[withheld]" otherwise; a change to a field hidden from
    the exporter (``levels``: module -> field -> level) is left out."""
    keys = [s.column.key for s in specs]
    at = keys.index("changes")
    kind_at = keys.index("record_type")

    def value(v):
        if not crypto.is_sealed(v):
            return v
        return crypto.open_sealed(v) if reader else audit.WITHHELD

    def fix(row: tuple) -> tuple:
        changes = json.loads(row[at] or "{}")
        hidden = levels.get(AUDIT_FIELD_MODULES.get(row[kind_at], ""), {})
        opened = {k: [value(x) for x in pair] if isinstance(pair, list) else value(pair)
                  for k, pair in changes.items()
                  if hidden.get(k.removesuffix("_id")) != policy.HIDDEN}
        return (*row[:at], json.dumps(opened, ensure_ascii=False, sort_keys=True), *row[at + 1:])
    return fix


def _audit_values_for(user: User, specs: list[Spec]) -> Callable[[tuple], tuple]:
    """Audit viewers read the values of fields visible to them."""
    levels = {module: policy.field_levels(user, module) for module in set(AUDIT_FIELD_MODULES.values())}
    return _audit_values(specs, policy.can(user, "audit:view"), levels)


# -- the export ----------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """A module export ready to stream: its columns, rows and row count."""

    module: str
    specs: list[Spec]
    query: Any
    rows: int
    fix: Callable[[tuple], tuple] | None = None

    def tuples(self) -> Iterator[tuple]:
        rows = stream_rows(self.query)
        return map(self.fix, rows) if self.fix else rows

    def copies(self) -> bool:
        """Whether the database can write this CSV itself: on PostgreSQL, when
        every cell is already what the file holds (``_cells_in_sql``) and no
        row needs Python (opened sealed values, the audit log's changes)."""
        return (is_postgres() and self.fix is None
                and all(s.column.kind == PLAIN and s.column.convert is None for s in self.specs))

    def csv(self, keys: bool = False, rows=None) -> Iterator[bytes]:
        columns = [s.column for s in self.specs]
        if rows is None and self.copies():
            # COPY ends lines with LF; the header follows suit.
            return chain(write_csv(columns, (), keys=keys, lineterminator="\n"), copy_csv(self.query))
        return write_csv(columns, rows or self.tuples(), keys=keys)

    def jsonl(self, rows=None) -> Iterator[bytes]:
        return write_jsonl([s.column for s in self.specs], rows or self.tuples())


ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'  # PostgreSQL's to_char pattern for csv_export's times


def _times_as_text(specs: list[Spec]) -> list[Spec]:
    """On PostgreSQL the database writes the times as ISO 8601 text itself
    (``to_char``), so no datetime object is made per cell only to be
    formatted again; SQLite stores them as text already."""
    if not is_postgres():
        return specs
    return [replace(s, expr=fn.to_char(s.expr, ISO_UTC)) if s.column.kind == TIME else s for s in specs]


def _cells_in_sql(specs: list[Spec]) -> list[Spec]:
    """The per-cell work of a CSV, done by the database in the query instead of
    in Python for every cell: the formula guard (a leading apostrophe), booleans
    as true/false, times as ISO 8601 UTC. The rows then go to the CSV writer as
    the cursor returns them. Columns a Python function must convert (opened
    sealed values) keep the Python path."""
    out = []
    for spec in specs:
        column, expr = spec.column, spec.expr
        if column.convert is not None or column.kind == PLAIN:
            out.append(spec)
            continue
        if column.kind == TEXT:
            expr = Case(None, [(fn.SUBSTR(expr, 1, 1).in_(list(FORMULA_START)), Value("'").concat(expr))],
                        expr)
        elif column.kind == BOOL:
            expr = Case(None, [(expr.is_null(), None), (expr == True, "true")], "false")  # noqa: E712
        elif column.kind == TIME:
            expr = fn.to_char(expr, ISO_UTC) if is_postgres() else fn.strftime(ISO_SQLITE, expr)
        out.append(replace(spec, expr=expr, column=replace(column, kind=PLAIN)))
    return out


ISO_SQLITE = "%Y-%m-%dT%H:%M:%SZ"


def prepare(user: User, module: str, filters=None) -> Export:
    """The export of ``module`` as ``user`` may have it (PermissionDenied
    without ``<module>:export``, NotFound for an unknown module)."""
    if module not in MODULES:
        raise NotFound(_l("No such module."))
    policy.require(user, f"{module}:export")
    specs = columns_for(user, module)
    # The audit log's values are opened and withheld in Python (by position).
    specs = _times_as_text(specs) if module == "audit" else _cells_in_sql(specs)
    if filters is None:
        filters = DEFAULT_FILTERS[module]()
    query, count_query = ROWS[module](user, filters, specs)
    fix = _audit_values_for(user, specs) if module == "audit" else None
    return Export(module, specs, query, count_query.count(), fix)


FULL_ROWS = {
    "tickets": lambda q: (q.join_from(Ticket, Department, JOIN.LEFT_OUTER)
                          .join_from(Ticket, Requester, on=(Ticket.requester == Requester.id))
                          .join_from(Ticket, Assignee, JOIN.LEFT_OUTER, on=(Ticket.assignee == Assignee.id))
                          .where(Ticket.deleted_at.is_null()).order_by(Ticket.id)),
    "comments": lambda q: (q.join_from(Comment, Author, on=(Comment.author == Author.id))
                           .where(Comment.deleted_at.is_null(),
                                  Comment.ticket.in_(Ticket.select(Ticket.id).where(Ticket.deleted_at.is_null())))
                           .order_by(Comment.ticket, Comment.id)),
    "contacts": lambda q: listing.people_query(None, "contacts", "", q).order_by(User.id),
    "agents": lambda q: (listing.people_query(None, "agents", "", q)
                         .join_from(User, Role, JOIN.LEFT_OUTER, on=(User.role == Role.id)).order_by(User.id)),
    "departments": lambda q: q.order_by(Department.id),
    "audit": lambda q: (q.join_from(AuditEntry, ActorUser, JOIN.LEFT_OUTER,
                                    on=(AuditEntry.actor_id == ActorUser.id)).order_by(AuditEntry.seq)),
}
FULL_FROM = {"tickets": Ticket, "comments": Comment, "contacts": User, "agents": User,
             "departments": Department, "audit": AuditEntry}


def full_export(module: str) -> Export:
    """Everything of ``module`` with every column and every value readable:
    the bulk export of everything, which only administrators and the command
    line make. Column providers are asked with no exporter (``None``)."""
    specs = _times_as_text(SPECS[module]() + [s for provider in _EXTRA[module] for s in provider(None)])
    query = FULL_ROWS[module](FULL_FROM[module].select(*[s.expr for s in specs]))
    fix = _audit_values(specs, True, {}) if module == "audit" else None
    return Export(module, specs, query, query.order_by().count(), fix)


DEFAULT_FILTERS: dict[str, Callable[[], Any]] = {
    "tickets": lambda: listing.TicketFilters(), "comments": lambda: listing.TicketFilters(),
    "contacts": str, "agents": str, "departments": lambda: None,
    "audit": lambda: listing.AuditFilters(),
}


def export_csv(user: User, module: str, filters=None, keys: bool = False,
               ip: str = "") -> Iterator[bytes]:
    """The CSV of ``module`` for ``user``, audited (who, which module, which
    filters, how many rows) before the first byte."""
    export = prepare(user, module, filters)
    audit.record(Actor.of(user, ip), "export", "Export", module,
                 details={"module": module, "rows": export.rows, "format": "csv",
                          "filters": describe_filters(filters)})
    return export.csv(keys=keys)


FREE_TEXT_FILTERS = {"q", "requester"}


def describe_filters(filters) -> dict:
    """The filters as recorded in the audit log: set values, but never the words
    searched for (they may name a person, and audit entries outlive erasure)."""
    if filters is None:
        return {}
    if isinstance(filters, str):
        return {"q": "[words]"} if filters else {}
    values = asdict(filters)
    custom = dict(values.pop("custom", ()) or ())
    values.pop("columns", None)  # what a list page shows, not which rows
    described = {k: ("[words]" if k in FREE_TEXT_FILTERS else v if isinstance(v, (int, str, bool)) else str(v))
                 for k, v in values.items()
                 if v not in ("", None, False) and not (k == "sort" and v == "updated")}
    return described | {f"cf_{key}": "[words]" for key in custom}
