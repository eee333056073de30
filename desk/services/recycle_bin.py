"""The recycle bin: deleted tickets, comments, contacts and agents wait here,
hidden from every page, list, count and export, until they are restored or the
retention period ends and the purge removes them for good."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import lazy_gettext as _l
from desk.models import Comment
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import people
from desk.services import purge
from desk.services import retention
from desk.services import sessions
from desk.services import tokens
from desk.services.listing import PER_PAGE
from desk.services.listing import Page
from desk.services.listing import search_text

MODULES = ("tickets", "comments", "contacts", "agents")


@dataclass(frozen=True)
class Item:
    module: str
    id: int
    title: str
    deleted_at: object
    deleted_by: str
    purge_at: object


def _query(module: str, actor_user: User):
    """The deleted records of one module that ``actor_user`` may see (the policy's
    scope, departments and module permissions), and their model."""
    if module == "tickets":
        query, model = Ticket.select().where(Ticket.deleted_at.is_null(False)), Ticket
    elif module == "comments":
        query, model = Comment.select().where(Comment.deleted_at.is_null(False)), Comment
    else:
        kind = "end_user" if module == "contacts" else "agent"
        query, model = User.select().where(User.kind == kind, User.deleted_at.is_null(False),
                                           User.anonymized_at.is_null()), User
    return query.where(policy.bin_filter(actor_user, module)), model


def _shown_fields(actor_user: User, module: str) -> set[str]:
    """The fields a row's title and the search may use: only those the role sees."""
    if module == "tickets":
        return {"subject"} if policy.visible(actor_user, "tickets", "subject") else set()
    if module == "comments":
        return {"body"}
    if module == "contacts":
        return {f for f in ("name", "email") if policy.visible(actor_user, "contacts", f)}
    return {"name", "email"}


def _title(module: str, row, shown: set[str]) -> str:
    if module == "tickets":
        return f"#{row.id} {row.subject}" if shown else f"#{row.id}"
    if module == "comments":
        return f"#{row.ticket_id}: {row.body[:80]}"
    if shown == {"name", "email"}:
        return f"{row.name} <{row.email}>"
    if shown:
        return getattr(row, shown.pop())
    return f"#{row.id}"


def items(actor_user: User, module: str, q: str = "", page: int = 1) -> Page:
    """One module's deleted records the user may see, newest deletion first,
    with purge dates; hidden fields neither shown nor searched."""
    if module not in MODULES:
        raise NotFound(_l("No such module."))
    policy.require(actor_user, "recycle_bin:view")
    query, model = _query(module, actor_user)
    shown = _shown_fields(actor_user, module)
    q = search_text(q)
    if q:
        fields = {"subject": Ticket.subject, "body": Comment.body,
                  "name": User.name, "email": User.email}
        match = [fields[f].contains(q) for f in sorted(shown)]
        query = query.where(reduce(operator.or_, match) if match else model.id.is_null())
    page = max(1, page)
    total = query.count()
    rows = list(query.order_by(model.deleted_at.desc(), model.id.desc()).paginate(page, PER_PAGE))
    names = {u.id: u.name for u in User.select(User.id, User.name)
             .where(User.id.in_([r.deleted_by for r in rows if r.deleted_by] or [0]))}
    return Page([Item(module, r.id, _title(module, r, set(shown)), r.deleted_at,
                      names.get(r.deleted_by, "—"), retention.purge_date(r.deleted_at))
                 for r in rows], page, total)


def counts(actor_user: User) -> dict[str, int]:
    """How many deleted records of each module the user may see (the tabs)."""
    policy.require(actor_user, "recycle_bin:view")
    return {m: _query(m, actor_user)[0].count() for m in MODULES
            if policy.can(actor_user, f"{m}:view")}


def _deleted_row(module: str, record_id: int, actor_user: User):
    """One deleted record the user may see; another's, or one outside their
    scope, is "not in the recycle bin" (404: its existence does not leak)."""
    query, model = _query(module, actor_user)
    row = query.where(model.id == record_id).first()
    if row is None:
        raise NotFound(_l("Not in the recycle bin."))
    return row


def restore(actor_user: User, module: str, record_id: int, ip: str = "") -> None:
    """Bring back exactly what was deleted (its comments and files come with it)."""
    if module not in MODULES:
        raise NotFound(_l("No such module."))
    policy.require(actor_user, f"{module}:restore")
    row = _deleted_row(module, record_id, actor_user)
    audit.update(Actor.of(actor_user, ip), row, action="restore", deleted_at=None, deleted_by=None)


def delete_permanently(actor_user: User, module: str, record_id: int, config: dict,
                       ip: str = "") -> None:
    """Purge one ticket or comment now, before its retention period ends.
    (People are erased through the erasure page instead.)"""
    if module not in ("tickets", "comments"):
        raise NotFound(_l("No such module."))
    policy.require(actor_user, f"{module}:delete")
    policy.require(actor_user, "recycle_bin:delete")
    row = _deleted_row(module, record_id, actor_user)
    purge.purge_records(Actor.of(actor_user, ip), type(row), [row.id], config)


def delete_person(actor_user: User, user_id: int, ip: str = "") -> User:
    """Move an end user (contacts) or an agent to the recycle bin: they can no
    longer sign in and vanish from lists; their tickets stay."""
    person = User.get_or_none(User.id == user_id, User.deleted_at.is_null())
    if person is None:
        raise NotFound(_l("No such person."))
    policy.require(actor_user, "agents:delete" if person.is_agent else "contacts:delete")
    if person.id == actor_user.id:
        raise PermissionDenied(_l("You cannot delete yourself."))
    if people.is_last_admin(person):
        raise Conflict(_l("The last administrator cannot be deleted."))
    actor = Actor.of(actor_user, ip)
    with audit.transaction():
        audit.update(actor, person, action="delete", deleted_at=utcnow(),
                     deleted_by=actor_user.id, session_token=crypto.new_token(24))
        tokens.revoke_all(actor, person, tokens.DELETED)
        sessions.end_all(actor, person, sessions.DELETED)
    return person
