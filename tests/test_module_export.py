"""CSV exports of each module (/agent/export/<module>.csv), on both databases:
values round-trip, permissions and sharing scope hold, hidden fields are left
out, the rows are the list's rows, bad input gets a clear 4xx, and every
export is audited."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from desk import audit
from desk.models import AgentDepartment
from desk.models import AuditEntry
from desk.models import Role
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS

HOSTILE = "=cmd|' /C calc'!A0 引号 \"quoted\", comma\nsecond line 🎉"


APP_CONFIG = MANY_SIGN_INS


def rows_of(resp, keys: bool = True) -> list[dict]:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    data = resp.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def role(name, permissions, scope="all", fields=None) -> Role:
    return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(sorted(permissions)),
                        ticket_scope=scope, field_permissions=json.dumps(fields or {}))


def unguard(value: str) -> str:
    return value[1:] if value.startswith("'=") else value


@pytest.fixture
def data(ctx):
    admin = factories.admin(name="Ada Admin 管理员")
    dept = factories.department("支持 Support")
    customer = factories.end_user(name="=Zoë 客户 🎉", email="zoe@example.com")
    audit.update(audit.SYSTEM, customer, title='He said "hi", then\nleft')
    ticket = ticket_service.submit(customer, "=HYPERLINK(\"x\") 退款 refund", HOSTILE, dept.id)
    other = ticket_service.submit(customer, "Second ticket", "plain", dept.id)
    reply = ticket_service.reply(admin, ticket.id, HOSTILE, True)
    note = ticket_service.reply(admin, ticket.id, "private note", False)
    return {"admin": admin, "dept": dept, "customer": customer, "ticket": ticket, "other": other,
            "reply": reply, "note": note}


def test_every_module_round_trips_its_values(ctx, data):
    client = signed_in(ctx, data["admin"])
    tickets = rows_of(client.get("/agent/export/tickets.csv?header=keys&view=all"))
    by_id = {int(r["id"]): r for r in tickets}
    t = by_id[data["ticket"].id]
    assert t["subject"] == "'" + data["ticket"].subject
    assert unguard(t["description"]) == HOSTILE
    assert t["department"] == "支持 Support" and t["requester"] == "'=Zoë 客户 🎉"
    assert t["requester_email"] == "zoe@example.com" and t["status"] == "open"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t["created_at"])

    comments = rows_of(client.get("/agent/export/comments.csv?header=keys&view=all"))
    mine = [c for c in comments if int(c["ticket_id"]) == data["ticket"].id]
    assert [int(c["id"]) for c in mine] == [data["reply"].id, data["note"].id]
    assert unguard(mine[0]["body"]) == HOSTILE and mine[0]["public"] == "true"
    assert mine[1]["public"] == "false"

    contacts = rows_of(client.get("/agent/export/contacts.csv?header=keys"))
    assert [c["email"] for c in contacts] == ["zoe@example.com"]
    assert contacts[0]["name"] == "'=Zoë 客户 🎉"
    assert contacts[0]["title"] == 'He said "hi", then\nleft'

    agents = rows_of(client.get("/agent/export/agents.csv?header=keys"))
    assert [a["name"] for a in agents] == ["Ada Admin 管理员"]
    assert agents[0]["role"] == "Administrator" and agents[0]["active"] == "true"

    departments = rows_of(client.get("/agent/export/departments.csv?header=keys"))
    assert [(d["name"], d["private"], d["members"]) for d in departments] == [("支持 Support", "false", "0")]

    entries = rows_of(client.get("/agent/export/audit.csv?header=keys&record=comment:%d" % data["reply"].id))
    assert [e["action"] for e in entries] == ["create"]
    changes = json.loads(entries[0]["changes"])
    assert changes["body"] == [None, HOSTILE]  # sealed in the log, opened for an admin


def test_header_is_translated_for_the_exporter(ctx, data):
    client = signed_in(ctx, data["admin"])
    zh = client.get("/agent/export/tickets.csv", headers={"Accept-Language": "zh-CN"}).get_data()
    en = client.get("/agent/export/tickets.csv", headers={"Accept-Language": "en"}).get_data()
    zh_header = zh.decode("utf-8-sig").splitlines()[0]
    en_header = en.decode("utf-8-sig").splitlines()[0]
    assert en_header.startswith("Ticket,Subject,Description,Status")
    assert zh_header != en_header and "主题" in zh_header


def test_export_rows_equal_the_list_rows_for_the_same_filters(ctx, data):
    customer = data["customer"]
    for i in range(30):
        factories.ticket(customer, f"refund {i}" if i % 3 else f"other {i}", department=data["dept"],
                         status="open" if i % 2 else "closed", priority="high" if i % 4 else "low")
    agent = factories.agent(name="Abe Agent")
    audit.create(audit.SYSTEM, AgentDepartment, agent=agent, department=data["dept"])
    client = signed_in(ctx, agent)
    for args in ("status=open&q=refund", "view=all&sort=oldest", "priority=high&sort=priority",
                 "", "assignee=none&view=all&requester=zoe@example.com"):
        listed = []
        for page in (1, 2, 3):
            html = client.get(f"/agent/tickets?{args}&page={page}").get_data(as_text=True)
            listed += [int(i) for i in re.findall(r'<a href="/agent/tickets/(\d+)">', html)]
        exported = [int(r["id"]) for r in rows_of(client.get(f"/agent/export/tickets.csv?header=keys&{args}"))]
        assert exported == listed and exported, args


def test_a_scoped_role_exports_only_the_tickets_it_may_see(ctx, data):
    scoped = role("Scoped exporter", {"tickets:view", "tickets:export", "comments:view",
                                      "comments:export"}, scope="assigned")
    me = factories.agent(name="Sam Scoped", role=scoped.name)
    mine = factories.ticket(data["customer"], "Assigned to me", assignee=me)
    ticket_service.reply(data["admin"], mine.id, "on my ticket", True)
    client = signed_in(ctx, me)
    ids = [int(r["id"]) for r in rows_of(client.get("/agent/export/tickets.csv?header=keys&view=all"))]
    assert ids == [mine.id]
    comments = rows_of(client.get("/agent/export/comments.csv?header=keys&view=all"))
    assert {int(c["ticket_id"]) for c in comments} == {mine.id}


def test_a_hidden_field_is_left_out_not_blanked(ctx, data):
    hiding = role("No descriptions", {"tickets:view", "tickets:export", "contacts:view", "contacts:export"},
                  fields={"tickets.description": "hidden", "contacts.email": "hidden"})
    client = signed_in(ctx, factories.agent(role=hiding.name))
    tickets = client.get("/agent/export/tickets.csv?header=keys&view=all").get_data()
    header = tickets.decode("utf-8-sig").splitlines()[0].split(",")
    assert "description" not in header and "subject" in header
    assert "requester_email" not in header and b"zoe@example.com" not in tickets
    assert HOSTILE.split("\n")[1].encode() not in tickets
    contacts = client.get("/agent/export/contacts.csv?header=keys").get_data()
    assert b"email" not in contacts.splitlines()[0] and b"zoe@example.com" not in contacts


def test_private_notes_are_left_out_for_who_may_not_see_them(ctx, data):
    outsider = role("Ticket exporter", {"tickets:view", "comments:export"})
    client = signed_in(ctx, factories.agent(role=outsider.name))
    bodies = [c["body"] for c in rows_of(client.get("/agent/export/comments.csv?header=keys&view=all"))]
    assert "private note" not in bodies and len(bodies) == 1


def test_audit_values_are_withheld_from_who_may_not_read_the_log(ctx, data):
    exporter = role("Audit exporter", {"audit:export", "tickets:view", "comments:view"})
    client = signed_in(ctx, factories.agent(role=exporter.name))
    entries = rows_of(client.get("/agent/export/audit.csv?header=keys&record=comment:%d" % data["reply"].id))
    assert json.loads(entries[0]["changes"])["body"] == [None, "[withheld]"]
    assert HOSTILE.encode() not in client.get("/agent/export/audit.csv").get_data()


@pytest.mark.parametrize("path,status", [
    ("/agent/export/everything.csv", 404),
    ("/agent/export/tickets.json", 404),
    ("/agent/export/tickets.csv?status=bogus", 400),
    ("/agent/export/tickets.csv?department=abc", 400),
    ("/agent/export/tickets.csv?header=fancy", 400),
    ("/agent/export/audit.csv?since=yesterday", 400),
    ("/agent/export/audit.csv?record=planet:3", 400),
    ("/agent/export/contacts.csv?q=" + "x" * 300, 400),
])
def test_bad_input_gets_a_clear_4xx_and_no_file(ctx, data, path, status):
    client = signed_in(ctx, data["admin"])
    before = AuditEntry.select().where(AuditEntry.action == "export").count()
    resp = client.get(path)
    assert resp.status_code == status and resp.mimetype == "text/html"
    assert AuditEntry.select().where(AuditEntry.action == "export").count() == before


def test_no_permission_is_403_and_unaudited(ctx, data):
    client = signed_in(ctx, factories.agent())  # the Agent role may export tickets only
    for module in ("comments", "contacts", "agents", "departments", "audit"):
        assert client.get(f"/agent/export/{module}.csv").status_code == 403
    assert client.get("/agent/export/tickets.csv").get_data().startswith(b"\xef\xbb\xbf")
    assert signed_in(ctx, data["customer"]).get("/agent/export/tickets.csv").status_code == 403
    assert AuditEntry.select().where(AuditEntry.action == "export").count() == 1


def test_every_export_is_audited_without_the_words_searched_for(ctx, data):
    client = signed_in(ctx, data["admin"])
    rows = rows_of(client.get("/agent/export/tickets.csv?status=open&q=refund&requester=zoe@example.com"))
    entry = AuditEntry.select().where(AuditEntry.action == "export").order_by(AuditEntry.seq.desc()).get()
    assert entry.actor_id == data["admin"].id and entry.record_id == "tickets"
    details = json.loads(entry.changes)
    assert details["module"] == "tickets" and details["rows"] == len(rows) == 1
    assert details["filters"] == {"status": "open", "q": "[words]", "requester": "[words]"}
    assert "refund" not in entry.changes and "zoe" not in entry.changes


def test_the_list_pages_offer_the_export_with_their_filters(ctx, data):
    client = signed_in(ctx, data["admin"])
    html = client.get("/agent/tickets?status=open&q=refund").get_data(as_text=True)
    assert "/agent/export/tickets.csv?status=open&amp;q=refund" in html
    assert "/agent/export/comments.csv?status=open&amp;q=refund" in html
    assert "/agent/export/contacts.csv?q=zo" in client.get("/agent/contacts?q=zo").get_data(as_text=True)
    assert "/agent/export/agents.csv" in client.get("/agent/agents").get_data(as_text=True)
    assert "/agent/export/departments.csv" in client.get("/agent/settings/departments").get_data(as_text=True)
    agent_page = signed_in(ctx, factories.agent()).get("/agent/contacts").get_data(as_text=True)
    assert "/agent/export/contacts.csv" not in agent_page


def test_on_postgresql_the_database_writes_the_csv_itself_and_a_client_may_leave(ctx, data):
    """PostgreSQL writes the rows (COPY ... TO STDOUT) when no cell needs
    Python; the file is the same as the other path's. A client leaving after
    the first chunk cancels the copy and leaves the connection usable."""
    from desk.db import db
    from desk.db import is_postgres
    from desk.services import module_export
    from desk.services.csv_export import write_csv
    for n in range(300):
        ticket_service.submit(data["customer"], f"bulk {n} 退款", HOSTILE + f" {n}", data["dept"].id)
    export = module_export.prepare(data["admin"], "tickets")
    assert export.copies() == is_postgres()
    fast = b"".join(export.csv(keys=True)).decode("utf-8-sig")
    slow = b"".join(write_csv([s.column for s in export.specs], export.tuples(), keys=True)).decode("utf-8-sig")
    parse = lambda text: list(csv.reader(io.StringIO(text, newline="")))  # noqa: E731
    assert parse(fast) == parse(slow) and len(parse(fast)) == 303

    from desk.db import copy_csv
    if is_postgres():
        stream = copy_csv(export.query, chunk=1024)
        first = next(stream)
        assert first and b"bulk" in b"".join([first, next(stream)])
        stream.close()  # the client went away mid-file
    assert db.execute_sql("SELECT 1").fetchone() == (1,)
    assert module_export.prepare(data["admin"], "comments").rows == 2
