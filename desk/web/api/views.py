"""The API's routes: thin, as the pages' views are. Each parses (through
``route``), calls one service with the token's owner, and presents."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from flask import Response
from flask import current_app
from flask import request
from flask import send_file
from flask import stream_with_context

from desk import policy
from desk.services import attachments as files
from desk.services import contacts as contact_service
from desk.services import custom_fields
from desk.services import export
from desk.services import feed
from desk.services import listing
from desk.services import tickets as ticket_service
from desk.web.api import client_ip
from desk.web.api import route
from desk.web.api import schemas as s
from desk.web.api import present
from desk.web.api import user
from desk.web.api.problems import ApiProblem
from desk.web.uploads import uploads

# -- cursors ---------------------------------------------------------------------


def _encode(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, list):
        raise ApiProblem("invalid-request", params=[{"name": "cursor", "reason": "not a cursor from this API"}])
    return data


def _ticket_position(cursor: str | None, sort: str):
    if cursor is None:
        return None
    data = _decode(cursor)
    try:
        kind, at, last_id = data
        if kind != sort or not isinstance(last_id, int):
            raise ValueError("a cursor of another list or sort")
        return dt.datetime.fromisoformat(at), last_id
    except (ValueError, TypeError):
        raise ApiProblem("invalid-request", params=[
            {"name": "cursor", "reason": "not a cursor of this list and sort"}]) from None


# -- me ----------------------------------------------------------------------------

@route("/me", response=s.Me)
def me():
    """The token's owner and what they may do."""
    from flask import g
    who = user()
    return s.Me(id=who.id, kind=who.kind, name=who.name, email=who.email,
                role=who.role.name if policy.is_agent(who) and who.role_id else None,
                permissions=sorted(policy.permissions_of(who)),
                token=s.TokenInfo(prefix=g.api_token.prefix, name=g.api_token.name,
                                  read_only=g.api_token.read_only, expires_at=g.api_token.expires_at))


@route("/me/export", media="application/zip", errors=(403,))
def my_export():
    """Everything held about me, as the ZIP of /my/data-export."""
    who = user()
    stream = export.person_zip(who, who, client_ip())
    return Response(stream_with_context(stream), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="desk-my-data-{who.id}.zip"',
        "Cache-Control": "private, no-store"})


# -- tickets ---------------------------------------------------------------------

@route("/tickets", query=s.TicketQuery, response=s.TicketList, errors=(400, 403))
def list_tickets(query: s.TicketQuery):
    """Tickets I may see, newest activity first, with the desk list's filters."""
    filters = listing.TicketFilters(
        status=query.status or "", priority=query.priority or "", department=query.department,
        assignee=query.assignee or "", requester=listing.search_text(query.requester or ""),
        q=listing.search_text(query.q or ""), sort=query.sort,
        default_view=query.view == "default")
    after = _ticket_position(query.cursor, query.sort)
    rows = feed.tickets(user(), filters, after, query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    cursor = None
    if more:
        at, last_id = feed.position(rows[-1], query.sort)
        cursor = _encode(query.sort, at.isoformat(), last_id)
    pickable = custom_fields.list_columns(user(), "tickets")
    _fields, values = custom_fields.column_values(user(), "tickets", [t.id for t in rows],
                                                  tuple(f.key for f in pickable), pickable)
    return s.TicketList(items=[present.ticket(user(), t, custom_fields=values[t.id]) for t in rows],
                        next_cursor=cursor)


@route("/tickets/<id:ticket_id>", response=s.TicketDetail, errors=(404,))
def get_ticket(ticket_id: int):
    """One ticket with the conversation I may see and its files."""
    who = user()
    ticket = ticket_service.get_ticket(who, ticket_id)
    return present.ticket_detail(who, ticket, ticket_service.thread(who, ticket),
                                 ticket_service.ticket_files(ticket))


@route("/tickets", "POST", body=s.TicketCreate, response=s.Ticket, status=201, errors=(400, 403, 415))
def create_ticket(body: s.TicketCreate):
    """Open a ticket (end users, as on /tickets/new)."""
    ticket = ticket_service.submit(user(), body.subject, body.description, body.department_id,
                                   ip=client_ip(), custom=_posted_fields(body.custom_fields))
    shown = ticket_service.get_ticket(user(), ticket.id)
    return present.ticket(user(), shown, custom_fields=present.custom(user(), "tickets", shown))


@route("/tickets/<id:ticket_id>", "PATCH", body=s.TicketUpdate, response=s.Changed,
       errors=(400, 403, 404, 415))
def update_ticket(ticket_id: int, body: s.TicketUpdate):
    """Change status, priority, department, assignee or custom fields
    (requesters: open or close their own, and the fields shown to them)."""
    who = user()
    values = body.model_dump(exclude_unset=True)
    fields = _posted_fields(values.pop("custom_fields", None))
    changed: dict = {}
    if fields:
        changed.update({f"custom_fields.{k}": 1 for k in custom_fields.set_values(
            who, "tickets", ticket_service.get_ticket(who, ticket_id), fields, client_ip())})
    if policy.is_agent(who):
        if values or not fields:
            changed.update(ticket_service.update_ticket(who, ticket_id, client_ip(), **values))
    elif values or not fields:
        if set(values) - {"status"}:
            raise ApiProblem("forbidden")
        before = ticket_service.get_ticket(who, ticket_id).status
        ticket_service.set_status_as_requester(who, ticket_id, values.get("status") or "", client_ip())
        if values.get("status") != before:
            changed["status"] = 1
    ticket = ticket_service.get_ticket(who, ticket_id)
    return s.Changed(changed=sorted(k.removesuffix("_id") for k in changed),
                     ticket=present.ticket(who, ticket, custom_fields=present.custom(who, "tickets", ticket)))


@route("/tickets/<id:ticket_id>/comments", "POST", body=s.CommentCreate, response=s.Comment,
       status=201, multipart=True, errors=(400, 403, 404, 413, 415))
def add_comment(ticket_id: int, body: s.CommentCreate):
    """A public reply or (agents) a private note, as JSON, or as multipart/form-data
    with files in `attachments`."""
    who = user()
    sent = uploads() if request.mimetype == "multipart/form-data" else []
    comment = ticket_service.reply(who, ticket_id, body.body, body.public, sent, client_ip())
    shown = next(c for c in ticket_service.thread(who, ticket_service.get_ticket(who, ticket_id))
                 if c.id == comment.id)
    return present.comment(who, shown)


@route("/attachments/<id:attachment_id>", media="application/octet-stream", errors=(404,))
def download_attachment(attachment_id: int):
    """A file on a ticket I may see (never one on a note I may not)."""
    row = ticket_service.get_attachment(user(), attachment_id)
    try:
        stream = files.open_file(current_app.config, row)
    except FileNotFoundError:
        raise ApiProblem("not-found") from None  # being purged at this moment
    response = send_file(stream, mimetype="application/octet-stream", as_attachment=True,
                         download_name=row.filename, max_age=0, conditional=False, etag=False)
    response.content_length = row.size
    response.set_etag(row.sha256)
    response.headers["Cache-Control"] = "private, no-store"
    return response


# -- contacts ----------------------------------------------------------------------

@route("/contacts", query=s.ContactQuery, response=s.ContactList, errors=(400, 403))
def list_contacts(query: s.ContactQuery):
    """Contacts (agents who may view them), by id, matching `q`."""
    after = 0
    if query.cursor is not None:
        data = _decode(query.cursor)
        if len(data) != 2 or data[0] != "contacts" or not isinstance(data[1], int):
            raise ApiProblem("invalid-request", params=[{"name": "cursor", "reason": "not a cursor of this list"}])
        after = data[1]
    rows = contact_service.find(user(), query.q, after, query.limit + 1)
    cursor = _encode("contacts", rows[query.limit - 1].id) if len(rows) > query.limit else None
    rows = rows[:query.limit]
    pickable = custom_fields.list_columns(user(), "contacts")
    _fields, values = custom_fields.column_values(user(), "contacts", [c.id for c in rows],
                                                  tuple(f.key for f in pickable), pickable)
    return s.ContactList(items=[present.contact(user(), c, values[c.id]) for c in rows],
                         next_cursor=cursor)


@route("/contacts/<id:contact_id>", response=s.Contact, errors=(403, 404))
def get_contact(contact_id: int):
    """One contact."""
    return present.contact(user(), contact_service.get(user(), contact_id))


@route("/contacts", "POST", body=s.ContactCreate, response=s.Contact, status=201,
       errors=(400, 403, 409, 415))
def create_contact(body: s.ContactCreate):
    """Add a contact."""
    values = body.model_dump(exclude={"email", "custom_fields"}, exclude_unset=True)
    values.setdefault("name", body.name)
    person = contact_service.create(user(), body.email, values, client_ip())
    if body.custom_fields:
        custom_fields.set_values(user(), "contacts", person, _posted_fields(body.custom_fields),
                                 client_ip(), creating=True)
    return present.contact(user(), person)


@route("/contacts/<id:contact_id>", "PATCH", body=s.ContactUpdate, response=s.Contact,
       errors=(400, 403, 404, 415))
def update_contact(contact_id: int, body: s.ContactUpdate):
    """Correct a contact's details (the email address changes by request, not here)."""
    values = body.model_dump(exclude_unset=True)
    fields = _posted_fields(values.pop("custom_fields", None))
    if any(v is None for v in values.values()):
        raise ApiProblem("invalid-request", params=[
            {"name": k, "reason": "must not be null"} for k, v in values.items() if v is None])
    if values:
        contact_service.update(user(), contact_id, values, client_ip())
    if fields:
        custom_fields.set_values(user(), "contacts", contact_service.get(user(), contact_id), fields,
                                 client_ip())
    return present.contact(user(), contact_service.get(user(), contact_id))


# -- custom fields -------------------------------------------------------------------

def _posted_fields(values: dict[str, str] | None) -> dict[str, str]:
    """API ``custom_fields`` ({key: value}) as the forms post them (``cf_<key>``)."""
    return {f"cf_{key}": value for key, value in (values or {}).items()}


def _revealed(module: str, record_id: int, key: str) -> Response:
    field, clear = custom_fields.reveal(user(), module, record_id, key, client_ip())
    response = current_app.response_class(
        s.Revealed(key=field.key, value=clear).model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@route("/tickets/<id:ticket_id>/fields/<key>/reveal", "POST", response=s.Revealed,
       errors=(403, 404, 409))
def reveal_ticket_field(ticket_id: int, key: str):
    """The clear value of an encrypted custom field of a ticket (roles that may
    reveal; audited: who, which ticket, which field, never the value)."""
    return _revealed("tickets", ticket_id, key)


@route("/contacts/<id:contact_id>/fields/<key>/reveal", "POST", response=s.Revealed,
       errors=(403, 404, 409))
def reveal_contact_field(contact_id: int, key: str):
    """The clear value of an encrypted custom field of a contact (audited)."""
    return _revealed("contacts", contact_id, key)
