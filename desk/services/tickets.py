"""Tickets, their conversations and attachments, for requesters and agents.

Every function takes the acting user; what they may see and do is asked of
desk.policy, and every write goes through desk.audit.
"""
from __future__ import annotations

from flask import current_app
from peewee import JOIN
from peewee import OP
from peewee import SQL
from peewee import NodeList
from peewee import Value
from peewee import Expression
from peewee import fn

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.db import prepared
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import lazy_gettext as _l
from desk.models import Attachment
from desk.models import Comment
from desk.models import Department
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.models.tickets import PRIORITIES
from desk.models.tickets import STATUSES
from desk.services import attachments as files
from desk.services import custom_fields
from desk.services import notifications
from desk.services import submitted_forms
from desk.services.listing import COUNT_CAP
from desk.services.listing import PER_PAGE
from desk.services.listing import Page
from desk.services.listing import TicketFilters
from desk.services.listing import page_of
from desk.services.listing import search_text
from desk.services.listing import ticket_order
from desk.services.listing import ticket_query
from desk.services.people import clean_text

SUBJECT_MAX = 255
BODY_MAX = 50_000


def with_people(query, listed: bool = False):
    """Join requester, assignee and department so lists make one query.
    ``listed``: only the columns the desk's list shows (a row of every column
    of the ticket, two people and a department costs peewee more to turn into
    objects than the database takes to find the page)."""
    Assignee = User.alias()
    if listed:
        query = query.select(Ticket.id, Ticket.subject, Ticket.status, Ticket.priority, Ticket.department,
                             Ticket.requester, Ticket.assignee, Ticket.created_at, Ticket.updated_at,
                             User.id, User.name, Assignee.id, Assignee.name, Department.id, Department.name)
    else:
        query = query.select_extend(User, Assignee, Department)
    return (query.join_from(Ticket, User, on=(Ticket.requester == User.id), attr="requester")
            .join_from(Ticket, Assignee, JOIN.LEFT_OUTER, on=(Ticket.assignee == Assignee.id),
                       attr="assignee")
            .join_from(Ticket, Department, JOIN.LEFT_OUTER, attr="department"))


def public_departments() -> list[Department]:
    return list(Department.select().where(Department.is_private == False)  # noqa: E712
                .order_by(Department.name))


def _department(department_id, allowed: list[Department] | None = None) -> Department | None:
    if department_id in (None, "", 0):
        return None
    dept = Department.get_or_none(Department.id == department_id)
    if dept is None or (allowed is not None and dept not in allowed):
        raise InvalidInput(_l("Choose one of the listed departments."))
    return dept


def _save_files(actor: Actor, ticket: Ticket, comment: Comment | None, uploader: User,
                uploads: list[files.Upload]) -> list[Attachment]:
    """Store the files, then their rows (inside the caller's transaction).
    A file whose row is not committed is removed again."""
    cfg = current_app.config
    files.check_limits(uploads, cfg["ATTACHMENT_MAX_BYTES"], cfg["ATTACHMENTS_MAX_BYTES"])
    saved = []
    try:
        for upload in uploads:
            stored = files.store(cfg, upload, uploader.id)
            saved.append(stored)
    except OSError:
        for stored in saved:
            files.remove_file(cfg, stored.stored_name)
        raise
    rows = []
    for stored in saved:
        rows.append(audit.create(actor, Attachment, ticket=ticket, comment=comment, uploader=uploader,
                                 filename=stored.filename, stored_name=stored.stored_name,
                                 content_type=stored.content_type, size=stored.size,
                                 sha256=stored.sha256, data_key=stored.data_key))
    return rows


def _discard_on_failure(uploads_rows: list[Attachment]) -> None:
    for row in uploads_rows:
        files.remove_file(current_app.config, row.stored_name)


# -- end users ---------------------------------------------------------------

def submit(user: User, subject: str, description: str, department_id=None,
           uploads: list[files.Upload] = (), ip: str = "", custom: dict | None = None,
           form_key: str | None = None) -> Ticket:
    """An end user opens a ticket (with the custom fields shown to end users,
    posted as ``cf_<key>``); they get an acknowledgement by mail. The same
    form sent again (``form_key``) gives the ticket it made the first time."""
    if not user.is_end_user:
        raise PermissionDenied("end users only")
    subject = clean_text(subject, SUBJECT_MAX)
    description = clean_text(description, BODY_MAX, multiline=True)
    actor = Actor.of(user, ip)
    departments = public_departments()
    department = _department(department_id, departments) or (departments[0] if len(departments) == 1 else None)
    stored: list[Attachment] = []
    try:
        with audit.transaction():
            fresh, earlier = submitted_forms.claim(user, form_key)
            if not fresh and Ticket.get_or_none(Ticket.id == earlier) is not None:
                return Ticket.get_by_id(earlier)
            ticket = audit.create(actor, Ticket, subject=subject, description=description,
                                  requester=user, department=department)
            custom_fields.set_values(user, "tickets", ticket, custom or {}, ip, creating=True)
            stored = _save_files(actor, ticket, None, user, list(uploads))
            notifications.ticket_received(ticket)
            submitted_forms.made(user, form_key, ticket.id)
    except Exception:
        _discard_on_failure(stored)
        raise
    return ticket


def _mine(query, user_id, status, pattern, by_status: bool, by_words: bool):
    query = query.where(Ticket.requester == user_id, Ticket.deleted_at.is_null())
    if by_status:
        query = query.where(Ticket.status == status)
    if by_words:  # what Ticket.subject.contains(words) writes, with the pattern given
        query = query.where(Expression(Ticket.subject, OP.ILIKE,
                                       NodeList((pattern, SQL("ESCAPE"), Value("\\", converter=False)))))
    return query


@prepared(shape=("by_status", "by_words"))
def _my_page(user_id, status, pattern, limit, offset, by_status, by_words):
    # Only what the page shows (the description can be long).
    shown = Ticket.select(Ticket.id, Ticket.subject, Ticket.status, Ticket.requester, Ticket.created_at,
                          Ticket.updated_at)
    return (_mine(shown, user_id, status, pattern, by_status, by_words)
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit).offset(offset))


@prepared(shape=("by_status", "by_words"))
def _my_count(user_id, status, pattern, by_status, by_words):
    return _mine(Ticket.select(fn.COUNT(Ticket.id)), user_id, status, pattern, by_status, by_words).tuples()


def requester_tickets(user: User, status: str | None = None, q: str = "", page: int = 1) -> Page:
    """My Tickets: newest activity first, by status and words in the subject."""
    page = max(1, page)
    q = search_text(q)
    words = q.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    mine = {"user_id": user.id, "status": status or "", "pattern": f"%{words}%",
            "by_status": status in STATUSES, "by_words": bool(q)}
    items = list(_my_page.rows(**mine, limit=PER_PAGE, offset=(page - 1) * PER_PAGE))
    return Page(items, page, _my_count.first(**mine)[0])


@prepared()
def _status_counts(user_id):
    return (Ticket.select(Ticket.status, fn.COUNT(Ticket.id).alias("n"))
            .where(Ticket.requester == user_id, Ticket.deleted_at.is_null())
            .group_by(Ticket.status).tuples())


def status_counts(user: User) -> dict[str, int]:
    """How many of the user's own tickets are in each status (one query)."""
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in _status_counts.rows(user_id=user.id)})
    return counts


@prepared()
def _live_ticket(ticket_id):
    return with_people(Ticket.select()).where(Ticket.id == ticket_id, Ticket.deleted_at.is_null()).limit(1)


def get_ticket(user: User, ticket_id: int) -> Ticket:
    """The ticket if ``user`` may see it; NotFound otherwise (existence never leaks)."""
    ticket = _live_ticket.first(ticket_id=int(ticket_id))
    if ticket is None or not policy.sees_ticket(user, ticket):
        raise NotFound(_l("No such ticket."))
    return ticket


@prepared(shape=("public_only",))
def _thread(ticket_id, public_only):
    query = (Comment.select(Comment, User).join(User, on=(Comment.author == User.id), attr="author")
             .where(Comment.ticket == ticket_id, Comment.deleted_at.is_null())
             .order_by(Comment.created_at, Comment.id))
    return query.where(Comment.is_public == True) if public_only else query  # noqa: E712


@prepared()
def _ticket_attachments(ticket_id):
    return (Attachment.select().where(Attachment.ticket == ticket_id, Attachment.deleted_at.is_null())
            .order_by(Attachment.id))


def thread(user: User, ticket: Ticket) -> list[Comment]:
    """The conversation the user may see, oldest first, with authors and files."""
    comments = list(_thread.rows(ticket_id=ticket.id, public_only=not policy.sees_private_comments(user)))
    files: dict[int, list[Attachment]] = {}
    if comments:
        shown = {c.id for c in comments}
        # One look-up of the ticket's files (a prefetch would repeat the
        # thread's query inside it); files of comments not shown stay out.
        for row in _files_of(ticket):
            if row.comment_id in shown:
                files.setdefault(row.comment_id, []).append(row)
    for comment in comments:
        comment.attachments = files.get(comment.id, [])  # in place of the backref query
    return comments


def ticket_files(ticket: Ticket) -> list[Attachment]:
    """Files attached to the ticket itself (not to a comment)."""
    return [row for row in _files_of(ticket) if row.comment_id is None]


def _files_of(ticket: Ticket) -> list[Attachment]:
    """The ticket's live files, read once for its page (thread and ticket_files)."""
    if not hasattr(ticket, "_live_files"):
        ticket._live_files = list(_ticket_attachments.rows(ticket_id=ticket.id))
    return ticket._live_files


def reply(user: User, ticket_id: int, body: str, public: bool = True,
          uploads: list[files.Upload] = (), ip: str = "", form_key: str | None = None) -> Comment:
    """Add a public reply or (agents) a private note; the other side is told by
    mail. The same form sent again (``form_key``) gives the first reply."""
    ticket = get_ticket(user, ticket_id)
    if not policy.can_reply(user, ticket, public):
        raise PermissionDenied("reply")
    body = clean_text(body, BODY_MAX, multiline=True)
    actor = Actor.of(user, ip)
    stored: list[Attachment] = []
    try:
        with audit.transaction():
            fresh, earlier = submitted_forms.claim(user, form_key)
            if not fresh and Comment.get_or_none(Comment.id == earlier) is not None:
                return Comment.get_by_id(earlier)
            comment = audit.create(actor, Comment, ticket=ticket, author=user, body=body,
                                   is_public=public)
            submitted_forms.made(user, form_key, comment.id)
            stored = _save_files(actor, ticket, comment, user, list(uploads))
            changes = {"updated_at": utcnow()}
            if user.is_end_user and ticket.status == "closed":
                changes["status"] = "open"
            audit.update(actor, ticket, **changes)
            if user.is_end_user:
                notifications.requester_replied(ticket, comment)
            elif public:
                notifications.agent_replied(ticket, comment)
    except Exception:
        _discard_on_failure(stored)
        raise
    return comment


def set_status_as_requester(user: User, ticket_id: int, status: str, ip: str = "") -> Ticket:
    """The requester closes or reopens their own ticket."""
    if status not in ("open", "closed"):
        raise InvalidInput(_l("Choose open or closed."))
    ticket = get_ticket(user, ticket_id)
    if not user.is_end_user:
        raise PermissionDenied("requester only")
    audit.update(Actor.of(user, ip), ticket, status=status)
    return ticket


# -- agents ------------------------------------------------------------------

def agent_tickets(agent: User, filters: TicketFilters, page: int = 1) -> Page:
    """The desk's ticket list (filters as defined in desk.services.listing)."""
    policy.require(agent, "tickets:view")
    query = ticket_query(agent, filters)
    return page_of(with_people(query, listed=True).order_by(*ticket_order(agent, filters)), page,
                   count_query=query, cap=COUNT_CAP)


@prepared()
def _assignable_agents():
    return User.select().where(User.kind == "agent", User.is_active == True,  # noqa: E712
                               User.deleted_at.is_null()).order_by(User.name)


@prepared()
def _all_departments():
    return Department.select().order_by(Department.name)


def assignable_agents() -> list[User]:
    return list(_assignable_agents.rows())


def all_departments() -> list[Department]:
    return list(_all_departments.rows())


def update_ticket(agent: User, ticket_id: int, ip: str = "", **values) -> dict:
    """Change status, priority, department or assignee; the assignee is told."""
    ticket = get_ticket(agent, ticket_id)
    if not policy.can_edit_ticket(agent):
        raise PermissionDenied("tickets:edit")
    current = {"status": ticket.status, "priority": ticket.priority,
               "department_id": ticket.department_id, "assignee_id": ticket.assignee_id}
    changing = [k for k, v in values.items() if k in current and (v or None) != (current[k] or None)]
    policy.require_editable(agent, "tickets", [k.removesuffix("_id") for k in changing])
    changes = {}
    if "status" in values:
        if values["status"] not in STATUSES:
            raise InvalidInput(_l("Unknown status."))
        changes["status"] = values["status"]
    if "priority" in values:
        if values["priority"] not in PRIORITIES:
            raise InvalidInput(_l("Unknown priority."))
        changes["priority"] = values["priority"]
    if "department_id" in values:
        changes["department"] = _department(values["department_id"])
    if "assignee_id" in values:
        changes["assignee"] = _assignee(values["assignee_id"])
    with audit.transaction():
        done = audit.update(Actor.of(agent, ip), ticket, **changes)
        if "assignee" in done and ticket.assignee_id and ticket.assignee_id != agent.id:
            notifications.ticket_assigned(ticket)
    return done


def update_custom_fields(agent: User, ticket_id: int, raw: dict, ip: str = "") -> dict:
    """Change the ticket's custom fields the agent's role may edit."""
    ticket = get_ticket(agent, ticket_id)
    if not policy.can_edit_ticket(agent):
        raise PermissionDenied("tickets:edit")
    return custom_fields.set_values(agent, "tickets", ticket, raw, ip)


def _assignee(assignee_id) -> User | None:
    if assignee_id in (None, "", 0):
        return None
    user = User.get_or_none(User.id == assignee_id, User.kind == "agent", User.deleted_at.is_null())
    if user is None or not user.is_active:
        raise InvalidInput(_l("Choose one of the listed agents."))
    return user


def delete_ticket(agent: User, ticket_id: int, ip: str = "") -> None:
    """Move a ticket to the recycle bin (its files stay until the purge)."""
    ticket = get_ticket(agent, ticket_id)
    if not policy.can_delete(agent, "tickets"):
        raise PermissionDenied("tickets:delete")
    audit.update(Actor.of(agent, ip), ticket, action="delete", deleted_at=utcnow(),
                 deleted_by=agent.id)


def delete_comment(agent: User, ticket_id: int, comment_id: int, ip: str = "") -> None:
    """Move a comment to the recycle bin (its files stay until the purge)."""
    ticket = get_ticket(agent, ticket_id)
    if not policy.can_delete(agent, "comments"):
        raise PermissionDenied("comments:delete")
    comment = Comment.get_or_none(Comment.id == comment_id, Comment.ticket == ticket.id,
                                  Comment.deleted_at.is_null())
    if comment is None:
        raise NotFound(_l("No such comment."))
    audit.update(Actor.of(agent, ip), comment, action="delete", deleted_at=utcnow(),
                 deleted_by=agent.id)


def get_attachment(user: User, attachment_id: int) -> Attachment:
    """A file the user may download: on a ticket they can see, and (for end
    users) not on a private note. NotFound otherwise."""
    row = Attachment.get_or_none(Attachment.id == attachment_id, Attachment.deleted_at.is_null())
    if row is None:
        raise NotFound(_l("No such file."))
    get_ticket(user, row.ticket_id)
    if row.comment_id is not None:
        comment = Comment.get_or_none(Comment.id == row.comment_id, Comment.deleted_at.is_null())
        if comment is None or (not comment.is_public and not policy.sees_private_comments(user)):
            raise NotFound(_l("No such file."))
    return row
