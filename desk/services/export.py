"""Exports: a person's own data as a ZIP (right of access and portability),
streamed in constant memory, and the CSV rules every export follows
(UTF-8 with BOM for spreadsheets, no formula injection)."""
from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections import deque
from typing import Iterable, Iterator

from flask import current_app
from peewee import JOIN
from peewee import SQL
from peewee import fn

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Department
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import csv_export
from desk.services import custom_fields
from desk.services import notices
from desk.services import subject_requests

PROFILE_FIELDS = ("id", "kind", "name", "email", "phone", "mobile", "title", "timezone",
                  "language", "signature", "created_at", "updated_at")
TICKET_FIELDS = ("id", "subject", "description", "status", "priority", "department",
                 "created_at", "updated_at", "custom_fields")
COMMENT_FIELDS = ("id", "ticket_id", "author", "is_public", "body", "created_at", "attachments")
AUDIT_FIELDS = ("seq", "created_at", "action", "record_type", "record_id", "by_me", "changes")


def csv_lines(header: Iterable[str], rows: Iterable[Iterable]) -> Iterator[bytes]:
    """A CSV file of the person's data (the shared writer; every cell guarded)."""
    return csv_export.write_csv([csv_export.Column(name, name) for name in header], rows, keys=True)


class _Pipe(io.RawIOBase):
    """A write-only stream whose written bytes are collected for a generator."""

    def __init__(self):
        self.chunks: deque[bytes] = deque()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> Iterator[bytes]:
        while self.chunks:
            yield self.chunks.popleft()


def _iso(value):
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def _profile(user: User) -> dict:
    profile = {f: _iso(getattr(user, f)) for f in PROFILE_FIELDS}
    custom = custom_fields.export_values(user, "contacts", user, may_reveal=False)
    if user.is_end_user and custom:
        profile["custom_fields"] = custom
    return profile


def _tickets(user: User):
    return (Ticket.select(Ticket, Department.name.alias("department_name"))
            .join(Department, JOIN.LEFT_OUTER, on=(Ticket.department == Department.id))
            .where(Ticket.requester == user.id, Ticket.deleted_at.is_null())
            .order_by(Ticket.id).objects())


def _ticket_row(t: Ticket, user: User) -> list:
    return [t.id, t.subject, t.description, t.status, t.priority, t.department_name or "",
            _iso(t.created_at), _iso(t.updated_at),
            custom_fields.export_values(user, "tickets", t, may_reveal=False)]


def _on_live_ticket(ticket_column):
    """The row's ticket is not in the recycle bin: one primary-key look-up a
    row (``IN (every live ticket)`` made the database list the whole desk's
    tickets for each person's export: 4 s at a million tickets)."""
    return fn.EXISTS(Ticket.select(SQL("1")).where(Ticket.id == ticket_column, Ticket.deleted_at.is_null()))


def _comments(user: User):
    """Comments on the person's tickets that they may see, and their own
    comments; nothing that is in the recycle bin."""
    on_mine = Comment.ticket.in_(Ticket.select(Ticket.id).where(Ticket.requester == user.id,
                                                                Ticket.deleted_at.is_null()))
    visible = on_mine if policy.sees_private_comments(user) else (on_mine & (Comment.is_public == True))  # noqa: E712
    author = User.alias()
    return (Comment.select(Comment, author.name.alias("author_name"))
            .join(author, on=(Comment.author == author.id))
            .where(visible | (Comment.author == user.id), Comment.deleted_at.is_null(),
                   _on_live_ticket(Comment.ticket))
            .order_by(Comment.id).objects())


def _attachments(user: User):
    """Files on the person's visible comments and tickets, or uploaded by them;
    nothing on a ticket or comment that is in the recycle bin."""
    # Correlated EXISTS (one primary-key lookup a row), not ``IN (all live
    # comments)``: inside an OR, PostgreSQL runs an IN list too large for its
    # memory again for every row.
    live_comment = Comment.select(SQL("1")).where(Comment.id == Attachment.comment, Comment.deleted_at.is_null())
    live = Attachment.comment.is_null() | fn.EXISTS(live_comment)
    if not policy.sees_private_comments(user):
        live_comment = live_comment.where(Comment.is_public == True)  # noqa: E712
    visible = Attachment.comment.is_null() | fn.EXISTS(live_comment)
    mine = Attachment.ticket.in_(Ticket.select(Ticket.id).where(Ticket.requester == user.id,
                                                                Ticket.deleted_at.is_null()))
    return (Attachment.select().where(Attachment.deleted_at.is_null(), _on_live_ticket(Attachment.ticket),
                                      ((mine & visible) | (Attachment.uploader == user.id)), live)
            .order_by(Attachment.id))


def _audit_rows(user: User) -> Iterator[list]:
    """The person's own audit history, their values readable, others' withheld."""
    query = (AuditEntry.select().where(AuditEntry.subject_id == user.id)
             .order_by(AuditEntry.seq))
    for entry in query.iterator():
        changes = audit.read_changes(entry, only_subject=user.id)
        yield [entry.seq, _iso(entry.created_at), entry.action, entry.record_type, entry.record_id,
               entry.actor_id == user.id, changes]


def person_zip(actor: User, user: User, ip: str = "") -> Iterator[bytes]:
    """Everything held about ``user`` as a ZIP, generated piece by piece.
    The export is audited before the first byte is sent."""
    if actor.id != user.id:
        policy.require(actor, "exports:export")
    with audit.transaction():
        entry = audit.record(Actor.of(actor, ip), "export", "User", user.id, subject_id=user.id,
                             details={"kind": "personal data (ZIP)"})
        if actor.id == user.id:
            subject_requests.from_person(Actor.of(actor, ip), user, "access", export_entry_id=entry.id)
    return _generate(user)


def _generate(user: User) -> Iterator[bytes]:
    pipe = _Pipe()
    config = current_app.config
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        def add_text(name: str, parts: Iterable[str | bytes]) -> Iterator[bytes]:
            with archive.open(name, "w") as out:
                for part in parts:
                    out.write(part if isinstance(part, bytes) else part.encode("utf-8"))
                    yield from pipe.drain()
            yield from pipe.drain()

        yield from add_text("README.txt", [_readme(user)])
        yield from add_text("profile.json", [json.dumps(_profile(user), ensure_ascii=False, indent=2)])
        ticket_rows = lambda: (_ticket_row(t, user) for t in _tickets(user))  # noqa: E731
        yield from add_text("tickets.json", _json_list(TICKET_FIELDS, ticket_rows()))
        yield from add_text("tickets.csv", csv_lines(TICKET_FIELDS, ticket_rows()))
        names: dict[int, list[str]] = {}
        for row in _attachments(user):
            if row.comment_id:
                names.setdefault(row.comment_id, []).append(f"{row.id}-{row.filename}")
        comment_rows = lambda: (_comment_row(c, names) for c in _comments(user))  # noqa: E731
        yield from add_text("comments.json", _json_list(COMMENT_FIELDS, comment_rows()))
        yield from add_text("comments.csv", csv_lines(COMMENT_FIELDS, comment_rows()))
        yield from add_text("privacy_notices.json",
                            [json.dumps(notices.own_records(user), ensure_ascii=False, indent=2)])
        yield from add_text("audit_history.json", _json_list(AUDIT_FIELDS, _audit_rows(user)))
        yield from add_text("audit_history.csv", csv_lines(AUDIT_FIELDS, _audit_rows(user)))
        for row in _attachments(user):
            name = f"attachments/{row.id}-{row.filename}"
            try:
                source = files.open_file(config, row)
            except FileNotFoundError:
                continue
            with source, archive.open(name, "w") as out:
                while chunk := source.read(files.CHUNK):
                    out.write(chunk)
                    yield from pipe.drain()
            yield from pipe.drain()
    yield from pipe.drain()


def _comment_row(c: Comment, names: dict[int, list[str]]) -> list:
    return [c.id, c.ticket_id, c.author_name, c.is_public, c.body, _iso(c.created_at),
            ";".join(names.get(c.id, []))]


def _json_list(fields, rows) -> Iterator[str]:
    yield "[\n"
    first = True
    for row in rows:
        yield ("" if first else ",\n") + json.dumps(dict(zip(fields, row)), ensure_ascii=False)
        first = False
    yield "\n]\n"


def _readme(user: User) -> str:
    return (f"Personal data held about {user.name} (account #{user.id}).\n"
            f"Exported {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.\n\n"
            "profile.json            your account details\n"
            "tickets.json/.csv       tickets you opened\n"
            "comments.json/.csv      the conversation on them you can see, and your own comments\n"
            "privacy_notices.json    the privacy notice versions you accepted and when\n"
            "audit_history.json/.csv every recorded change about you, values readable\n"
            "attachments/            files on your tickets and files you sent\n\n"
            "CSV files are UTF-8 with a byte order mark; cells that would start a formula are\n"
            "prefixed with an apostrophe.\n")
