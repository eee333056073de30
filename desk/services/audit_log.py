"""Reading the audit log: the entries an agent may see, a page at a time
(keyset on the entry id), with values opened where the reader may read them
and fields hidden from them left out; and the state of the hash chain.

Turning an entry into a sentence is the template helper's work
(desk.web.audit_sentences); this module hands it plain facts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from flask import current_app
from flask_babel import force_locale

from desk import audit
from desk import policy
from desk.i18n import gettext as _
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import ContactFieldValue
from desk.models import CustomField
from desk.models import Department
from desk.models import Role
from desk.models import Ticket
from desk.models import TicketFieldValue
from desk.models import User
from desk.models import utcnow
from desk.services import listing
from desk.services import mail
from desk.services import settings

PER_PAGE = 50
SCAN_LIMIT = 2000  # rows read at most for one page when many are hidden from the reader
HIDDEN_KEYS = {"created_at", "updated_at", "key_id"}
CHAIN_SETTING = "audit_chain_verified"

# Which field permissions govern the changes of each record type.
FIELD_MODULES = {"Ticket": "tickets", "User": "contacts"}


@dataclass
class EntryView:
    """One entry as the reader may see it: the stored facts, the changes with
    values opened (or "[erased]", "[secret]"...) and without hidden fields, and
    the names of the people and records it mentions."""

    entry: AuditEntry
    changes: dict[str, Any]
    actor: str = ""
    actor_kind: str = ""
    subject: str = ""
    record: dict = dc_field(default_factory=dict)
    names: dict[str, dict] = dc_field(default_factory=dict)  # "User"/"Department" -> id -> name

    @property
    def action(self) -> str:
        return self.entry.action


@dataclass(frozen=True)
class AuditPage:
    """A page of entries, newest first; ``older``/``newer``: the keyset bounds
    of the neighbouring pages (None when there is none)."""

    items: list[EntryView]
    older: int | None
    newer: int | None


def scope(user: User):
    """A condition selecting the entries ``user`` may see; None for everything
    (administrators). Entries of tickets (and their comments, files and custom
    values) outside the reader's sharing scope are left out, as are values of
    custom fields hidden from them and people records they may not view."""
    if policy.is_admin(user):
        return None
    tickets = Ticket.select(Ticket.id).where(policy.ticket_filter(user))
    comments = Comment.select(Comment.id.cast("text")).where(Comment.ticket.in_(tickets))
    if not policy.sees_private_comments(user):
        comments = comments.where(Comment.is_public == True)  # noqa: E712
    files = Attachment.select(Attachment.id.cast("text")).where(Attachment.ticket.in_(tickets))
    hidden = _hidden_custom_fields(user)
    values = TicketFieldValue.select(TicketFieldValue.id.cast("text")).where(
        TicketFieldValue.ticket.in_(tickets), TicketFieldValue.field.not_in(hidden or [0]))
    contact_values = ContactFieldValue.select(ContactFieldValue.id.cast("text")).where(
        ContactFieldValue.field.not_in(hidden or [0]))
    kind = AuditEntry.record_type
    condition = (((kind != "Ticket") | AuditEntry.record_id.in_(Ticket.select(Ticket.id.cast("text"))
                                                                 .where(policy.ticket_filter(user))))
                 & ((kind != "Comment") | AuditEntry.record_id.in_(comments))
                 & ((kind != "Attachment") | AuditEntry.record_id.in_(files))
                 & ((kind != "TicketFieldValue") | AuditEntry.record_id.in_(values))
                 & ((kind != "ContactFieldValue") | AuditEntry.record_id.in_(contact_values)))
    if not policy.can(user, "contacts:view"):
        condition &= (kind != "ContactFieldValue")
    return condition


def _hidden_custom_fields(user: User) -> list[int]:
    hidden = []
    for row in CustomField.select(CustomField.id, CustomField.module, CustomField.key):
        if not policy.visible(user, row.module, f"cf_{row.key}"):
            hidden.append(row.id)
    return hidden


def visible_changes(user: User, entry: AuditEntry, levels: dict) -> dict[str, Any]:
    """The entry's changes with values opened, without the fields hidden from
    ``user`` (``levels``: module -> field -> access level) and bookkeeping
    timestamps."""
    hidden = levels.get(FIELD_MODULES.get(entry.record_type, ""), {})
    changes = audit.read_changes(entry)
    return {k: v for k, v in changes.items()
            if k not in HIDDEN_KEYS and hidden.get(k.removesuffix("_id")) != policy.HIDDEN}


def _field_levels(user: User) -> dict:
    return {module: policy.field_levels(user, module) for module in set(FIELD_MODULES.values())}


def _touches_only_hidden(entry: AuditEntry, visible: dict) -> bool:
    """An update whose every changed field is hidden from the reader is left
    out entirely (it would say only that something they may not see changed)."""
    return entry.action == "update" and entry.record_type in FIELD_MODULES and not visible


def page(user: User, filters: listing.AuditFilters, before: int | None = None,
         after: int | None = None, per_page: int = PER_PAGE) -> AuditPage:
    """One page of the entries ``user`` may see that match ``filters``, newest
    first: those older than ``before`` or, going back, newer than ``after``."""
    policy.require(user, "audit:view")
    query = listing.audit_query(filters)
    condition = scope(user)
    if condition is not None:
        query = query.where(condition)
    going_back = after is not None and before is None
    views, more = _collect(user, query, after if going_back else before, going_back, per_page)
    if going_back:
        views.reverse()
    items = _named(user, views)
    if not items:
        return AuditPage([], None, None)
    first, last = items[0].entry.id, items[-1].entry.id
    if going_back:
        return AuditPage(items, older=last, newer=first if more else None)
    return AuditPage(items, older=last if more else None,
                     newer=first if (before is not None or after is not None) else None)


def _collect(user: User, query, bound: int | None, ascending: bool,
             per_page: int) -> tuple[list[EntryView], bool]:
    """Up to ``per_page`` visible entries of ``query`` beyond the keyset
    ``bound``, read in chunks (some may be hidden from the reader); and whether
    more remain."""
    levels = _field_levels(user)
    views: list[EntryView] = []
    scanned, chunk = 0, per_page + 1
    while scanned < SCAN_LIMIT:
        batch = query
        if bound is not None:
            batch = batch.where(AuditEntry.id > bound if ascending else AuditEntry.id < bound)
        rows = list(batch.order_by(AuditEntry.id.asc() if ascending else AuditEntry.id.desc())
                    .limit(chunk))
        for entry in rows:
            scanned += 1
            changes = visible_changes(user, entry, levels)
            if _touches_only_hidden(entry, changes):
                continue
            if len(views) == per_page:
                return views, True
            views.append(EntryView(entry, changes))
        if len(rows) < chunk:
            return views, False
        bound = rows[-1].id
    return views, True


# -- names: who and what each entry mentions (a few queries per page) ----------------

def _named(user: User, views: list[EntryView]) -> list[EntryView]:
    people = set()
    for v in views:
        people.update(x for x in (v.entry.actor_id, v.entry.subject_id) if x)
        if v.entry.record_type == "User" and (v.entry.record_id or "").isdigit():
            people.add(int(v.entry.record_id))
        for key in ("assignee", "requester", "user", "agent", "author", "uploader"):
            pair = v.changes.get(key)
            if isinstance(pair, list):
                people.update(x for x in pair if isinstance(x, int))
    users = {u.id: u for u in User.select(User.id, User.name, User.kind).where(User.id.in_(list(people) or [0]))}
    names_hidden = not policy.visible(user, "contacts", "name")
    depts = {d.id: d.name for d in Department.select(Department.id, Department.name)}
    roles = {str(r.id): r.name for r in Role.select(Role.id, Role.name)}
    fields = {f.id: f for f in CustomField.select()}
    for v in views:
        v.actor, v.actor_kind = _person(users.get(v.entry.actor_id), v.entry.actor_id, names_hidden)
        v.subject = _person(users.get(v.entry.subject_id), v.entry.subject_id, names_hidden)[0]
        v.record = _record(v.entry, users, depts, roles, fields, names_hidden)
        v.names = {"User": {uid: _person(u, uid, names_hidden)[0] for uid, u in users.items()},
                   "Department": depts}
    return views


def _person(row: User | None, user_id: int | None, names_hidden: bool) -> tuple[str, str]:
    if user_id is None:
        return "", ""
    if row is None:
        return f"#{user_id}", ""
    if names_hidden and row.kind == "end_user":
        return f"#{user_id}", row.kind
    return row.name, row.kind


def _record(entry: AuditEntry, users, depts, roles, fields, names_hidden) -> dict:
    """What the sentence needs to name the record: its type, id, a name where
    it has one, and the ticket or person a custom value belongs to."""
    kind, rid = entry.record_type, entry.record_id or ""
    info: dict[str, Any] = {"type": kind, "id": rid}
    if kind == "User" and rid.isdigit():
        row = users.get(int(rid))
        info["name"], info["kind"] = _person(row, int(rid), names_hidden)
    elif kind == "Department" and rid.isdigit():
        info["name"] = depts.get(int(rid), "")
    elif kind == "Role":
        info["name"] = roles.get(rid, "")
    elif kind in ("TicketFieldValue", "ContactFieldValue") and rid.isdigit():
        info.update(_custom_value_owner(kind, int(rid), entry, fields))
    elif kind == "CustomField" and rid.isdigit():
        row = fields.get(int(rid))
        info["name"] = row.label if row else ""
    return info


def _custom_value_owner(kind: str, rid: int, entry: AuditEntry, fields) -> dict:
    model = TicketFieldValue if kind == "TicketFieldValue" else ContactFieldValue
    owner = "ticket" if kind == "TicketFieldValue" else "user"
    row = model.get_or_none(model.id == rid)
    created = json.loads(entry.changes or "{}")
    field_id = row.field_id if row else (created.get("field") or [None, None])[1]
    owner_id = getattr(row, f"{owner}_id") if row else (created.get(owner) or [None, None])[1]
    field_row = fields.get(field_id)
    return {"field": field_row.label if field_row else "", "encrypted": bool(field_row and field_row.encrypted),
            "owner": owner_id}


# -- the chain's state ---------------------------------------------------------------

def chain_state() -> dict | None:
    """The last verification: {"ok", "at" (ISO UTC), "summary"}, or None."""
    return settings.get(CHAIN_SETTING)


def verify_chain() -> dict:
    """Walk the hash chain, record when and with what result, and mail every
    administrator when it is broken (the scheduler runs this daily)."""
    ok, summary = audit.verify()
    state = {"ok": ok, "at": utcnow().isoformat(timespec="seconds"), "summary": summary}
    with audit.transaction():
        settings.put(audit.SYSTEM, CHAIN_SETTING, state)
        if not ok:
            _mail_admins_broken(summary)
    return state


def admins() -> list[User]:
    """Every active administrator (who is told when something needs them)."""
    return [u for u in User.select().where(User.kind == "agent", User.deleted_at.is_null(),
                                           User.is_active == True)  # noqa: E712
            if policy.is_admin(u)]


def _mail_admins_broken(summary: str) -> None:
    url = current_app.config["BASE_URL"].rstrip("/") + "/agent/audit"
    for admin in admins():
        with force_locale(admin.language or "en"):
            mail.queue(admin.email, _("The audit log's hash chain is broken"),
                       _("The daily verification of the audit log found a problem: %(summary)s\n\n"
                         "Someone may have altered or removed entries. See %(url)s\n",
                         summary=summary, url=url), subject_id=admin.id)
