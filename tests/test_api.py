"""The JSON API (issue 15): tokens instead of cookies, the same services and
policy as the pages, cursor pages, problem details, audited writes, the
OpenAPI document."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from desk import audit
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import listing
from desk.services import tickets as ticket_service
from desk.services import tokens
from tests import factories
from tests.conftest import signed_in
from tests.test_permissions import join
from tests.test_permissions import make_role
from tests.test_permissions import agent_with

PROBLEM = "application/problem+json"


class Api:
    """A client that sends one person's token."""

    def __init__(self, app, user, read_only: bool = False):
        self.row, self.raw = tokens.create(user, "test", read_only=read_only)
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {self.raw}"}

    def __getattr__(self, method):
        def call(path, **kwargs):
            return self.client.open(path, method=method.upper(),
                                    headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)
        return call


@pytest.fixture
def people(ctx):
    admin = factories.admin(name="Ada Admin")
    dept = factories.department("Support")
    agent = factories.agent(name="Abe Agent")
    join(agent, dept)
    ann = factories.end_user(name="Ann Asker", email="ann@example.com")
    bob = factories.end_user(name="Bob Other", email="bob@example.com")
    return {"admin": admin, "agent": agent, "ann": ann, "bob": bob, "dept": dept}


def problem(resp, status: int, kind: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == PROBLEM
    body = resp.json
    assert body["type"] == f"/api/v1/docs#problem-{kind}" and body["status"] == status and body["title"]
    return body


def test_a_session_cookie_is_not_enough_and_no_csrf_token_is_needed(ctx, people):
    browser = signed_in(ctx, people["ann"])
    assert browser.get("/my/tickets").status_code == 200  # the cookie is good for pages
    problem(browser.get("/api/v1/me"), 401, "unauthorized")
    problem(browser.post("/api/v1/tickets", json={"subject": "s", "description": "d"}), 401, "unauthorized")
    assert Ticket.select().count() == 0
    api = Api(ctx, people["ann"])
    resp = api.post("/api/v1/tickets", json={"subject": "From my script", "description": "Hello"})
    assert resp.status_code == 201 and resp.json["subject"] == "From my script"
    assert "Set-Cookie" not in resp.headers


def test_a_read_only_token_reads_and_never_writes(ctx, people):
    ticket = factories.ticket(people["ann"], "Mine")
    api = Api(ctx, people["ann"], read_only=True)
    assert api.get(f"/api/v1/tickets/{ticket.id}").status_code == 200
    problem(api.post("/api/v1/tickets", json={"subject": "s", "description": "d"}), 403, "read-only-token")
    problem(api.patch(f"/api/v1/tickets/{ticket.id}", json={"status": "closed"}), 403, "read-only-token")
    problem(api.post(f"/api/v1/tickets/{ticket.id}/comments", json={"body": "x"}), 403, "read-only-token")
    assert Ticket.get_by_id(ticket.id).status == "open" and Comment.select().count() == 0


def test_the_ticket_list_filters_and_pages_by_cursor_like_the_desk(ctx, people):
    ann, bob, dept = people["ann"], people["bob"], people["dept"]
    made = []
    for n in range(7):
        made.append(factories.ticket(ann if n % 2 else bob, f"Printer {n}", department=dept,
                                     priority="urgent" if n < 3 else "low",
                                     status="closed" if n == 6 else "open"))
    audit.update(audit.SYSTEM, made[1], assignee=people["agent"])
    api = Api(ctx, people["admin"])
    seen, cursor = [], None
    while True:
        resp = api.get("/api/v1/tickets", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        seen += [t["id"] for t in resp.json["items"]]
        cursor = resp.json["next_cursor"]
        if cursor is None:
            break
    page = ticket_service.agent_tickets(people["admin"], listing.TicketFilters(), 1)
    assert seen == [t.id for t in page.items] and len(seen) == 7  # the desk's order, no gaps
    oldest = api.get("/api/v1/tickets", query_string={"sort": "oldest", "limit": 2}).json
    assert [t["id"] for t in oldest["items"]] == [made[0].id, made[1].id]
    def ids(**args):
        return {t["id"] for t in api.get("/api/v1/tickets", query_string=args).json["items"]}
    assert ids(priority="urgent") == {t.id for t in made[:3]}
    assert ids(status="closed") == {made[6].id}
    assert ids(requester="ann@example.com") == {t.id for t in made if t.requester_id == ann.id}
    assert ids(q="Printer 4") == {made[4].id}
    assert ids(assignee=str(people["agent"].id)) == {made[1].id}
    agent_api = Api(ctx, people["agent"])
    assert {t["id"] for t in agent_api.get("/api/v1/tickets?assignee=me").json["items"]} == {made[1].id}
    body = problem(api.get("/api/v1/tickets?cursor=garbage"), 400, "invalid-request")
    assert body["invalid-params"][0]["name"] == "cursor"
    # A cursor of another sort is refused by a check that python -O keeps (it was an assert).
    assert problem(api.get("/api/v1/tickets", query_string={"cursor": oldest["next_cursor"]}),
                   400, "invalid-request")["invalid-params"][0]["name"] == "cursor"
    body = problem(api.get("/api/v1/tickets?status=lost&limit=1000"), 400, "invalid-request")
    assert {p["name"] for p in body["invalid-params"]} == {"status", "limit"}


def test_an_end_user_sees_only_their_tickets_and_the_public_conversation(ctx, people):
    ann, bob, admin = people["ann"], people["bob"], people["admin"]
    mine = ticket_service.submit(ann, "My printer", "It smokes", None,
                                 [files.Upload(filename="photo.txt", stream=io.BytesIO(b"smoke"))])
    theirs = ticket_service.submit(bob, "Bob's printer", "secret of bob", None)
    ticket_service.reply(admin, mine.id, "We are on it", True)
    note = ticket_service.reply(admin, mine.id, "Internal: replace the fuse", False,
                                [files.Upload(filename="fuse.txt", stream=io.BytesIO(b"internal"))])
    api = Api(ctx, ann)
    listed = api.get("/api/v1/tickets").json["items"]
    assert [t["id"] for t in listed] == [mine.id]
    assert "priority" not in listed[0] and "assignee" not in listed[0]
    detail = api.get(f"/api/v1/tickets/{mine.id}").json
    assert [c["body"] for c in detail["comments"]] == ["We are on it"]
    assert detail["attachments"][0]["filename"] == "photo.txt"
    assert api.get(detail["attachments"][0]["download_url"]).data == b"smoke"
    problem(api.get(f"/api/v1/tickets/{theirs.id}"), 404, "not-found")
    problem(api.get(f"/api/v1/attachments/{note.attachments[0].id}"), 404, "not-found")
    problem(api.post(f"/api/v1/tickets/{theirs.id}/comments", json={"body": "hi"}), 404, "not-found")
    problem(api.post(f"/api/v1/tickets/{mine.id}/comments", json={"body": "psst", "public": False}),
            403, "forbidden")
    problem(api.patch(f"/api/v1/tickets/{mine.id}", json={"priority": "urgent"}), 403, "forbidden")
    assert api.patch(f"/api/v1/tickets/{mine.id}", json={"status": "closed"}).json["changed"] == ["status"]
    assert b"secret of bob" not in api.get("/api/v1/me/export").data


def test_hidden_fields_are_absent_and_cannot_be_changed(ctx, people):
    role = make_role("Field test", ("tickets:view", "tickets:edit", "comments:view", "contacts:view"),
                     "all", {"tickets.priority": "hidden", "contacts.email": "hidden",
                             "tickets.description": "hidden"})
    worker = agent_with(role, name="Wes Worker")
    ticket = factories.ticket(people["ann"], "Harmless", description="vault code 4711",
                              priority="urgent", department=people["dept"])
    api = Api(ctx, worker)
    for item in (api.get("/api/v1/tickets").json["items"][0], api.get(f"/api/v1/tickets/{ticket.id}").json):
        assert item["subject"] == "Harmless" and item["status"] == "open"
        assert "priority" not in item and "description" not in item
        assert item["requester"] == {"id": people["ann"].id, "name": "Ann Asker"}
    contact = api.get(f"/api/v1/contacts/{people['ann'].id}").json
    assert "email" not in contact and contact["name"] == "Ann Asker"
    assert b"ann@example.com" not in api.get("/api/v1/contacts").data
    # Filtering on the hidden value answers as if no filter were given.
    assert len(api.get("/api/v1/tickets?priority=low").json["items"]) == 1
    problem(api.patch(f"/api/v1/tickets/{ticket.id}", json={"priority": "low"}), 403, "forbidden")
    assert Ticket.get_by_id(ticket.id).priority == "urgent"


def test_writes_go_through_the_services_and_are_audited_via_the_token(ctx, people):
    ann, agent = people["ann"], people["agent"]
    ticket = factories.ticket(ann, "Audit me", department=people["dept"])
    api = Api(ctx, agent)
    via = f"API token {api.row.prefix}"
    resp = api.post(f"/api/v1/tickets/{ticket.id}/comments",
                    data={"body": "See the log", "public": "true",
                          "attachments": [(io.BytesIO(b"log line"), "server.log")]},
                    content_type="multipart/form-data")
    assert resp.status_code == 201
    assert resp.json["attachments"][0]["filename"] == "server.log"
    resp = api.patch(f"/api/v1/tickets/{ticket.id}", json={"priority": "high", "assignee_id": agent.id})
    assert resp.status_code == 200 and resp.json["changed"] == ["assignee", "priority"]
    resp = api.post("/api/v1/contacts", json={"name": "Cleo Contact", "email": "Cleo@Example.com"})
    assert resp.status_code == 201 and resp.json["email"] == "cleo@example.com"
    cleo = User.get(User.email == "cleo@example.com")
    assert cleo.password_hash is None and cleo.kind == "end_user"
    assert api.patch(f"/api/v1/contacts/{cleo.id}", json={"phone": "+44 20 1234"}).json["phone"] == "+44 20 1234"
    written = [e for e in AuditEntry.select().where(AuditEntry.actor_id == agent.id)
               if e.action in ("create", "update") and e.record_type != "ApiToken"]
    assert {e.record_type for e in written} >= {"Comment", "Attachment", "Ticket", "User"}
    assert all(audit.read_changes(e)[audit.VIA] == via for e in written)
    # The same change through a page says nothing of a token.
    ticket_service.update_ticket(agent, ticket.id, status="on_hold")
    assert audit.VIA not in json.loads(AuditEntry.select().order_by(AuditEntry.seq.desc()).first().changes)


def test_contacts_follow_the_role(ctx, people):
    light = factories.agent(role="Light Agent")
    api = Api(ctx, light)
    assert api.get("/api/v1/contacts").status_code == 200
    problem(api.post("/api/v1/contacts", json={"name": "X", "email": "x@example.com"}), 403, "forbidden")
    problem(api.patch(f"/api/v1/contacts/{people['ann'].id}", json={"name": "Y"}), 403, "forbidden")
    admin = Api(ctx, people["admin"])
    problem(admin.post("/api/v1/contacts", json={"name": "Ann", "email": "ann@example.com"}), 409, "conflict")
    body = problem(admin.patch(f"/api/v1/contacts/{people['ann'].id}", json={"email": "new@example.com"}),
                   400, "invalid-request")
    assert body["invalid-params"][0]["name"] == "email"
    problem(admin.get(f"/api/v1/contacts/{people['agent'].id}"), 404, "not-found")  # an agent, not a contact
    problem(Api(ctx, people["ann"]).get("/api/v1/contacts"), 403, "forbidden")


def test_my_data_export_is_the_same_zip(ctx, people):
    factories.ticket(people["ann"], "Exported")
    resp = Api(ctx, people["ann"]).get("/api/v1/me/export")
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.data)) as archive:
        text = b"".join(archive.read(n) for n in archive.namelist())
    assert b"ann@example.com" in text and b"Exported" in text


def test_errors_are_problem_details_with_stable_types(make_app, ctx, people):
    ticket = factories.ticket(people["ann"], "Errors")
    api = Api(ctx, people["ann"])
    problem(api.post("/api/v1/tickets", data="{not json", content_type="application/json"), 400, "invalid-json")
    problem(api.post("/api/v1/tickets", data="[1]", content_type="application/json"), 400, "invalid-json")
    body = problem(api.post("/api/v1/tickets", json={"description": "no subject", "colour": "red"}),
                   400, "invalid-request")
    assert {p["name"] for p in body["invalid-params"]} == {"subject", "colour"}
    body = problem(api.post("/api/v1/tickets", json={"subject": "a\x00b", "description": "d"}), 400, "invalid-input")
    assert "control characters" in body["detail"]
    problem(api.post("/api/v1/tickets", data="subject=x", content_type="text/plain"), 415, "unsupported-media-type")
    problem(api.delete(f"/api/v1/tickets/{ticket.id}"), 405, "method-not-allowed")
    problem(api.get("/api/v1/no-such-thing"), 404, "not-found")
    problem(api.get("/api/v1/tickets/99999999999"), 404, "not-found")


def test_too_large_and_too_many(make_app):
    app = make_app(ATTACHMENT_MAX_MB=1, API_RATE_LIMIT="5 per minute")
    with app.app_context():
        from desk.db import db
        db.connect(reuse_if_open=True)
        ann = factories.end_user()
        ticket = factories.ticket(ann, "Big")
        api = Api(app, ann)
        resp = api.post(f"/api/v1/tickets/{ticket.id}/comments", content_type="multipart/form-data",
                        data={"body": "huge", "attachments": [(io.BytesIO(b"x" * (2**20 + 10)), "big.bin")]})
        problem(resp, 413, "too-large")
        # One budget per token across all routes.
        answers = [api.get("/api/v1/me" if n % 2 else "/api/v1/tickets") for n in range(6)]
        assert [r.status_code for r in answers[:4]] == [200] * 4
        resp = answers[-1]
        problem(resp, 429, "rate-limited")
        assert int(resp.headers["Retry-After"]) > 0
        other = Api(app, factories.end_user())  # the limit is per token
        assert other.get("/api/v1/me").status_code == 200
        db.close()


def test_the_openapi_document_and_its_page(ctx, client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    operations = {(path, method) for path, methods in doc["paths"].items() for method in methods}
    assert ("/api/v1/tickets", "get") in operations and ("/api/v1/tickets/{ticket_id}", "patch") in operations
    assert len(operations) == len([r for r in ctx.url_map.iter_rules() if r.endpoint.startswith("api.")
                                   for m in r.methods if m not in ("HEAD", "OPTIONS")])
    # The request schemas are the validating models' own.
    from desk.web.api import schemas
    assert doc["components"]["schemas"]["TicketCreate"] == json.loads(json.dumps(
        schemas.TicketCreate.model_json_schema(ref_template="#/components/schemas/{model}")))
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"/api/v1/tickets/{ticket_id}" in page.data
    assert b"problem-rate-limited" in page.data


def test_custom_fields_as_the_role_may_see_them(ctx, people):
    from desk.services import custom_fields
    admin, ann = people["admin"], people["ann"]
    ticket = factories.ticket(ann, "With fields", department=people["dept"])
    custom_fields.create(admin, "tickets", {"key": "order", "label": "Order", "type": "text"})
    custom_fields.create(admin, "tickets", {"key": "card", "label": "Card", "type": "card", "encrypted": True})
    custom_fields.set_values(admin, "tickets", ticket, {"cf_order": "A-17", "cf_card": "4111 1111 1111 1111"})
    values = Api(ctx, admin).get(f"/api/v1/tickets/{ticket.id}").json["custom_fields"]
    assert values["order"] == "A-17"
    assert values["card"].endswith("1111") and "4111 1111" not in values["card"]  # masked
    assert "custom_fields" in Api(ctx, admin).get(f"/api/v1/contacts/{ann.id}").json


def test_custom_fields_are_set_through_the_api_and_encrypted_ones_revealed_by_an_audited_call(ctx, people):
    from desk.services import custom_fields
    admin, agent, ann = people["admin"], people["agent"], people["ann"]
    custom_fields.create(admin, "tickets", {"key": "plan", "label": "Plan", "type": "choice",
                                            "choices": "Gold\nSilver", "public": True})
    custom_fields.create(admin, "tickets", {"key": "card", "label": "Card", "type": "card",
                                            "public": True, "encrypted": True})
    custom_fields.create(admin, "contacts", {"key": "tier", "label": "Tier", "type": "text"})
    card = "4539 5787 6362 1486"
    # An end user opens a ticket with its public fields; bad values name the field.
    asker = Api(ctx, ann)
    bad = asker.post("/api/v1/tickets", json={"subject": "Charge", "description": "twice",
                                              "custom_fields": {"plan": "Platinum"}})
    assert "Choose one of the listed values" in problem(bad, 400, "invalid-input")["detail"]
    resp = asker.post("/api/v1/tickets", json={"subject": "Charge", "description": "twice",
                                               "custom_fields": {"plan": "Gold", "card": card}})
    assert resp.status_code == 201, resp.json
    ticket_id = resp.json["id"]
    assert resp.json["custom_fields"]["card"] == "•••• •••• •••• 1486"
    assert card.replace(" ", "") not in resp.get_data(as_text=True)
    # An administrator changes a field; the answer names it.
    boss = Api(ctx, admin)
    resp = boss.patch(f"/api/v1/tickets/{ticket_id}", json={"custom_fields": {"plan": "Silver"},
                                                             "priority": "high"})
    assert resp.status_code == 200, resp.json
    assert resp.json["changed"] == ["custom_fields.plan", "priority"]
    assert boss.get(f"/api/v1/tickets/{ticket_id}").json["custom_fields"]["plan"] == "Silver"
    # Lists carry them too (the requester sees the fields shown to end users).
    listed = {t["id"]: t for t in asker.get("/api/v1/tickets").json["items"]}
    assert listed[ticket_id]["custom_fields"] == {"plan": "Silver", "card": "•••• •••• •••• 1486"}
    # Reveal: a separate call, audited, never cached; refused to those who may not.
    reveal = f"/api/v1/tickets/{ticket_id}/fields/card/reveal"
    resp = boss.post(reveal)
    assert resp.status_code == 200 and resp.json == {"key": "card", "value": card.replace(" ", "")}
    assert resp.headers["Cache-Control"] == "no-store"
    entry = AuditEntry.select().where(AuditEntry.action == "reveal").get()
    assert entry.actor_id == admin.id and entry.record_id == str(ticket_id)
    assert "via" in entry.changes  # made through the API
    problem(Api(ctx, agent).post(reveal), 403, "forbidden")
    problem(asker.post(reveal), 403, "forbidden")
    problem(boss.post(f"/api/v1/tickets/{ticket_id}/fields/plan/reveal"), 404, "not-found")
    problem(boss.post(f"/api/v1/tickets/{ticket_id + 99}/fields/card/reveal"), 404, "not-found")
    assert AuditEntry.select().where(AuditEntry.action == "reveal").count() == 1
    # Contacts take their fields on create and update.
    resp = boss.post("/api/v1/contacts", json={"name": "Cy Contact", "email": "cy@example.com",
                                               "custom_fields": {"tier": "gold"}})
    assert resp.status_code == 201 and resp.json["custom_fields"] == {"tier": "gold"}
    resp = boss.patch(f"/api/v1/contacts/{resp.json['id']}", json={"custom_fields": {"tier": "silver"}})
    assert resp.status_code == 200 and resp.json["custom_fields"] == {"tier": "silver"}
    listed = boss.get("/api/v1/contacts?q=Cy").json["items"]
    assert [c["custom_fields"] for c in listed] == [{"tier": "silver"}]
