"""The recycle bin: deleting a ticket, a comment, an end user or an agent hides
it from every page, list, search, count and export while keeping it with who
deleted it and when; /agent/recycle-bin lists, filters, restores and deletes
permanently, each with its permission and audited; the guards around deleting
people; and the retention period that sets each item's purge date."""
from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import zipfile
from types import SimpleNamespace

import pytest

from desk import audit
from desk.models import AgentDepartment
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import FileRemoval
from desk.models import Role
from desk.models import Setting
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import attachments as files
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import browser
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS


APP_CONFIG = MANY_SIGN_INS


# -- helpers -----------------------------------------------------------------



def can_sign_in(app, email: str) -> bool:
    resp = login(browser(app), email, factories.PASSWORD)
    assert resp.status_code in (302, 400), resp.status_code
    return resp.status_code == 302


def post(b, path: str, data: dict | None = None, **kwargs):
    """POST with the session's CSRF token (the same for the whole session)."""
    token = getattr(b, "desk_csrf", None) or csrf_token(b, "/")
    b.desk_csrf = token
    return b.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)


def text(resp) -> str:
    return resp.get_data(as_text=True)


def upload(name: str, data: bytes = b"file body\n") -> files.Upload:
    return files.Upload(filename=name, stream=io.BytesIO(data))


def join(agent, department) -> None:
    audit.create(audit.SYSTEM, AgentDepartment, agent=agent, department=department)


def reload(row):
    return type(row).get_by_id(row.id)


def on_disk(app, attachment) -> bool:
    return files.exists(app.config, attachment.stored_name)


AGENT_ROW = re.compile(r'<td><a href="/agent/tickets/(\d+)">')
PORTAL_ROW = re.compile(r'<td><a href="/my/tickets/(\d+)">')
COUNT_TAB = re.compile(r'href="/my/tickets(?:\?status=(\w+))?"[^>]*>[^<]*<span class="count">(\d+)</span>')
PEOPLE_ROW = re.compile(r"<tr>\s*<td>(.*?)</td><td>(.*?)</td>", re.S)
BIN_ROW = re.compile(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", re.S)
BIN_TAB = re.compile(r'href="/agent/recycle-bin\?module=(\w+)"[^>]*>[^<]*<span class="count">(\d+)</span>')


def rows(resp, pattern=AGENT_ROW) -> list[int]:
    assert resp.status_code == 200, resp.status_code
    return [int(i) for i in pattern.findall(text(resp))]


def my_counts(b) -> dict[str, int]:
    """The status tabs of My Tickets: {"": all, "open": n, ...}."""
    resp = b.get("/my/tickets")
    assert resp.status_code == 200
    return {status: int(n) for status, n in COUNT_TAB.findall(text(resp))}


def people_listed(b, module: str, q: str = "") -> list[tuple[str, str]]:
    resp = b.get(f"/agent/{module}" + (f"?q={q}" if q else ""))
    assert resp.status_code == 200, resp.status_code
    return [(html.unescape(n), html.unescape(e)) for n, e in PEOPLE_ROW.findall(text(resp))]


def bin_rows(b, module: str, q: str = "") -> list[dict]:
    """The recycle bin's rows for one module, as shown."""
    resp = b.get(f"/agent/recycle-bin?module={module}" + (f"&q={q}" if q else ""))
    assert resp.status_code == 200, resp.status_code
    return [{"title": html.unescape(t).strip(), "deleted": d.strip(), "by": html.unescape(by).strip(),
             "purge": p.strip()} for t, d, by, p in BIN_ROW.findall(text(resp))]


def bin_tabs(b) -> dict[str, int]:
    resp = b.get("/agent/recycle-bin")
    assert resp.status_code == 200
    return {m: int(n) for m, n in BIN_TAB.findall(text(resp))}


def my_export(b) -> dict[str, bytes]:
    """POST /my/data-export; the ZIP's files."""
    resp = post(b, "/my/data-export")
    assert resp.status_code == 200, text(resp)[:300]
    with zipfile.ZipFile(io.BytesIO(resp.get_data())) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def entries(record_type: str, record_id, action: str) -> list[AuditEntry]:
    return list(AuditEntry.select()
                .where(AuditEntry.record_type == record_type, AuditEntry.record_id == str(record_id),
                       AuditEntry.action == action)
                .order_by(AuditEntry.seq))


def role(name: str, permissions: list[str]) -> Role:
    return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(permissions),
                        ticket_scope="all")


def agent_with(permissions: list[str], name: str) -> User:
    r = role(f"Role {name}", permissions)
    return factories.agent(name=name, role=r.name)


def is_redirected_to_login(resp) -> bool:
    return resp.status_code == 302 and "/login" in resp.headers["Location"]


# -- data ----------------------------------------------------------------------

@pytest.fixture
def world(ctx):
    """Ann's ticket with a file, Mia's public reply with a file, a private note
    with a file, Ann's answer with a file; and a second ticket of Ann's."""
    admin = factories.admin(name="Ada Admin", email="ada@example.com")
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    support = factories.department("Support")
    join(mia, support)
    ann = factories.end_user(name="Ann Customer", email="ann@example.com")
    ticket = ticket_service.submit(ann, "Printer on fire", "Smoke everywhere", support.id,
                                   [upload("ticket-file.txt")])
    reply = ticket_service.reply(mia, ticket.id, "Public answer from Mia", True, [upload("reply-file.txt")])
    note = ticket_service.reply(mia, ticket.id, "Secret note between agents", False,
                                [upload("note-file.txt")])
    answer = ticket_service.reply(ann, ticket.id, "Ann answers back", True, [upload("ann-file.txt")])
    other = ticket_service.submit(ann, "Invoice question", "Where is my invoice", support.id)
    return SimpleNamespace(admin=admin, mia=mia, support=support, ann=ann, ticket=ticket, reply=reply,
                           note=note, answer=answer, other=other)


# -- deleting hides, and keeps who and when ----------------------------------------

def test_a_deleted_ticket_is_hidden_from_every_list_search_and_count_but_kept(world, ctx):
    w = world
    admin, mia, ann = signed_in(ctx, w.admin), signed_in(ctx, w.mia), signed_in(ctx, w.ann)
    stored = list(Attachment.select().where(Attachment.ticket == w.ticket.id))
    assert len(stored) == 4
    assert set(rows(admin.get("/agent/tickets?view=all"))) == {w.ticket.id, w.other.id}
    assert "2 tickets" in text(admin.get("/agent/tickets?view=all"))
    assert rows(mia.get("/agent/tickets?view=all&q=printer")) == [w.ticket.id]
    assert my_counts(ann) == {"": 2, "open": 2, "on_hold": 0, "closed": 0}

    before = utcnow()
    resp = post(admin, f"/agent/tickets/{w.ticket.id}/delete")
    assert resp.status_code == 302
    after = utcnow()

    for b in (admin, mia):
        for path in ("/agent/tickets", "/agent/tickets?view=all", "/agent/tickets?view=all&q=printer",
                     "/agent/tickets?view=all&q=fire", "/agent/tickets?requester=ann",
                     "/agent/tickets?status=open"):
            assert w.ticket.id not in rows(b.get(path)), path
        assert b.get(f"/agent/tickets/{w.ticket.id}").status_code == 404
    all_page = text(admin.get("/agent/tickets?view=all"))
    assert "1 ticket" in all_page and "Printer on fire" not in all_page
    assert rows(admin.get("/agent/tickets?view=all&q=printer")) == []

    assert rows(ann.get("/my/tickets"), PORTAL_ROW) == [w.other.id]
    assert rows(ann.get("/my/tickets?q=printer"), PORTAL_ROW) == []
    assert rows(ann.get("/my/tickets?status=open"), PORTAL_ROW) == [w.other.id]
    assert my_counts(ann) == {"": 1, "open": 1, "on_hold": 0, "closed": 0}
    assert ann.get(f"/my/tickets/{w.ticket.id}").status_code == 404
    for row in stored:
        for b in (admin, mia, ann):
            assert b.get(f"/attachments/{row.id}").status_code == 404
        assert on_disk(ctx, row)  # the files wait with the ticket

    # kept, with who and when; its comments and files kept as they were
    kept = reload(w.ticket)
    assert kept.deleted_by == w.admin.id and before <= kept.deleted_at <= after
    assert Comment.select().where(Comment.ticket == w.ticket.id, Comment.deleted_at.is_null()).count() == 3
    assert Attachment.select().where(Attachment.ticket == w.ticket.id).count() == 4
    deletion = entries("Ticket", w.ticket.id, "delete")
    assert len(deletion) == 1 and deletion[0].actor_id == w.admin.id
    listed = bin_rows(admin, "tickets")
    assert listed == [{"title": f"#{w.ticket.id} Printer on fire",
                       "deleted": kept.deleted_at.strftime("%Y-%m-%d %H:%M"), "by": "Ada Admin",
                       "purge": (kept.deleted_at + dt.timedelta(days=60)).strftime("%Y-%m-%d")}]


def test_a_deleted_comment_is_hidden_from_both_threads_and_the_requesters_export_but_kept(world, ctx):
    w = world
    admin, ann = signed_in(ctx, w.admin), signed_in(ctx, w.ann)
    file_row = Attachment.get(Attachment.comment == w.reply.id)
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.reply.id}/delete").status_code == 302
    for b, path in ((admin, f"/agent/tickets/{w.ticket.id}"), (ann, f"/my/tickets/{w.ticket.id}")):
        page = text(b.get(path))
        assert "Public answer from Mia" not in page and "reply-file.txt" not in page, path
        assert "Ann answers back" in page, path
    assert ann.get(f"/attachments/{file_row.id}").status_code == 404
    exported = my_export(ann)
    assert b"Public answer from Mia" not in exported["comments.json"]
    assert b"Public answer from Mia" not in exported["comments.csv"]
    assert b"Ann answers back" in exported["comments.json"]
    kept = reload(w.reply)
    assert kept.deleted_at is not None and kept.deleted_by == w.admin.id
    assert on_disk(ctx, file_row)
    assert [r["title"] for r in bin_rows(admin, "comments")] == [f"#{w.ticket.id}: Public answer from Mia"]
    assert bin_rows(admin, "comments")[0]["by"] == "Ada Admin"




def test_a_deleted_comments_file_is_not_in_the_requesters_export(world, ctx):
    w = world
    admin, ann = signed_in(ctx, w.admin), signed_in(ctx, w.ann)
    assert [n for n in my_export(ann) if n.endswith("reply-file.txt")]
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.reply.id}/delete").status_code == 302
    names = my_export(ann)
    assert not [n for n in names if n.endswith("reply-file.txt")], sorted(names)




def test_a_deleted_ticket_and_its_thread_are_not_in_the_requesters_export(world, ctx):
    w = world
    admin, ann = signed_in(ctx, w.admin), signed_in(ctx, w.ann)
    assert post(admin, f"/agent/tickets/{w.ticket.id}/delete").status_code == 302
    exported = my_export(ann)
    tickets = json.loads(exported["tickets.json"])
    assert [t["id"] for t in tickets] == [w.other.id]
    everything = b"".join(exported[n] for n in exported if n != "audit_history.json"
                          and n != "audit_history.csv")
    for needle in (b"Printer on fire", b"Public answer from Mia", b"Ann answers back"):
        assert needle not in everything, needle
    assert not [n for n in exported if n.startswith("attachments/")], sorted(exported)


def test_a_deleted_end_user_is_signed_out_hidden_and_refused_sign_in_but_kept(world, ctx):
    w = world
    admin, ann = signed_in(ctx, w.admin), signed_in(ctx, w.ann)
    assert ("Ann Customer", "ann@example.com") in people_listed(admin, "contacts")
    assert my_export(ann)  # Ann can download her data while she exists

    # an agent without contacts:delete cannot
    mia = signed_in(ctx, w.mia)
    assert post(mia, f"/agent/people/{w.ann.id}/delete").status_code == 403
    assert reload(w.ann).deleted_at is None

    before = utcnow()
    resp = post(admin, f"/agent/people/{w.ann.id}/delete")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/contacts")

    # her session ended at once: every page and her data export send her to sign in
    for path in ("/my/tickets", "/my/info", f"/my/tickets/{w.ticket.id}", "/my/data-export"):
        assert is_redirected_to_login(ann.get(path)), path
    assert is_redirected_to_login(post(ann, "/my/data-export"))
    assert not can_sign_in(ctx, "ann@example.com")
    # hidden from the contacts list and its search
    for q in ("", "Ann", "ann@example.com"):
        assert ("Ann Customer", "ann@example.com") not in people_listed(admin, "contacts", q), q
    assert post(admin, f"/agent/people/{w.ann.id}/delete").status_code == 404
    # kept, with who and when; her tickets stay for the business
    kept = reload(w.ann)
    assert kept.deleted_by == w.admin.id and kept.deleted_at >= before
    assert kept.name == "Ann Customer" and kept.email == "ann@example.com"
    assert set(rows(admin.get("/agent/tickets?view=all"))) == {w.ticket.id, w.other.id}
    assert len(entries("User", w.ann.id, "delete")) == 1
    assert entries("User", w.ann.id, "delete")[0].actor_id == w.admin.id
    listed = bin_rows(admin, "contacts")
    assert [r["title"] for r in listed] == ["Ann Customer <ann@example.com>"]
    assert listed[0]["by"] == "Ada Admin"
    assert bin_rows(admin, "agents") == []


def test_a_deleted_agent_is_signed_out_at_once_hidden_and_refused_sign_in_but_kept(world, ctx):
    w = world
    admin, mia = signed_in(ctx, w.admin), signed_in(ctx, w.mia)
    assert mia.get("/agent/tickets").status_code == 200
    assert ("Mia Agent", "mia@example.com") in people_listed(admin, "agents")
    assert f'<option value="{w.mia.id}"' in text(admin.get("/agent/tickets?view=all"))

    resp = post(admin, f"/agent/people/{w.mia.id}/delete")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/agents")

    for path in ("/agent/tickets", f"/agent/tickets/{w.ticket.id}", "/agent/settings/my-info"):
        assert is_redirected_to_login(mia.get(path)), path
    assert is_redirected_to_login(post(mia, f"/agent/tickets/{w.ticket.id}/reply",
                                       {"body": "still here?", "visibility": "public"}))
    assert not Comment.select().where(Comment.body == "still here?").exists()
    assert not can_sign_in(ctx, "mia@example.com")
    for q in ("", "Mia", "mia@example.com"):
        assert ("Mia Agent", "mia@example.com") not in people_listed(admin, "agents", q), q
    # nobody can pick her as an assignee any more
    assert f'<option value="{w.mia.id}"' not in text(admin.get("/agent/tickets?view=all"))
    kept = reload(w.mia)
    assert kept.deleted_by == w.admin.id and kept.deleted_at is not None
    assert Comment.select().where(Comment.author == w.mia.id).count() == 2  # her work stays
    assert [r["title"] for r in bin_rows(admin, "agents")] == ["Mia Agent <mia@example.com>"]
    assert len(entries("User", w.mia.id, "delete")) == 1


# -- the recycle bin page ----------------------------------------------------------

def test_the_bin_lists_by_module_filters_and_shows_purge_dates(world, ctx):
    w = world
    admin = signed_in(ctx, w.admin)
    assert text(admin.get("/agent/recycle-bin")).count("The recycle bin is empty.") == 1
    assert bin_tabs(admin) == {"tickets": 0, "comments": 0, "contacts": 0, "agents": 0}
    third = factories.ticket(w.ann, "Broken keyboard")
    for t in (w.other, third):
        assert post(admin, f"/agent/tickets/{t.id}/delete").status_code == 302
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.note.id}/delete").status_code == 302
    assert post(admin, f"/agent/people/{w.mia.id}/delete").status_code == 302
    bob = factories.end_user(name="Bob Buyer", email="bob@example.com")
    assert post(admin, f"/agent/people/{bob.id}/delete").status_code == 302

    assert bin_tabs(admin) == {"tickets": 2, "comments": 1, "contacts": 1, "agents": 1}
    tickets = bin_rows(admin, "tickets")
    assert [r["title"] for r in tickets] == [f"#{third.id} Broken keyboard", f"#{w.other.id} Invoice question"]
    for row, ticket in zip(tickets, (third, w.other)):
        deleted = reload(ticket).deleted_at
        assert row["deleted"] == deleted.strftime("%Y-%m-%d %H:%M")
        assert row["purge"] == (deleted + dt.timedelta(days=60)).strftime("%Y-%m-%d")
        assert row["by"] == "Ada Admin"
    assert "stay here for 60 days" in text(admin.get("/agent/recycle-bin"))
    assert [r["title"] for r in bin_rows(admin, "tickets", "keyboard")] == [f"#{third.id} Broken keyboard"]
    assert [r["title"] for r in bin_rows(admin, "tickets", "INVOICE")] == [f"#{w.other.id} Invoice question"]
    assert bin_rows(admin, "tickets", "printer") == []  # a live ticket is not in the bin
    assert [r["title"] for r in bin_rows(admin, "comments")] == [f"#{w.ticket.id}: Secret note between agents"]
    assert bin_rows(admin, "comments", "nothing like this") == []
    assert [r["title"] for r in bin_rows(admin, "contacts", "Bob")] == ["Bob Buyer <bob@example.com>"]
    assert bin_rows(admin, "contacts", "Ann") == []
    assert [r["title"] for r in bin_rows(admin, "agents")] == ["Mia Agent <mia@example.com>"]
    # a module nobody knows shows the tickets; odd searches never fail
    assert admin.get("/agent/recycle-bin?module=bogus").status_code == 200
    assert admin.get("/agent/recycle-bin?module=tickets&q=%25_%00").status_code == 200
    assert admin.get("/agent/recycle-bin?module=tickets&page=999").status_code == 200


def test_restoring_a_ticket_brings_back_its_thread_and_files_but_not_a_comment_deleted_before(world, ctx):
    w = world
    admin, mia, ann = signed_in(ctx, w.admin), signed_in(ctx, w.mia), signed_in(ctx, w.ann)
    reply_file = Attachment.get(Attachment.comment == w.reply.id)
    others = list(Attachment.select().where(Attachment.ticket == w.ticket.id, Attachment.id != reply_file.id))
    assert len(others) == 3
    # the reply first, on its own; then the whole ticket
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.reply.id}/delete").status_code == 302
    reply_deleted_at = reload(w.reply).deleted_at
    assert post(admin, f"/agent/tickets/{w.ticket.id}/delete").status_code == 302
    assert w.ticket.id not in rows(ann.get("/my/tickets"), PORTAL_ROW)

    resp = post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/restore")
    assert resp.status_code == 302 and "/agent/recycle-bin" in resp.headers["Location"]
    restored = reload(w.ticket)
    assert restored.deleted_at is None and restored.deleted_by is None
    assert (restored.subject, restored.description, restored.requester_id, restored.department_id,
            restored.status) == ("Printer on fire", "Smoke everywhere", w.ann.id, w.support.id, "open")
    assert w.ticket.id in rows(admin.get("/agent/tickets?view=all"))
    assert w.ticket.id in rows(mia.get("/agent/tickets"))
    assert w.ticket.id in rows(ann.get("/my/tickets"), PORTAL_ROW)
    assert my_counts(ann)[""] == 2
    page = text(admin.get(f"/agent/tickets/{w.ticket.id}"))
    for needle in ("Smoke everywhere", "Secret note between agents", "Ann answers back",
                   "ticket-file.txt", "note-file.txt", "ann-file.txt"):
        assert needle in page, needle
    # the reply deleted on its own before stays in the bin, file and all
    assert "Public answer from Mia" not in page and "reply-file.txt" not in page
    assert reload(w.reply).deleted_at == reply_deleted_at
    assert [r["title"] for r in bin_rows(admin, "comments")] == [f"#{w.ticket.id}: Public answer from Mia"]
    assert bin_rows(admin, "tickets") == []
    for row in others:
        resp = admin.get(f"/attachments/{row.id}")
        assert resp.status_code == 200 and resp.get_data() == b"file body\n"
    assert ann.get(f"/attachments/{reply_file.id}").status_code == 404
    # the requester gets her public files back, never the note's
    note_file = Attachment.get(Attachment.comment == w.note.id)
    assert ann.get(f"/attachments/{note_file.id}").status_code == 404
    ticket_file = Attachment.get(Attachment.ticket == w.ticket.id, Attachment.comment.is_null())
    assert ann.get(f"/attachments/{ticket_file.id}").status_code == 200

    restore = entries("Ticket", w.ticket.id, "restore")
    assert len(restore) == 1 and restore[0].actor_id == w.admin.id
    assert audit.read_changes(restore[0])["deleted_by"] == [w.admin.id, None]
    # restoring what is not in the bin is not found
    assert post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/restore").status_code == 404
    assert post(admin, "/agent/recycle-bin/tickets/999999/restore").status_code == 404

    # now the reply itself
    assert post(admin, f"/agent/recycle-bin/comments/{w.reply.id}/restore").status_code == 302
    assert "Public answer from Mia" in text(ann.get(f"/my/tickets/{w.ticket.id}"))
    assert ann.get(f"/attachments/{reply_file.id}").status_code == 200
    assert len(entries("Comment", w.reply.id, "restore")) == 1


def test_restoring_people_lets_them_sign_in_again_and_lists_them(world, ctx):
    w = world
    admin = signed_in(ctx, w.admin)
    ann = signed_in(ctx, w.ann)
    for person in (w.ann, w.mia):
        assert post(admin, f"/agent/people/{person.id}/delete").status_code == 302
    # the wrong module for the id is not found
    assert post(admin, f"/agent/recycle-bin/agents/{w.ann.id}/restore").status_code == 404
    assert post(admin, f"/agent/recycle-bin/contacts/{w.mia.id}/restore").status_code == 404
    assert post(admin, f"/agent/recycle-bin/contacts/{w.ann.id}/restore").status_code == 302
    assert post(admin, f"/agent/recycle-bin/agents/{w.mia.id}/restore").status_code == 302
    assert ("Ann Customer", "ann@example.com") in people_listed(admin, "contacts")
    assert ("Mia Agent", "mia@example.com") in people_listed(admin, "agents")
    assert bin_tabs(admin) == {"tickets": 0, "comments": 0, "contacts": 0, "agents": 0}
    # the old session stays ended; a new sign-in works
    assert is_redirected_to_login(ann.get("/my/tickets"))
    assert can_sign_in(ctx, "ann@example.com") and can_sign_in(ctx, "mia@example.com")
    for person in (w.ann, w.mia):
        assert reload(person).deleted_at is None and reload(person).deleted_by is None
        assert [e.actor_id for e in entries("User", person.id, "restore")] == [w.admin.id]


def test_delete_permanently_removes_a_comment_or_a_ticket_with_its_thread_and_files_at_once(world, ctx):
    w = world
    admin, ann = signed_in(ctx, w.admin), signed_in(ctx, w.ann)
    # one comment first: it goes with its file, the ticket and the rest stay
    reply_file = Attachment.get(Attachment.comment == w.reply.id)
    assert post(admin, f"/agent/recycle-bin/comments/{w.reply.id}/purge").status_code == 404  # not in the bin
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.reply.id}/delete").status_code == 302
    assert post(admin, f"/agent/recycle-bin/comments/{w.reply.id}/purge").status_code == 302
    assert Comment.get_or_none(Comment.id == w.reply.id) is None
    assert Attachment.get_or_none(Attachment.id == reply_file.id) is None
    assert not on_disk(ctx, reply_file)
    assert [e.actor_id for e in entries("Comment", w.reply.id, "purge")] == [w.admin.id]
    assert "Ann answers back" in text(ann.get(f"/my/tickets/{w.ticket.id}"))

    stored = list(Attachment.select().where(Attachment.ticket == w.ticket.id))
    comment_ids = [c.id for c in Comment.select().where(Comment.ticket == w.ticket.id)]
    assert len(stored) == 3 and all(on_disk(ctx, row) for row in stored) and len(comment_ids) == 2
    # only what is in the bin can be purged
    assert post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/purge").status_code == 404
    assert Ticket.get_or_none(Ticket.id == w.ticket.id) is not None
    assert post(admin, f"/agent/tickets/{w.ticket.id}/delete").status_code == 302
    page = text(admin.get("/agent/recycle-bin?module=tickets"))
    assert f'action="/agent/recycle-bin/tickets/{w.ticket.id}/purge"' in page
    assert "Delete permanently" in page

    resp = post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/purge")
    assert resp.status_code == 302 and "/agent/recycle-bin" in resp.headers["Location"]
    assert Ticket.get_or_none(Ticket.id == w.ticket.id) is None
    assert Comment.select().where(Comment.id.in_(comment_ids)).count() == 0
    assert Attachment.select().where(Attachment.id.in_([a.id for a in stored])).count() == 0
    for row in stored:
        assert not on_disk(ctx, row), row.filename
    assert FileRemoval.select().count() == 0
    purged = entries("Ticket", w.ticket.id, "purge")
    assert len(purged) == 1 and purged[0].actor_id == w.admin.id and purged[0].changes == "{}"
    assert bin_rows(admin, "tickets") == []
    assert post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/purge").status_code == 404
    assert post(admin, f"/agent/recycle-bin/tickets/{w.ticket.id}/restore").status_code == 404
    # the other ticket is untouched
    assert reload(w.other).deleted_at is None
    assert rows(ann.get("/my/tickets"), PORTAL_ROW) == [w.other.id]
    # people are erased through the erasure page, not purged from here
    assert post(admin, f"/agent/people/{w.ann.id}/delete").status_code == 302
    assert post(admin, f"/agent/recycle-bin/contacts/{w.ann.id}/purge").status_code == 404
    assert reload(w.ann).deleted_at is not None
    assert audit.verify()[0]


# -- permissions ---------------------------------------------------------------------

def test_a_normal_agent_may_not_see_or_use_the_bin(world, ctx):
    """The built-in Agent role holds no recycle_bin:* and no *:delete / *:restore
    (desk/migrations/0001_initial.py), so the bin is closed to them."""
    w = world
    admin = signed_in(ctx, w.admin)
    assert post(admin, f"/agent/tickets/{w.other.id}/delete").status_code == 302
    assert post(admin, f"/agent/tickets/{w.ticket.id}/comments/{w.reply.id}/delete").status_code == 302
    bob = factories.end_user(name="Bob Buyer")
    assert post(admin, f"/agent/people/{bob.id}/delete").status_code == 302
    mia = signed_in(ctx, w.mia)
    audit_before = AuditEntry.select().count()
    for module in ("tickets", "comments", "contacts", "agents"):
        assert mia.get(f"/agent/recycle-bin?module={module}").status_code == 403
    assert mia.get("/agent/recycle-bin").status_code == 403
    assert post(mia, f"/agent/recycle-bin/tickets/{w.other.id}/restore").status_code == 403
    assert post(mia, f"/agent/recycle-bin/comments/{w.reply.id}/restore").status_code == 403
    assert post(mia, f"/agent/recycle-bin/contacts/{bob.id}/restore").status_code == 403
    assert post(mia, f"/agent/recycle-bin/tickets/{w.other.id}/purge").status_code == 403
    assert post(mia, f"/agent/recycle-bin/comments/{w.reply.id}/purge").status_code == 403
    assert post(mia, f"/agent/people/{w.ann.id}/delete").status_code == 403
    assert post(mia, f"/agent/people/{w.admin.id}/delete").status_code == 403
    assert reload(w.other).deleted_at is not None and reload(w.reply).deleted_at is not None
    assert reload(bob).deleted_at is not None and reload(w.ann).deleted_at is None
    assert AuditEntry.select().where(AuditEntry.seq > audit_before,
                                     AuditEntry.action.in_(["restore", "purge", "delete"])).count() == 0
    # end users neither
    ann = signed_in(ctx, w.ann)
    assert ann.get("/agent/recycle-bin").status_code == 403
    assert post(ann, f"/agent/recycle-bin/tickets/{w.other.id}/restore").status_code == 403
    assert reload(w.other).deleted_at is not None


def test_each_bin_action_needs_its_own_permission(world, ctx):
    w = world
    admin = signed_in(ctx, w.admin)
    assert post(admin, f"/agent/tickets/{w.other.id}/delete").status_code == 302
    viewer = signed_in(ctx, agent_with(["tickets:view", "recycle_bin:view"], "Vera Viewer"))
    page = viewer.get("/agent/recycle-bin?module=tickets")
    assert page.status_code == 200 and f"#{w.other.id} Invoice question" in text(page)
    assert "/restore" not in text(page) and "/purge" not in text(page)
    assert post(viewer, f"/agent/recycle-bin/tickets/{w.other.id}/restore").status_code == 403
    assert post(viewer, f"/agent/recycle-bin/tickets/{w.other.id}/purge").status_code == 403

    rita = agent_with(["tickets:view", "recycle_bin:view", "tickets:restore"], "Rita Restorer")
    restorer = signed_in(ctx, rita)
    page = text(restorer.get("/agent/recycle-bin?module=tickets"))
    assert f"/agent/recycle-bin/tickets/{w.other.id}/restore" in page and "/purge" not in page
    assert post(restorer, f"/agent/recycle-bin/tickets/{w.other.id}/purge").status_code == 403
    assert post(restorer, f"/agent/recycle-bin/tickets/{w.other.id}/restore").status_code == 302
    assert reload(w.other).deleted_at is None
    assert [e.actor_id for e in entries("Ticket", w.other.id, "restore")] == [rita.id]

    # tickets:delete without recycle_bin:delete is not enough to purge
    assert post(admin, f"/agent/tickets/{w.other.id}/delete").status_code == 302
    half = signed_in(ctx, agent_with(["tickets:view", "tickets:delete", "recycle_bin:view"], "Hal"))
    assert post(half, f"/agent/recycle-bin/tickets/{w.other.id}/purge").status_code == 403
    purger = signed_in(ctx, agent_with(["tickets:view", "tickets:delete", "recycle_bin:view",
                                        "recycle_bin:delete"], "Paul Purger"))
    assert "Delete permanently" in text(purger.get("/agent/recycle-bin?module=tickets"))
    assert post(purger, f"/agent/recycle-bin/tickets/{w.other.id}/purge").status_code == 302
    assert Ticket.get_or_none(Ticket.id == w.other.id) is None
    purged = entries("Ticket", w.other.id, "purge")
    assert len(purged) == 1 and User.get_by_id(purged[0].actor_id).name == "Paul Purger"
    # a contacts:restore holder may restore contacts but not agents
    assert post(admin, f"/agent/people/{w.ann.id}/delete").status_code == 302
    assert post(admin, f"/agent/people/{w.mia.id}/delete").status_code == 302
    keeper = signed_in(ctx, agent_with(["recycle_bin:view", "contacts:view", "contacts:restore"],
                                       "Kim Keeper"))
    assert post(keeper, f"/agent/recycle-bin/agents/{w.mia.id}/restore").status_code == 403
    assert post(keeper, f"/agent/recycle-bin/contacts/{w.ann.id}/restore").status_code == 302
    assert reload(w.ann).deleted_at is None and reload(w.mia).deleted_at is not None


# -- guards ------------------------------------------------------------------------

def test_nobody_deletes_themself_nor_the_last_administrator(world, ctx):
    w = world
    admin = signed_in(ctx, w.admin)
    resp = post(admin, f"/agent/people/{w.admin.id}/delete")
    assert resp.status_code == 403
    assert reload(w.admin).deleted_at is None
    # a people manager may delete agents, but not the only administrator
    manager = agent_with(["agents:view", "agents:delete", "contacts:view", "contacts:delete"], "Max Manager")
    m = signed_in(ctx, manager)
    assert post(m, f"/agent/people/{manager.id}/delete").status_code == 403
    resp = post(m, f"/agent/people/{w.admin.id}/delete")
    assert resp.status_code == 409 and "last administrator" in text(resp)
    assert reload(w.admin).deleted_at is None
    assert admin.get("/agent/tickets").status_code == 200  # still signed in

    # with a second administrator the first may go; then the second is the last
    second = factories.admin(name="Bea Admin", email="bea@example.com")
    assert post(m, f"/agent/people/{w.admin.id}/delete").status_code == 302
    assert is_redirected_to_login(admin.get("/agent/tickets"))
    assert post(m, f"/agent/people/{second.id}/delete").status_code == 409
    assert reload(second).deleted_at is None
    # an inactive administrator does not count as another one
    third = factories.admin(name="Cy Admin")
    audit.update(audit.SYSTEM, third, is_active=False)
    assert post(m, f"/agent/people/{second.id}/delete").status_code == 409
    assert not entries("User", second.id, "delete")

    # unknown or already deleted people are not found; no CSRF token, no change
    assert post(m, "/agent/people/999999/delete").status_code == 404
    assert post(m, f"/agent/people/{w.admin.id}/delete").status_code == 404
    assert m.post(f"/agent/people/{w.mia.id}/delete").status_code == 400
    assert reload(w.mia).deleted_at is None


# -- retention ----------------------------------------------------------------------

def _purge_date_of(admin_browser, ticket) -> str:
    (row,) = bin_rows(admin_browser, "tickets")
    assert row["title"].startswith(f"#{ticket.id} ")
    return row["purge"]


def test_the_retention_setting_changes_purge_dates_and_is_audited(make_app):
    app = make_app(RETENTION_DAYS=10, LOGIN_ADDRESS_LIMIT="1000 per minute")
    with app.app_context():
        admin_user = factories.admin(name="Ada Admin")
        agent_user = factories.agent(name="Mia Agent")
        ann = factories.end_user()
        ticket = factories.ticket(ann, "Printer on fire")
        admin = signed_in(app, admin_user)
        assert post(admin, f"/agent/tickets/{ticket.id}/delete").status_code == 302
        deleted = reload(ticket).deleted_at
        assert _purge_date_of(admin, ticket) == (deleted + dt.timedelta(days=10)).strftime("%Y-%m-%d")
        assert "stay here for 10 days" in text(admin.get("/agent/recycle-bin"))
        assert 'value="10"' in text(admin.get("/agent/settings/privacy"))

        resp = post(admin, "/agent/settings/privacy", {"days": "30"})
        assert resp.status_code == 302
        assert _purge_date_of(admin, ticket) == (deleted + dt.timedelta(days=30)).strftime("%Y-%m-%d")
        assert "stay here for 30 days" in text(admin.get("/agent/recycle-bin"))
        assert 'value="30"' in text(admin.get("/agent/settings/privacy"))
        saved = entries("Setting", "retention_days", "create")
        assert len(saved) == 1 and saved[0].actor_id == admin_user.id
        assert audit.read_changes(saved[0])["value"] == [None, "30"]

        assert post(admin, "/agent/settings/privacy", {"days": "7"}).status_code == 302
        assert _purge_date_of(admin, ticket) == (deleted + dt.timedelta(days=7)).strftime("%Y-%m-%d")
        changed = entries("Setting", "retention_days", "update")
        assert len(changed) == 1 and audit.read_changes(changed[0])["value"] == ["30", "7"]

        audit_count = AuditEntry.select().count()
        for bad in ("0", "-1", "99999", "abc", "", "3.5"):
            resp = post(admin, "/agent/settings/privacy", {"days": bad})
            assert resp.status_code == 400, bad
            assert _purge_date_of(admin, ticket) == (deleted + dt.timedelta(days=7)).strftime("%Y-%m-%d"), bad
        assert json.loads(Setting.get_by_id("retention_days").value) == 7
        assert AuditEntry.select().count() == audit_count
        # without the CSRF token nothing changes either
        assert admin.post("/agent/settings/privacy", data={"days": "20"}).status_code == 400
        assert json.loads(Setting.get_by_id("retention_days").value) == 7

        # only administrators (settings:manage) may see or change it
        mia = signed_in(app, agent_user)
        assert mia.get("/agent/settings/privacy").status_code == 403
        assert post(mia, "/agent/settings/privacy", {"days": "1"}).status_code == 403
        assert json.loads(Setting.get_by_id("retention_days").value) == 7
