"""The agent desk: the ticket list and its filters, ticket scopes by role, one
ticket with its whole thread, replies, notes and properties, the Light Agent
role, deleting tickets and comments, the departments page, and the number of
SQL queries per page (which must not grow with the rows shown)."""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import re

import pytest

from desk import audit
from desk.models import AgentDepartment
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Department
from desk.models import MailMessage
from desk.models import Role
from desk.models import utcnow
from desk.services import attachments as files
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import FreshClient
from tests.conftest import csrf_token
from tests.conftest import signed_in


@pytest.fixture
def app(make_app):
    """The app, with room for the many sign-ins one test makes from one address."""
    return make_app(LOGIN_ADDRESS_LIMIT="1000 per minute")


# -- helpers -----------------------------------------------------------------


def post(browser, path: str, data: dict | None = None, **kwargs):
    """POST with the session's CSRF token (every page carries it in the footer;
    it stays the same for the whole session, so it is read once)."""
    token = getattr(browser, "desk_csrf", None) or csrf_token(browser, "/")
    browser.desk_csrf = token
    return browser.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)


AGENT_ROW = re.compile(r'<td><a href="/agent/tickets/(\d+)">')
PORTAL_ROW = re.compile(r'<td><a href="/my/tickets/(\d+)">')


def rows(resp, pattern=AGENT_ROW) -> list[int]:
    """Ticket ids of a list page, in the order shown."""
    assert resp.status_code == 200, resp.status_code
    return [int(i) for i in pattern.findall(resp.get_data(as_text=True))]


def ids(*tickets) -> set[int]:
    return {t.id for t in tickets}


def join(agent, department) -> None:
    audit.create(audit.SYSTEM, AgentDepartment, agent=agent, department=department)


def private_department(name: str) -> Department:
    return audit.create(audit.SYSTEM, Department, name=name, is_private=True)


def upload(name: str, data: bytes = b"file body\n") -> files.Upload:
    return files.Upload(filename=name, stream=io.BytesIO(data))


def on_disk(app, attachment: Attachment) -> bool:
    return files.exists(app.config, attachment.stored_name)


def entries(record_type: str, record_id, action: str | None = None) -> list[AuditEntry]:
    query = (AuditEntry.select()
             .where(AuditEntry.record_type == record_type, AuditEntry.record_id == str(record_id))
             .order_by(AuditEntry.seq))
    if action:
        query = query.where(AuditEntry.action == action)
    return list(query)


def reload(row):
    return type(row).get_by_id(row.id)


class _StatementLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        sql = record.msg[0] if isinstance(record.msg, tuple) else str(record.msg)
        self.statements.append(sql)


@contextlib.contextmanager
def counting_queries():
    """Every SQL statement peewee runs inside the block (peewee logs each one
    on the "peewee" logger at DEBUG)."""
    logger = logging.getLogger("peewee")
    handler, level = _StatementLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def queries_for(browser, path: str) -> tuple[list[str], str]:
    with counting_queries() as statements:
        resp = browser.get(path)
    assert resp.status_code == 200, resp.status_code
    return list(statements), resp.get_data(as_text=True)


# -- the list: default view, filters, sort, pages --------------------------------

def test_default_view_is_my_open_tickets_and_unassigned_ones_in_my_departments(ctx):
    me = factories.agent(name="Mia Me", email="me@example.com")
    other = factories.agent(name="Olaf Other")
    sales, support = factories.department("Sales"), factories.department("Support")
    join(me, support)
    join(other, sales)
    ann = factories.end_user(name="Ann Customer")
    mine = factories.ticket(ann, "assigned to me elsewhere", assignee=me, department=sales)
    unassigned_here = factories.ticket(ann, "unassigned in support", department=support)
    unassigned_nowhere = factories.ticket(ann, "unassigned, no department")
    closed = factories.ticket(ann, "mine but closed", assignee=me, status="closed")
    on_hold = factories.ticket(ann, "mine but on hold", assignee=me, status="on_hold")
    others = factories.ticket(ann, "assigned to someone else", assignee=other, department=support)
    elsewhere = factories.ticket(ann, "unassigned in sales", department=sales)
    factories.ticket(ann, "deleted", department=support, deleted_at=utcnow(), deleted_by=other.id)

    browser = signed_in(ctx, me)
    resp = browser.get("/agent/tickets")
    assert set(rows(resp)) == ids(mine, unassigned_here, unassigned_nowhere)
    page = resp.get_data(as_text=True)
    assert "Open tickets assigned to you, and unassigned ones in your departments." in page
    assert "3 tickets" in page

    everything = browser.get("/agent/tickets?view=all")
    assert set(rows(everything)) == ids(mine, unassigned_here, unassigned_nowhere, closed, on_hold, others)
    assert elsewhere.id not in rows(everything)
    assert "Open tickets assigned to you" not in everything.get_data(as_text=True)


@pytest.fixture
def catalogue(ctx):
    """Five tickets with different properties, as seen by an admin."""
    admin = factories.admin(name="Ada Admin", email="ada@example.com")
    other = factories.agent(name="Olaf Other")
    sales, support = factories.department("Sales"), factories.department("Support")
    ann = factories.end_user(name="Ann Customer", email="ann@example.com")
    bob = factories.end_user(name="Bob Customer", email="bob@example.com")
    zhang = factories.end_user(name="张伟 Zhang", email="zhang@example.com")
    t = {
        "t1": factories.ticket(ann, "Printer on fire", priority="urgent", department=sales, assignee=admin),
        "t2": factories.ticket(ann, "Cannot log in", status="closed", priority="low", department=support,
                               assignee=other),
        "t3": factories.ticket(bob, "Printer jammed", status="on_hold", priority="high"),
        "t4": factories.ticket(bob, "Invoice question", department=sales),
        "t5": factories.ticket(zhang, "发票问题 invoice", department=support, assignee=admin),
    }
    return {"admin": admin, "other": other, "sales": sales, "support": support, **t}


FILTER_CASES = [
    ("status=open", ["t1", "t4", "t5"]),
    ("status=on_hold", ["t3"]),
    ("status=closed", ["t2"]),
    ("priority=urgent", ["t1"]),
    ("priority=high", ["t3"]),
    ("department={sales}", ["t1", "t4"]),
    ("assignee=me", ["t1", "t5"]),
    ("assignee=none", ["t3", "t4"]),
    ("assignee={other}", ["t2"]),
    ("requester=ann@example.com", ["t1", "t2"]),
    ("requester=ANN@Example.COM", ["t1", "t2"]),
    ("requester=nobody@example.com", []),
    ("requester=Customer", ["t1", "t2", "t3", "t4"]),
    ("requester=bob", ["t3", "t4"]),
    ("requester=张伟", ["t5"]),
    ("q=printer", ["t1", "t3"]),
    ("q=PRINTER", ["t1", "t3"]),
    ("q=发票", ["t5"]),
    ("q=nothing+like+this", []),
    ("status=open&department={sales}&assignee=none", ["t4"]),
    ("status=open&priority=urgent&q=printer&requester=ann", ["t1"]),
]


def test_filters(catalogue, ctx):
    c = catalogue
    browser = signed_in(ctx, c["admin"])
    assert set(rows(browser.get("/agent/tickets?view=all"))) == ids(*(c[k] for k in ("t1", "t2", "t3", "t4", "t5")))
    for query, expected in FILTER_CASES:
        query = query.format(sales=c["sales"].id, other=c["other"].id)
        shown = rows(browser.get(f"/agent/tickets?{query}"))
        assert sorted(shown) == sorted(c[k].id for k in expected), query


def test_filter_form_keeps_the_chosen_values(catalogue, ctx):
    browser = signed_in(ctx, catalogue["admin"])
    page = browser.get(f"/agent/tickets?status=closed&priority=low&assignee={catalogue['other'].id}"
                       f"&department={catalogue['support'].id}&q=log&requester=ann").get_data(as_text=True)
    assert '<option value="closed" selected>' in page
    assert '<option value="low" selected>' in page
    assert f'<option value="{catalogue["support"].id}" selected>' in page
    assert f'<option value="{catalogue["other"].id}" selected>' in page
    assert 'name="q" value="log"' in page and 'name="requester" value="ann"' in page
    assert rows(browser.get(f"/agent/tickets?status=closed&priority=low&assignee={catalogue['other'].id}"
                            f"&department={catalogue['support'].id}&q=log&requester=ann")) == [catalogue["t2"].id]


def test_sort_orders(ctx):
    admin = factories.admin()
    ann = factories.end_user()
    day = dt.datetime(2024, 1, 1, 12, 0)
    a = factories.ticket(ann, "a", priority="low", created_at=day, updated_at=day + dt.timedelta(days=4))
    b = factories.ticket(ann, "b", priority="urgent", created_at=day + dt.timedelta(days=1),
                         updated_at=day + dt.timedelta(days=2))
    c = factories.ticket(ann, "c", priority="high", created_at=day + dt.timedelta(days=2),
                         updated_at=day + dt.timedelta(days=3))
    d = factories.ticket(ann, "d", priority="normal", created_at=day + dt.timedelta(days=3),
                         updated_at=day + dt.timedelta(days=1))
    browser = signed_in(ctx, admin)
    expected = {
        "": [a, c, b, d],
        "&sort=updated": [a, c, b, d],
        "&sort=created": [d, c, b, a],
        "&sort=oldest": [a, b, c, d],
        "&sort=priority": [b, c, d, a],
        "&sort=bogus": [a, c, b, d],
    }
    for suffix, order in expected.items():
        assert rows(browser.get(f"/agent/tickets?view=all{suffix}")) == [t.id for t in order], suffix


def test_pages_of_25(ctx):
    admin = factories.admin()
    ann = factories.end_user()
    start = dt.datetime(2024, 1, 1)
    with audit.transaction():
        made = [factories.ticket(ann, f"Ticket number {i}", updated_at=start + dt.timedelta(minutes=i))
                for i in range(30)]
    browser = signed_in(ctx, admin)
    first = browser.get("/agent/tickets?view=all")
    second = browser.get("/agent/tickets?view=all&page=2")
    assert rows(first) == [t.id for t in reversed(made)][:25]
    assert rows(second) == [t.id for t in reversed(made)][25:]
    assert "Page 1 of 2" in first.get_data(as_text=True) and "30 tickets" in first.get_data(as_text=True)
    assert "page=2" in first.get_data(as_text=True) and "view=all" in first.get_data(as_text=True)
    assert "Page 2 of 2" in second.get_data(as_text=True)
    assert rows(browser.get("/agent/tickets?view=all&page=-5")) == rows(first)
    assert rows(browser.get("/agent/tickets?view=all&page=3")) == []


HARMLESS_ARGS = [
    "status=bogus", "priority=bogus", "department=abc", "department=-1", "department=0",
    "department=99999999999", "assignee=abc", "assignee=-3", "assignee=99999999999",
    "requester=" + "x" * 5000, "q=" + "y" * 5000, "q=%25", "q=%27%3B+DROP+TABLE+ticket%3B--",
    "sort=bogus", "sort=", "view=bogus", "page=-5", "page=0", "page=abc", "page=99999999999",
    "page=1e9", "status=open&status=closed", "department=1.5",
]


def test_unknown_filter_values_never_fail(catalogue, ctx):
    browser = signed_in(ctx, catalogue["admin"])
    for args in HARMLESS_ARGS:
        resp = browser.get(f"/agent/tickets?{args}")
        assert resp.status_code == 200, (args, resp.status_code)
    # an unknown value is dropped: the list is not narrowed by it
    assert len(rows(browser.get("/agent/tickets?status=bogus"))) == 5


@pytest.mark.parametrize("args", ["department=%C2%B2", "assignee=%C2%B2", "department=" + "9" * 5000],
                         ids=["superscript-department", "superscript-assignee", "5000-digits"])
def test_digit_like_ids_that_are_not_numbers_never_fail(catalogue, ctx, args):
    browser = signed_in(ctx, catalogue["admin"])
    assert browser.get(f"/agent/tickets?{args}").status_code == 200


@pytest.mark.parametrize("args", ["department=99999999999999999999", "assignee=99999999999999999999"])
def test_ids_beyond_64_bits_in_filters_never_fail(catalogue, ctx, backend, request, args):
    browser = signed_in(ctx, catalogue["admin"])
    resp = browser.get(f"/agent/tickets?{args}")
    assert resp.status_code == 200
    assert len(rows(resp)) == 5  # an id out of range is dropped like any unknown value


@pytest.mark.parametrize("args", ["q=a%00b", "requester=a%00b"])
def test_search_text_with_nul_never_fails(catalogue, ctx, backend, request, args):
    browser = signed_in(ctx, catalogue["admin"])
    assert browser.get(f"/agent/tickets?{args}").status_code in (200, 400)


@pytest.fixture
def two_pages(ctx):
    admin = factories.admin()
    ann = factories.end_user()
    with audit.transaction():
        for i in range(30):
            factories.ticket(ann, f"Ticket {i}")
    return signed_in(ctx, admin)


def test_extra_query_arguments_never_fail(two_pages):
    for args in ("_scheme=javascript", "_external=1", "_anchor=x", "foo=bar"):
        assert two_pages.get(f"/agent/tickets?view=all&{args}").status_code == 200, args


@pytest.mark.parametrize("args", ["endpoint=x", "_method=POST"])
def test_query_arguments_named_like_url_for_parameters_never_fail(two_pages, args):
    assert two_pages.get(f"/agent/tickets?view=all&{args}").status_code == 200


def test_search_treats_percent_and_underscore_as_text(ctx):
    admin = factories.admin()
    ann = factories.end_user()
    literal = factories.ticket(ann, "Discount 50% off")
    factories.ticket(ann, "Discount 500 off")
    underscore = factories.ticket(ann, "file_name broken")
    factories.ticket(ann, "filename broken")
    browser = signed_in(ctx, admin)
    assert rows(browser.get("/agent/tickets?q=50%25")) == [literal.id]
    assert rows(browser.get("/agent/tickets?q=file_name")) == [underscore.id]


# -- scopes ------------------------------------------------------------------------

@pytest.fixture
def scoped(ctx):
    """Tickets in Support (mine), Sales (not mine), none, and a private Legal department."""
    me = factories.agent(name="Mia Me", email="me@example.com")
    other = factories.agent(name="Olaf Other")
    admin = factories.admin()
    support, sales = factories.department("Support"), factories.department("Sales")
    legal = private_department("Legal")
    join(me, support)
    join(other, sales)
    join(other, legal)
    ann = factories.end_user(name="Ann Customer")
    return {
        "me": me, "other": other, "admin": admin, "support": support, "sales": sales, "legal": legal,
        "ann": ann,
        "support_t": factories.ticket(ann, "in support", department=support),
        "support_other_t": factories.ticket(ann, "in support, Olaf's", department=support, assignee=other),
        "sales_t": factories.ticket(ann, "in sales", department=sales),
        "sales_mine_t": factories.ticket(ann, "in sales, mine", department=sales, assignee=me),
        "nodept_t": factories.ticket(ann, "no department"),
        "legal_t": factories.ticket(ann, "in legal", department=legal),
    }


def _visible(s, *names):
    return {s[n].id for n in names}


def test_departments_scope_sees_own_departments_and_no_department(scoped, ctx):
    s = scoped
    assert Role.get(Role.name == "Agent").ticket_scope == "departments"
    browser = signed_in(ctx, s["me"])
    assert set(rows(browser.get("/agent/tickets?view=all"))) == _visible(
        s, "support_t", "support_other_t", "nodept_t", "sales_mine_t")
    for name in ("support_t", "support_other_t", "nodept_t", "sales_mine_t"):
        assert browser.get(f"/agent/tickets/{s[name].id}").status_code == 200, name
    for name in ("sales_t", "legal_t"):
        ticket_id = s[name].id
        assert browser.get(f"/agent/tickets/{ticket_id}").status_code == 404, name
        assert post(browser, f"/agent/tickets/{ticket_id}/reply",
                    {"body": "hi", "visibility": "private"}).status_code == 404
        assert post(browser, f"/agent/tickets/{ticket_id}/properties",
                    {"status": "closed", "priority": "low", "department": 0, "assignee": 0}).status_code == 404
    # a filter cannot reach past the scope
    assert rows(browser.get(f"/agent/tickets?department={s['sales'].id}")) == [s["sales_mine_t"].id]
    assert Comment.select().count() == 0 and reload(s["sales_t"]).status == "open"


def test_assigned_scope_sees_only_tickets_assigned_to_them(scoped, ctx):
    s = scoped
    audit.update(audit.SYSTEM, Role.get(Role.name == "Agent"), ticket_scope="assigned")
    browser = signed_in(ctx, s["me"])
    assert rows(browser.get("/agent/tickets?view=all")) == [s["sales_mine_t"].id]
    assert rows(browser.get("/agent/tickets")) == [s["sales_mine_t"].id]
    assert browser.get(f"/agent/tickets/{s['sales_mine_t'].id}").status_code == 200
    for name in ("support_t", "nodept_t", "sales_t", "legal_t"):
        assert browser.get(f"/agent/tickets/{s[name].id}").status_code == 404, name


def test_all_scope_sees_everything_but_private_departments_they_are_not_in(scoped, ctx):
    s = scoped
    audit.create(audit.SYSTEM, Role, name="Supervisor", ticket_scope="all",
                 permissions=json.dumps(["tickets:view", "tickets:edit", "comments:view", "comments:create"]))
    boss = factories.agent(name="Sue Supervisor", role="Supervisor")
    browser = signed_in(ctx, boss)
    everything_but_legal = _visible(s, "support_t", "support_other_t", "sales_t", "sales_mine_t", "nodept_t")
    assert set(rows(browser.get("/agent/tickets?view=all"))) == everything_but_legal
    assert browser.get(f"/agent/tickets/{s['sales_t'].id}").status_code == 200
    assert browser.get(f"/agent/tickets/{s['legal_t'].id}").status_code == 404
    join(boss, s["legal"])
    assert set(rows(browser.get("/agent/tickets?view=all"))) == everything_but_legal | {s["legal_t"].id}
    assert browser.get(f"/agent/tickets/{s['legal_t'].id}").status_code == 200


def test_admin_sees_every_ticket(scoped, ctx):
    s = scoped
    browser = signed_in(ctx, s["admin"])
    assert set(rows(browser.get("/agent/tickets?view=all"))) == _visible(
        s, "support_t", "support_other_t", "sales_t", "sales_mine_t", "nodept_t", "legal_t")
    assert browser.get(f"/agent/tickets/{s['legal_t'].id}").status_code == 200


# -- one ticket ----------------------------------------------------------------------

@pytest.fixture
def conversation(ctx):
    """A ticket from Ann with a file, a public reply, a private note and Ann's answer, all with files."""
    me = factories.agent(name="Mia Me", email="me@example.com")
    other = factories.agent(name="Olaf Other", email="olaf@example.com")
    admin = factories.admin(name="Ada Admin")
    support = factories.department("Support")
    join(me, support)
    ann = factories.end_user(name="Ann Customer", email="ann@example.com")
    ticket = ticket_service.submit(ann, "Printer on fire", "Smoke everywhere", support.id,
                                   [upload("ticket-file.txt")])
    public = ticket_service.reply(me, ticket.id, "Public answer from Mia", True, [upload("reply-file.txt")])
    note = ticket_service.reply(me, ticket.id, "Secret note between agents", False, [upload("note-file.txt")])
    answer = ticket_service.reply(ann, ticket.id, "Ann answers back", True, [upload("ann-file.txt")])
    return {"me": me, "other": other, "admin": admin, "support": support, "ann": ann, "ticket": ticket,
            "public": public, "note": note, "answer": answer}


def test_ticket_page_shows_the_whole_thread_and_the_requester(conversation, ctx):
    c = conversation
    browser = signed_in(ctx, c["me"])
    resp = browser.get(f"/agent/tickets/{c['ticket'].id}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    for text in ("Printer on fire", "Smoke everywhere", "Public answer from Mia", "Secret note between agents",
                 "Ann answers back", "Private note", "Ann Customer", "ann@example.com",
                 "ticket-file.txt", "reply-file.txt", "note-file.txt", "ann-file.txt"):
        assert text in page, text
    assert page.index("Smoke everywhere") < page.index("Public answer from Mia") \
        < page.index("Secret note between agents") < page.index("Ann answers back")
    for row in Attachment.select():
        assert f'href="/attachments/{row.id}"' in page
    # the public-reply option and the properties form are there for a full agent
    assert 'value="public"' in page and 'value="private"' in page
    assert f'action="/agent/tickets/{c["ticket"].id}/properties"' in page
    # the requester's own page never shows the note
    mine = signed_in(ctx, c["ann"]).get(f"/my/tickets/{c['ticket'].id}").get_data(as_text=True)
    assert "Public answer from Mia" in mine and "Secret note between agents" not in mine
    assert "note-file.txt" not in mine


def test_reply_and_note_become_public_and_private_comments(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    browser = signed_in(ctx, c["me"])
    mails_before = MailMessage.select().where(MailMessage.recipient == "ann@example.com").count()

    resp = post(browser, f"/agent/tickets/{ticket.id}/reply",
                {"body": "We are on it", "visibility": "public",
                 "attachments": (io.BytesIO(b"log lines"), "log.txt")},
                content_type="multipart/form-data")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/agent/tickets/{ticket.id}#latest")
    reply = Comment.get(Comment.body == "We are on it")
    assert reply.is_public is True and reply.author_id == c["me"].id and reply.ticket_id == ticket.id
    created = entries("Comment", reply.id, "create")
    assert len(created) == 1 and created[0].actor_id == c["me"].id
    assert audit.read_changes(created[0])["body"] == [None, "We are on it"]
    assert audit.read_changes(created[0])["is_public"] == [None, True]
    stored = Attachment.get(Attachment.comment == reply.id)
    assert stored.filename == "log.txt" and on_disk(ctx, stored)
    assert MailMessage.select().where(MailMessage.recipient == "ann@example.com").count() == mails_before + 1

    resp = post(browser, f"/agent/tickets/{ticket.id}/reply", {"body": "Ann is grumpy", "visibility": "private"})
    assert resp.status_code == 302
    note = Comment.get(Comment.body == "Ann is grumpy")
    assert note.is_public is False and note.author_id == c["me"].id
    created = entries("Comment", note.id, "create")
    assert len(created) == 1 and audit.read_changes(created[0])["is_public"] == [None, False]
    # the requester is not told of a note
    assert MailMessage.select().where(MailMessage.recipient == "ann@example.com").count() == mails_before + 1

    page = browser.get(f"/agent/tickets/{ticket.id}").get_data(as_text=True)
    assert "We are on it" in page and "Ann is grumpy" in page and "log.txt" in page
    ann_page = signed_in(ctx, c["ann"]).get(f"/my/tickets/{ticket.id}").get_data(as_text=True)
    assert "We are on it" in ann_page and "Ann is grumpy" not in ann_page


def test_empty_reply_is_refused(conversation, ctx):
    c = conversation
    browser = signed_in(ctx, c["me"])
    before = Comment.select().count()
    resp = post(browser, f"/agent/tickets/{c['ticket'].id}/reply", {"body": "   ", "visibility": "public"})
    assert resp.status_code == 400
    resp = post(browser, f"/agent/tickets/{c['ticket'].id}/reply", {"body": "hi", "visibility": "shouting"})
    assert resp.status_code == 400
    assert Comment.select().count() == before


def test_properties_change_each_value_with_an_audit_entry(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    sales = factories.department("Sales")
    browser = signed_in(ctx, c["me"])
    resp = post(browser, f"/agent/tickets/{ticket.id}/properties",
                {"status": "on_hold", "priority": "urgent", "department": sales.id, "assignee": c["other"].id})
    assert resp.status_code == 302
    fresh = reload(ticket)
    assert (fresh.status, fresh.priority, fresh.department_id, fresh.assignee_id) == \
        ("on_hold", "urgent", sales.id, c["other"].id)
    entry = entries("Ticket", ticket.id, "update")[-1]
    assert entry.actor_id == c["me"].id
    changes = audit.read_changes(entry)
    assert changes["status"] == ["open", "on_hold"]
    assert changes["priority"] == ["normal", "urgent"]
    assert changes["department"] == [c["support"].id, sales.id]
    assert changes["assignee"][0] is None and changes["assignee"][1] is not None
    # the new assignee is told
    told = MailMessage.get(MailMessage.recipient == "olaf@example.com")
    assert f"#{ticket.id}" in told.subject and f"/agent/tickets/{ticket.id}" in told.body

    # back to no department and nobody, as an admin
    admin = signed_in(ctx, c["admin"])
    assert post(admin, f"/agent/tickets/{ticket.id}/properties",
                {"status": "closed", "priority": "urgent", "department": 0, "assignee": 0}).status_code == 302
    fresh = reload(ticket)
    assert (fresh.status, fresh.department_id, fresh.assignee_id) == ("closed", None, None)
    changes = audit.read_changes(entries("Ticket", ticket.id, "update")[-1])
    assert changes == {"status": ["on_hold", "closed"], "department": [sales.id, None],
                       "assignee": [c["other"].id, None]}



def test_new_assignee_is_audited_as_an_id(conversation, ctx):
    c = conversation
    browser = signed_in(ctx, c["me"])
    assert post(browser, f"/agent/tickets/{c['ticket'].id}/properties",
                {"status": "open", "priority": "normal", "department": c["support"].id,
                 "assignee": c["other"].id}).status_code == 302
    entry = entries("Ticket", c["ticket"].id, "update")[-1]
    assert reload(c["other"]).session_token not in entry.changes
    assert audit.read_changes(entry) == {"assignee": [None, c["other"].id]}


def test_saving_unchanged_properties_changes_nothing(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    audit.update(audit.SYSTEM, ticket, assignee=c["other"])
    browser = signed_in(ctx, c["me"])
    updates = len(entries("Ticket", ticket.id, "update"))
    resp = post(browser, f"/agent/tickets/{ticket.id}/properties",
                {"status": "open", "priority": "normal", "department": c["support"].id,
                 "assignee": c["other"].id}, follow_redirects=True)
    assert resp.status_code == 200 and "Nothing changed." in resp.get_data(as_text=True)
    assert len(entries("Ticket", ticket.id, "update")) == updates
    assert MailMessage.select().where(MailMessage.recipient == "olaf@example.com").count() == 0


def test_assigning_to_myself_sends_no_mail(conversation, ctx):
    c = conversation
    browser = signed_in(ctx, c["me"])
    assert post(browser, f"/agent/tickets/{c['ticket'].id}/properties",
                {"status": "open", "priority": "normal", "department": c["support"].id,
                 "assignee": c["me"].id}).status_code == 302
    assert reload(c["ticket"]).assignee_id == c["me"].id
    assert MailMessage.select().where(MailMessage.recipient == "me@example.com").count() == 0


def test_invalid_properties_are_refused_and_change_nothing(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    browser = signed_in(ctx, c["me"])
    good = {"status": "open", "priority": "high", "department": c["support"].id, "assignee": c["other"].id}
    bad_values = [
        {"priority": "bogus"}, {"status": "bogus"}, {"assignee": c["ann"].id}, {"department": 999999},
        {"assignee": 999999}, {"department": "abc"}, {"assignee": ""}, {"status": ""},
    ]
    updates_before = len(entries("Ticket", ticket.id, "update"))
    for bad in bad_values:
        resp = post(browser, f"/agent/tickets/{ticket.id}/properties", {**good, **bad})
        assert resp.status_code == 400, bad
        assert 'class="field-errors"' in resp.get_data(as_text=True), bad
        fresh = reload(ticket)
        assert (fresh.status, fresh.priority, fresh.department_id, fresh.assignee_id) == \
            ("open", "normal", c["support"].id, None), bad
    assert len(entries("Ticket", ticket.id, "update")) == updates_before
    assert MailMessage.select().where(MailMessage.recipient == "olaf@example.com").count() == 0


# -- Light Agent ---------------------------------------------------------------------

def test_light_agent_may_read_and_add_notes_only(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    light = factories.agent(name="Lee Light", role="Light Agent")
    join(light, c["support"])
    browser = signed_in(ctx, light)

    assert ticket.id in rows(browser.get("/agent/tickets"))
    resp = browser.get(f"/agent/tickets/{ticket.id}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "Secret note between agents" in page and "note-file.txt" in page
    assert 'value="private"' in page and 'value="public"' not in page
    assert "/properties" not in page and "Move to recycle bin" not in page
    assert f"/comments/{c['public'].id}/delete" not in page

    assert post(browser, f"/agent/tickets/{ticket.id}/reply",
                {"body": "Light note", "visibility": "private"}).status_code == 302
    note = Comment.get(Comment.body == "Light note")
    assert note.is_public is False and note.author_id == light.id
    assert len(entries("Comment", note.id, "create")) == 1

    mails = MailMessage.select().count()
    updates = len(entries("Ticket", ticket.id, "update"))
    assert post(browser, f"/agent/tickets/{ticket.id}/reply",
                {"body": "Light reply", "visibility": "public"}).status_code == 403
    assert not Comment.select().where(Comment.body == "Light reply").exists()
    assert MailMessage.select().count() == mails

    assert post(browser, f"/agent/tickets/{ticket.id}/properties",
                {"status": "closed", "priority": "urgent", "department": c["support"].id,
                 "assignee": light.id}).status_code == 403
    assert post(browser, f"/agent/tickets/{ticket.id}/delete").status_code == 403
    assert post(browser, f"/agent/tickets/{ticket.id}/comments/{c['public'].id}/delete").status_code == 403
    fresh = reload(ticket)
    assert (fresh.status, fresh.priority, fresh.assignee_id, fresh.deleted_at) == ("open", "normal", None, None)
    assert reload(c["public"]).deleted_at is None
    assert len(entries("Ticket", ticket.id, "update")) == updates


def test_light_agent_properties_post_is_forbidden_even_with_bad_values(conversation, ctx):
    c = conversation
    light = factories.agent(name="Lee Light", role="Light Agent")
    join(light, c["support"])
    browser = signed_in(ctx, light)
    assert post(browser, f"/agent/tickets/{c['ticket'].id}/properties", {"priority": "bogus"}).status_code == 403


# -- delete --------------------------------------------------------------------------

def test_deleting_a_ticket_hides_it_and_keeps_row_and_files(conversation, ctx):
    c = conversation
    ticket = c["ticket"]
    admin, agent, ann = signed_in(ctx, c["admin"]), signed_in(ctx, c["me"]), signed_in(ctx, c["ann"])
    attachments = list(Attachment.select().where(Attachment.ticket == ticket.id))
    assert len(attachments) == 4
    assert ticket.id in rows(admin.get("/agent/tickets?view=all"))
    assert ticket.id in rows(ann.get("/my/tickets"), PORTAL_ROW)

    # an agent without tickets:delete cannot
    assert post(agent, f"/agent/tickets/{ticket.id}/delete").status_code == 403
    assert reload(ticket).deleted_at is None

    resp = post(admin, f"/agent/tickets/{ticket.id}/delete")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/tickets")

    assert ticket.id not in rows(admin.get("/agent/tickets?view=all"))
    assert ticket.id not in rows(agent.get("/agent/tickets"))
    assert ticket.id not in rows(ann.get("/my/tickets"), PORTAL_ROW)
    assert admin.get(f"/agent/tickets/{ticket.id}").status_code == 404
    assert agent.get(f"/agent/tickets/{ticket.id}").status_code == 404
    assert ann.get(f"/my/tickets/{ticket.id}").status_code == 404
    assert post(admin, f"/agent/tickets/{ticket.id}/delete").status_code == 404
    for row in attachments:
        assert ann.get(f"/attachments/{row.id}").status_code == 404
        assert admin.get(f"/attachments/{row.id}").status_code == 404
        assert on_disk(ctx, row)

    kept = reload(ticket)
    assert kept.deleted_at is not None and kept.deleted_by == c["admin"].id
    deletion = entries("Ticket", ticket.id, "delete")
    assert len(deletion) == 1 and deletion[0].actor_id == c["admin"].id
    assert audit.read_changes(deletion[0])["deleted_by"] == [None, c["admin"].id]
    assert Comment.select().where(Comment.ticket == ticket.id).count() == 3


def test_deleting_a_comment_hides_it_from_both_threads_and_keeps_row_and_file(conversation, ctx):
    c = conversation
    ticket, public = c["ticket"], c["public"]
    admin, agent, ann = signed_in(ctx, c["admin"]), signed_in(ctx, c["me"]), signed_in(ctx, c["ann"])
    file_row = Attachment.get(Attachment.comment == public.id)
    assert ann.get(f"/attachments/{file_row.id}").status_code == 200

    assert post(agent, f"/agent/tickets/{ticket.id}/comments/{public.id}/delete").status_code == 403
    assert reload(public).deleted_at is None
    # a comment id under another ticket is not found
    elsewhere = factories.ticket(c["ann"], "another ticket")
    assert post(admin, f"/agent/tickets/{elsewhere.id}/comments/{public.id}/delete").status_code == 404

    resp = post(admin, f"/agent/tickets/{ticket.id}/comments/{public.id}/delete")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/agent/tickets/{ticket.id}")

    for browser, path in ((admin, f"/agent/tickets/{ticket.id}"), (agent, f"/agent/tickets/{ticket.id}"),
                          (ann, f"/my/tickets/{ticket.id}")):
        page = browser.get(path).get_data(as_text=True)
        assert "Public answer from Mia" not in page and "reply-file.txt" not in page, path
        assert "Ann answers back" in page, path
    assert ann.get(f"/attachments/{file_row.id}").status_code == 404
    assert admin.get(f"/attachments/{file_row.id}").status_code == 404
    assert on_disk(ctx, file_row)
    kept = reload(public)
    assert kept.deleted_at is not None and kept.deleted_by == c["admin"].id
    assert reload(file_row).id == file_row.id
    assert len(entries("Comment", public.id, "delete")) == 1
    assert post(admin, f"/agent/tickets/{ticket.id}/comments/{public.id}/delete").status_code == 404


# -- who may open the desk at all -------------------------------------------------------

def _agent_urls(app, ticket_id: int, comment_id: int, department_id: int, agent_id: int):
    values = {"ticket_id": ticket_id, "comment_id": comment_id, "department_id": department_id,
              "agent_id": agent_id}
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/agent"):
            continue
        path = rule.rule
        for name in rule.arguments:
            choices = sorted(getattr(rule._converters[name], "items", ()))
            value = values.get(name, choices[0] if choices else 1)
            path = re.sub(r"<(?:[^<>]+:)?%s>" % name, str(value), path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def test_end_users_are_refused_and_anonymous_visitors_sent_to_sign_in(conversation, ctx):
    c = conversation
    urls = _agent_urls(ctx, c["ticket"].id, c["public"].id, c["support"].id, c["me"].id)
    assert ("GET", "/agent/tickets") in urls and ("POST", f"/agent/tickets/{c['ticket'].id}/delete") in urls
    assert len(urls) >= 9
    ann = signed_in(ctx, c["ann"])
    ctx.test_client_class = FreshClient
    nobody = ctx.test_client()
    for method, path in urls:
        if method == "GET":
            assert ann.get(path).status_code == 403, path
            resp = nobody.get(path)
        else:
            data = {"body": "x", "visibility": "public", "status": "closed", "priority": "low",
                    "department": 0, "assignee": 0, "agent": c["me"].id, "name": "Hacked"}
            assert post(ann, path, data).status_code == 403, path
            resp = post(nobody, path, data)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], (method, path)
    fresh = reload(c["ticket"])
    assert (fresh.status, fresh.deleted_at) == ("open", None)
    assert reload(c["public"]).deleted_at is None
    assert not Department.select().where(Department.name == "Hacked").exists()
    assert AgentDepartment.select().where(AgentDepartment.agent == c["me"].id).count() == 1


# -- departments ---------------------------------------------------------------------

def test_admin_manages_departments_and_members(ctx):
    admin = factories.admin(name="Ada Admin")
    agent = factories.agent(name="Mia Me", email="me@example.com")
    browser = signed_in(ctx, admin)
    assert browser.get("/agent/settings/departments").status_code == 200

    resp = post(browser, "/agent/settings/departments", {"name": "  Billing  "})
    assert resp.status_code == 302
    dept = Department.get(Department.name == "Billing")
    assert dept.is_private is False
    created = entries("Department", dept.id, "create")
    assert len(created) == 1 and created[0].actor_id == admin.id
    assert audit.read_changes(created[0])["name"] == [None, "Billing"]

    resp = post(browser, "/agent/settings/departments", {"name": "Billing"})
    assert resp.status_code == 409
    assert "A department with this name already exists." in resp.get_data(as_text=True)
    for empty in ("", "   "):
        resp = post(browser, "/agent/settings/departments", {"name": empty})
        assert resp.status_code == 400
        assert "Enter a name." in resp.get_data(as_text=True)
    assert Department.select().count() == 1

    assert post(browser, "/agent/settings/departments", {"name": "Legal", "is_private": "y"}).status_code == 302
    assert Department.get(Department.name == "Legal").is_private is True

    resp = post(browser, f"/agent/settings/departments/{dept.id}/members", {"agent": agent.id})
    assert resp.status_code == 302
    assert AgentDepartment.select().where(AgentDepartment.agent == agent.id,
                                          AgentDepartment.department == dept.id).exists()
    added = entries("AgentDepartment", f"{agent.id}:{dept.id}", "create")
    assert len(added) == 1 and added[0].actor_id == admin.id
    page = browser.get("/agent/settings/departments").get_data(as_text=True)
    assert "Mia Me" in page and "me@example.com" in page
    assert f"/agent/settings/departments/{dept.id}/members/{agent.id}/remove" in page
    # adding twice changes nothing
    assert post(browser, f"/agent/settings/departments/{dept.id}/members", {"agent": agent.id}).status_code == 302
    assert AgentDepartment.select().count() == 1
    # an end user or an unknown id cannot be added
    ann = factories.end_user()
    assert post(browser, f"/agent/settings/departments/{dept.id}/members", {"agent": ann.id}).status_code == 400
    assert post(browser, f"/agent/settings/departments/{dept.id}/members", {"agent": "abc"}).status_code == 400
    assert post(browser, "/agent/settings/departments/999999/members", {"agent": agent.id}).status_code == 404
    assert AgentDepartment.select().count() == 1

    resp = post(browser, f"/agent/settings/departments/{dept.id}/members/{agent.id}/remove")
    assert resp.status_code == 302
    assert AgentDepartment.select().count() == 0
    removed = entries("AgentDepartment", f"{agent.id}:{dept.id}", "delete")
    assert len(removed) == 1 and removed[0].actor_id == admin.id
    assert post(browser, f"/agent/settings/departments/{dept.id}/members/{agent.id}/remove").status_code == 404


def test_normal_agent_cannot_manage_departments(ctx):
    agent = factories.agent()
    dept = factories.department("Support")
    join(agent, dept)
    browser = signed_in(ctx, agent)
    assert browser.get("/agent/settings/departments").status_code == 403
    assert post(browser, "/agent/settings/departments", {"name": "Mine now"}).status_code == 403
    assert post(browser, f"/agent/settings/departments/{dept.id}/members", {"agent": agent.id}).status_code == 403
    assert post(browser, f"/agent/settings/departments/{dept.id}/members/{agent.id}/remove").status_code == 403
    assert Department.select().count() == 1 and AgentDepartment.select().count() == 1
    assert "/agent/settings/departments" not in browser.get("/agent/tickets").get_data(as_text=True)


# -- query counts ----------------------------------------------------------------------

def _many_tickets(requesters, agents, departments, n, offset=0):
    with audit.transaction():
        for i in range(offset, offset + n):
            factories.ticket(requesters[i % len(requesters)], f"Ticket {i}",
                             assignee=agents[i % (len(agents) + 1) - 1] if i % (len(agents) + 1) else None,
                             department=departments[i % len(departments)] if i % 3 else None,
                             priority=("low", "normal", "high", "urgent")[i % 4])


def test_my_tickets_query_count_does_not_grow_with_rows(ctx):
    ann = factories.end_user(name="Ann Customer")
    agents = [factories.agent() for _ in range(3)]
    departments = [factories.department() for _ in range(3)]
    _many_tickets([ann], agents, departments, 5)
    browser = signed_in(ctx, ann)
    few, page = queries_for(browser, "/my/tickets")
    assert len(PORTAL_ROW.findall(page)) == 5
    _many_tickets([ann], agents, departments, 45, offset=5)
    full, page = queries_for(browser, "/my/tickets")
    assert len(PORTAL_ROW.findall(page)) == 25
    second, page = queries_for(browser, "/my/tickets?page=2")
    assert len(PORTAL_ROW.findall(page)) == 25
    assert any("ticket" in sql for sql in few)  # the counter does see the list query
    assert len(few) == len(full) == len(second), (few, full)


def test_agent_list_query_count_does_not_grow_with_rows(ctx):
    admin = factories.admin()
    requesters = [factories.end_user() for _ in range(4)]
    agents = [factories.agent() for _ in range(3)]
    departments = [factories.department() for _ in range(3)]
    _many_tickets(requesters, agents, departments, 5)
    browser = signed_in(ctx, admin)
    few, page = queries_for(browser, "/agent/tickets?view=all")
    assert len(AGENT_ROW.findall(page)) == 5
    _many_tickets(requesters, agents, departments, 45, offset=5)
    full, page = queries_for(browser, "/agent/tickets?view=all")
    assert len(AGENT_ROW.findall(page)) == 25
    second, page = queries_for(browser, "/agent/tickets?view=all&page=2")
    assert len(AGENT_ROW.findall(page)) == 25
    assert any("ticket" in sql for sql in few)  # the counter does see the list query
    assert len(few) == len(full) == len(second), (few, full)


def test_agent_ticket_page_query_count_does_not_grow_with_comments(ctx):
    admin = factories.admin()
    agents = [factories.agent() for _ in range(2)]
    ann = factories.end_user(name="Ann Customer")
    ticket = ticket_service.submit(ann, "Long story", "It began", None, [upload("start.txt")])

    def add_comments(start, n):
        for i in range(start, start + n):
            author = (agents[0], agents[1], ann)[i % 3]
            ticket_service.reply(author, ticket.id, f"Comment body {i}", author is ann or i % 2 == 0,
                                 [upload(f"file-{i}.txt")])

    add_comments(0, 2)
    browser = signed_in(ctx, admin)
    few, page = queries_for(browser, f"/agent/tickets/{ticket.id}")
    assert page.count("Comment body ") == 2
    add_comments(2, 10)
    many, page = queries_for(browser, f"/agent/tickets/{ticket.id}")
    assert page.count("Comment body ") == 12 and "file-11.txt" in page and "start.txt" in page
    assert any("comment" in sql for sql in few) and any("attachment" in sql for sql in few)
    assert len(few) == len(many), (few, many)
