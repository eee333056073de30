"""The register of data subject requests (GDPR Art. 12-21): every request of
every kind, from the person's own buttons (recorded here by the services that
carry them out) or logged by an administrator for one that came by mail or
phone; due in 30 days, extendable once by up to 60 with a reason; closed by
the action that fulfils it.

Every function that reads the clock takes ``now`` (default: the current UTC
time), so the register's deadlines are tested at a chosen instant.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterator

from flask import current_app
from peewee import fn
from flask_babel import force_locale

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.models import AuditEntry
from desk.models import DataSubjectRequest
from desk.models import EmailChangeRequest
from desk.models import ErasureRequest
from desk.models import User
from desk.models import utcnow
from desk.models.compliance import DONE
from desk.models.compliance import OPEN
from desk.models.compliance import REFUSED
from desk.models.compliance import REQUEST_CHANNELS
from desk.models.compliance import REQUEST_KINDS
from desk.services import mail
from desk.services import settings
from desk.services.csv_export import BOOL
from desk.services.csv_export import TIME
from desk.services.csv_export import Column
from desk.services.csv_export import write_csv

DUE_DAYS = 30
MAX_EXTENSION_DAYS = 60
SOON_DAYS = 7
TEXT_MAX = 2000
REMINDED_SETTING = "subject_requests_reminded_on"

# How a linked action reads when it is complete (closing its request).
ERASURE_DONE = "done"
EMAIL_CHANGE_DONE = "confirmed"
EMAIL_CHANGE_ENDED = ("rejected", "cancelled")
ERASURE_ENDED = ("rejected",)


def require_viewer(user: User) -> None:
    """Administrators and roles holding the privacy center's permission."""
    policy.require(user, "privacy:view")


def due_at(req: DataSubjectRequest) -> dt.datetime:
    """30 days after receipt, plus the extension if one was made."""
    return req.received_at + dt.timedelta(days=DUE_DAYS + (req.extended_days or 0))


@dataclass(frozen=True)
class RequestView:
    """A request with what the register shows: its person, its deadline and
    where it stands at ``now``."""

    row: DataSubjectRequest
    person: str
    due: dt.datetime
    status: str
    closed_at: dt.datetime | None
    overdue: bool
    due_soon: bool
    days_left: int
    link: str


def _linked_outcome(req: DataSubjectRequest) -> tuple[str, dt.datetime | None] | None:
    """(status, when) once the linked action has completed or ended; None while
    it is still under way (or nothing is linked)."""
    if req.erasure_request_id:
        er = ErasureRequest.get_or_none(ErasureRequest.id == req.erasure_request_id)
        if er is not None and er.status == ERASURE_DONE:
            return DONE, er.finished_at or er.started_at
        if er is not None and er.status in ERASURE_ENDED:
            return REFUSED, er.created_at
    if req.email_change_id:
        ec = EmailChangeRequest.get_or_none(EmailChangeRequest.id == req.email_change_id)
        if ec is not None and ec.status == EMAIL_CHANGE_DONE:
            return DONE, ec.confirmed_at
        if ec is not None and ec.status in EMAIL_CHANGE_ENDED:
            return REFUSED, ec.decided_at or ec.created_at
    if req.export_entry_id:
        entry = AuditEntry.get_or_none(AuditEntry.id == req.export_entry_id)
        if entry is not None:
            return DONE, entry.created_at
    return None


def effective(req: DataSubjectRequest) -> tuple[str, dt.datetime | None]:
    """The request's status and closing time: its own when closed, else that of
    the action linked to it."""
    if req.status != OPEN:
        return req.status, req.closed_at
    return _linked_outcome(req) or (OPEN, None)


def _link_label(req: DataSubjectRequest) -> str:
    if req.erasure_request_id:
        return f"erasure:{req.erasure_request_id}"
    if req.email_change_id:
        return f"email_change:{req.email_change_id}"
    if req.export_entry_id:
        return f"export:{req.export_entry_id}"
    return ""


def view(req: DataSubjectRequest, names: dict[int, str], now: dt.datetime) -> RequestView:
    status, closed = effective(req)
    due = due_at(req)
    is_open = status == OPEN
    left = due - now
    return RequestView(req, names.get(req.user_id, f"#{req.user_id}" if req.user_id else "—"), due,
                       status, closed, is_open and now > due,
                       is_open and dt.timedelta(0) <= left <= dt.timedelta(days=SOON_DAYS),
                       math.ceil(left.total_seconds() / 86400), _link_label(req))


def register(user: User, now: dt.datetime | None = None, kind: str = "",
             status: str = "") -> list[RequestView]:
    """Every request, newest first, as ``user`` may see the register."""
    require_viewer(user)
    now = now or utcnow()
    query = DataSubjectRequest.select().order_by(DataSubjectRequest.received_at.desc(),
                                                 DataSubjectRequest.id.desc())
    if kind in REQUEST_KINDS:
        query = query.where(DataSubjectRequest.kind == kind)
    rows = list(query)
    views = [view(r, _names(rows), now) for r in rows]
    if status == "overdue":
        return [v for v in views if v.overdue]
    if status in (OPEN, DONE, REFUSED):
        return [v for v in views if v.status == status]
    return views


def _names(rows) -> dict[int, str]:
    ids = {r.user_id for r in rows if r.user_id}
    return {u.id: u.name for u in User.select(User.id, User.name).where(User.id.in_(list(ids) or [0]))}


def get(user: User, request_id: int) -> DataSubjectRequest:
    require_viewer(user)
    req = DataSubjectRequest.get_or_none(DataSubjectRequest.id == request_id)
    if req is None:
        raise NotFound(_l("No such request."))
    return req


# -- recorded from the person's own actions ---------------------------------------

def from_person(actor: Actor, user: User, kind: str, erasure_request_id: int | None = None,
                email_change_id: int | None = None,
                export_entry_id: int | None = None) -> DataSubjectRequest:
    """A request the person made with their own buttons (signed in, so their
    identity is checked), linked to the action it started; called by the
    services that carry these actions out, in their transaction. A data
    export is fulfilled as it is asked for."""
    done = {"status": DONE, "closed_at": utcnow()} if export_entry_id else {}
    return audit.create(actor, DataSubjectRequest, kind=kind, user=user, channel="my_info",
                        identity_checked=True, identity_note="signed in",
                        erasure_request_id=erasure_request_id, email_change_id=email_change_id,
                        export_entry_id=export_entry_id, created_by=user.id, **done)


# -- logged and handled by an administrator ---------------------------------------------

def _text(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(_l("%(name)s is too long (at most %(max)d characters).", name=name, max=TEXT_MAX))
    return text


def log(admin: User, email: str, kind: str, channel: str, received_at: dt.datetime,
        identity_checked: bool, identity_note: str = "", notes: str = "", ip: str = "",
        now: dt.datetime | None = None) -> DataSubjectRequest:
    """Log a request that arrived by mail, phone or letter."""
    policy.require(admin, "privacy:edit")
    now = now or utcnow()
    if kind not in REQUEST_KINDS:
        raise InvalidInput(_l("Choose the kind of request."))
    if channel not in REQUEST_CHANNELS:
        raise InvalidInput(_l("Choose how the request arrived."))
    if received_at > now + dt.timedelta(minutes=5):
        raise InvalidInput(_l("The request cannot have been received in the future."))
    person = User.get_or_none(fn.LOWER(User.email) == (email or "").strip().lower())
    if person is None:
        raise NotFound(_l("Nobody here has this email address. Add them as a contact first."))
    return audit.create(Actor.of(admin, ip), DataSubjectRequest, kind=kind, user=person,
                        channel=channel, received_at=received_at,
                        identity_checked=bool(identity_checked),
                        identity_note=_text(identity_note, "identity"), notes=_text(notes, "notes"),
                        handler_id=admin.id, created_by=admin.id)


def _open(admin: User, request_id: int) -> DataSubjectRequest:
    policy.require(admin, "privacy:edit")
    req = get(admin, request_id)
    if effective(req)[0] != OPEN:
        raise Conflict(_l("This request is closed."))
    return req


def extend(admin: User, request_id: int, days: int, reason: str, ip: str = "",
           now: dt.datetime | None = None) -> DataSubjectRequest:
    """Extend the deadline once, by 1 to 60 days, with a written reason, before
    the first deadline passes (GDPR Art. 12(3))."""
    now = now or utcnow()
    req = _open(admin, request_id)
    if req.extended_days:
        raise Conflict(_l("The deadline was already extended once."))
    if not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise InvalidInput(_l("Extend by 1 to %(max)d days.", max=MAX_EXTENSION_DAYS))
    reason = _text(reason, "reason")
    if not reason:
        raise InvalidInput(_l("Write the reason for the extension (the person is told it)."))
    if now > due_at(req):
        raise Conflict(_l("The deadline has passed; it can no longer be extended."))
    audit.update(Actor.of(admin, ip), req, extended_days=days, extension_reason=reason,
                 handler_id=admin.id)
    return req


LINK_KINDS = ("erasure", "email_change", "export")


def candidates(admin: User, request_id: int) -> list[tuple[str, str]]:
    """Actions about the request's person that could fulfil it: (link, label)."""
    req = get(admin, request_id)
    if not req.user_id:
        return []
    found = []
    for er in ErasureRequest.select().where(ErasureRequest.user == req.user_id):
        found.append((f"erasure:{er.id}", f"erasure #{er.id} ({er.status}, {er.created_at:%Y-%m-%d})"))
    for ec in EmailChangeRequest.select().where(EmailChangeRequest.user == req.user_id):
        found.append((f"email_change:{ec.id}", f"email change #{ec.id} ({ec.status}, {ec.created_at:%Y-%m-%d})"))
    for entry in (AuditEntry.select().where(AuditEntry.action == "export", AuditEntry.record_type == "User",
                                            AuditEntry.record_id == str(req.user_id))
                  .order_by(AuditEntry.id.desc()).limit(20)):
        found.append((f"export:{entry.id}", f"data export ({entry.created_at:%Y-%m-%d %H:%M})"))
    return found


def link(admin: User, request_id: int, target: str, ip: str = "") -> DataSubjectRequest:
    """Tie the request to the action that fulfils it; a completed action
    closes the request at once, one still under way when it completes."""
    req = _open(admin, request_id)
    if target not in dict(candidates(admin, request_id)):
        raise InvalidInput(_l("Choose one of this person's actions."))
    kind, _, raw_id = target.partition(":")
    field = {"erasure": "erasure_request_id", "email_change": "email_change_id",
             "export": "export_entry_id"}[kind]
    values = {"erasure_request_id": None, "email_change_id": None, "export_entry_id": None,
              field: int(raw_id), "handler_id": admin.id}
    with audit.transaction():
        audit.update(Actor.of(admin, ip), req, **values)
        _persist_outcome(Actor.of(admin, ip), req)
    return req


def close(admin: User, request_id: int, outcome: str, notes: str, ip: str = "",
          now: dt.datetime | None = None) -> DataSubjectRequest:
    """Close a request by hand: done (e.g. a restriction or objection acted
    upon outside desk) or refused, with a note saying what was done or why."""
    req = _open(admin, request_id)
    if outcome not in (DONE, REFUSED):
        raise InvalidInput(_l("Choose done or refused."))
    notes = _text(notes, "notes")
    if not notes:
        raise InvalidInput(_l("Say what was done, or why the request was refused."))
    audit.update(Actor.of(admin, ip), req, status=outcome, closed_at=now or utcnow(),
                 notes=(req.notes + "\n" + notes).strip(), handler_id=admin.id)
    return req


def _persist_outcome(actor: Actor, req: DataSubjectRequest) -> bool:
    outcome = _linked_outcome(req)
    if outcome is None:
        return False
    audit.update(actor, req, status=outcome[0], closed_at=outcome[1] or utcnow())
    return True


def settle(actor: Actor, erasure_request_id: int | None = None,
           email_change_id: int | None = None) -> int:
    """The linked action has just completed or ended: close its open requests
    (called by the services that carry the actions out, in their transaction)."""
    query = DataSubjectRequest.select().where(DataSubjectRequest.status == OPEN)
    if erasure_request_id is not None:
        query = query.where(DataSubjectRequest.erasure_request_id == erasure_request_id)
    elif email_change_id is not None:
        query = query.where(DataSubjectRequest.email_change_id == email_change_id)
    else:
        return 0
    return sum(_persist_outcome(actor, req) for req in query)


def sync_closed() -> int:
    """Record as closed every open request whose linked action has completed
    (the register already shows them closed; this writes it down)."""
    count = 0
    linked = DataSubjectRequest.select().where(
        DataSubjectRequest.status == OPEN,
        DataSubjectRequest.erasure_request_id.is_null(False)
        | DataSubjectRequest.email_change_id.is_null(False)
        | DataSubjectRequest.export_entry_id.is_null(False))
    for req in linked:
        with audit.transaction():
            count += _persist_outcome(audit.SYSTEM, req)
    return count


# -- reminders and export ---------------------------------------------------------------

def remind(now: dt.datetime | None = None) -> int:
    """Once a day: mail every administrator the open requests that are overdue
    or due within 7 days. Returns how many requests the mail named."""
    from desk.services import audit_log
    now = now or utcnow()
    sync_closed()
    today = now.date().isoformat()
    if settings.get(REMINDED_SETTING) == today:
        return 0
    rows = [view(r, {}, now) for r in DataSubjectRequest.select().where(DataSubjectRequest.status == OPEN)]
    pressing = sorted((v for v in rows if v.overdue or v.due_soon), key=lambda v: v.due)
    if not pressing:
        return 0
    url = current_app.config["BASE_URL"].rstrip("/") + "/agent/privacy/requests"
    with audit.transaction():
        settings.put(audit.SYSTEM, REMINDED_SETTING, today)
        for admin in audit_log.admins():
            with force_locale(admin.language or "en"):
                lines = "\n".join(
                    (_("#%(id)d (%(kind)s) overdue since %(due)s UTC", id=v.row.id, kind=v.row.kind,
                       due=v.due.strftime("%Y-%m-%d")) if v.overdue else
                     _("#%(id)d (%(kind)s) due on %(due)s UTC", id=v.row.id, kind=v.row.kind,
                       due=v.due.strftime("%Y-%m-%d"))) for v in pressing)
                mail.queue(admin.email, _("Data subject requests due: %(count)d", count=len(pressing)),
                           _("These data subject requests are overdue or due within 7 days:\n\n"
                             "%(lines)s\n\nThe register: %(url)s\n", lines=lines, url=url),
                           subject_id=admin.id)
    return len(pressing)


def register_csv(user: User, now: dt.datetime | None = None, ip: str = "") -> Iterator[bytes]:
    """The whole register as CSV (UTF-8 with BOM), audited."""
    policy.require(user, "privacy:export")
    views = register(user, now)
    columns = [Column("id", _l("Request")), Column("kind", _l("Kind")), Column("person_id", _l("Person id")),
               Column("person", _l("Person")), Column("channel", _l("Received by")),
               Column("received_at", _l("Received"), TIME), Column("identity_checked", _l("Identity checked"), BOOL),
               Column("due_at", _l("Due"), TIME), Column("extended_days", _l("Extended by (days)")),
               Column("extension_reason", _l("Reason for the extension")),
               Column("status", _l("Status")), Column("closed_at", _l("Closed"), TIME),
               Column("handler_id", _l("Handled by (id)")), Column("fulfilled_by", _l("Fulfilled by"))]
    rows = ([v.row.id, v.row.kind, v.row.user_id, v.person, v.row.channel, v.row.received_at,
             v.row.identity_checked, v.due, v.row.extended_days,
             v.row.extension_reason, "overdue" if v.overdue else v.status, v.closed_at,
             v.row.handler_id, v.link] for v in views)
    audit.record(Actor.of(user, ip), "export", "Export", "data_subject_requests",
                 details={"module": "data_subject_requests", "rows": len(views), "format": "csv"})
    return write_csv(columns, rows)
