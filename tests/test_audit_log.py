"""The audit log page: every recorded action as a sentence, filters in the URL
shared with the CSV export, keyset pages, permissions and sharing scope, and
the chain's state with its daily verification."""
from __future__ import annotations

import ast
import csv
import io
import json
import pathlib
import re

import pytest
from flask_babel import force_locale

import desk
from desk import audit
from desk import jobs
from desk.models import AuditEntry
from desk.models import MailMessage
from desk.models import Role
from desk.models import Ticket
from desk.models import TicketFieldValue
from desk.services import audit_log
from desk.services import contacts
from desk.services import custom_fields
from desk.services import erasure
from desk.services import tickets as ticket_service
from desk.services.listing import AuditFilters
from desk.web import audit_sentences
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS

PACKAGE = pathlib.Path(desk.__file__).parent
# audit.py's own writers name their action themselves.
WRITER_ACTIONS = {"create": "create", "update": "update", "delete": "delete", "purge": "purge",
                  "rekey": "rekey"}
# Calls that pass the action through a variable: the function, and the actions
# its callers hand it (each checked to appear as a literal in that file).
INDIRECT = {("services/bulk_export.py", "_discard"): {"expire", "delete"}}


APP_CONFIG = MANY_SIGN_INS


def html(resp) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_data(as_text=True)


def role(name, permissions, scope="all", fields=None) -> Role:
    return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(sorted(permissions)),
                        ticket_scope=scope, field_permissions=json.dumps(fields or {}))


def _is_audit_call(node: ast.Call, name: str) -> bool:
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == name
            and isinstance(func.value, ast.Name) and func.value.id == "audit")


def _strings(node) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def recorded_actions() -> dict[str, str]:
    """Every action desk's code records: action -> where (file:line)."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{rel}:{node.lineno}"
            actions: set[str] = set()
            if _is_audit_call(node, "record"):
                arg = node.args[1] if len(node.args) > 1 else next(
                    k.value for k in node.keywords if k.arg == "action")
                if isinstance(arg, ast.Name):
                    function = _enclosing_function(tree, node)
                    assert (rel, function) in INDIRECT, f"{where}: action from a variable; add it to INDIRECT"
                    actions = INDIRECT[(rel, function)]
                else:
                    actions = _strings(arg)
                    assert actions, f"{where}: cannot read the action"
            elif any(_is_audit_call(node, n) for n in ("update",)):
                keyword = next((k for k in node.keywords if k.arg == "action"), None)
                actions = _strings(keyword.value) if keyword else {"update"}
            elif any(_is_audit_call(node, n) for n in ("create", "delete", "purge", "rekey")):
                actions = {WRITER_ACTIONS[node.func.attr]}
            for action in actions:
                found.setdefault(action, where)
    for (rel, _), actions in INDIRECT.items():
        text = (PACKAGE / rel).read_text(encoding="utf-8")
        for action in actions:
            assert f'"{action}"' in text, f"{rel} no longer passes {action!r}"
    return found


def _enclosing_function(tree, target) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(n is target for n in ast.walk(node)):
            return node.name
    return ""


def test_the_scan_finds_the_actions_it_should():
    actions = recorded_actions()
    for action in ("create", "update", "delete", "restore", "purge", "export", "login", "anonymize",
                   "region.move_requested", "region.move_started", "region.moved",
                   "region.rollback_started", "region.wiped", "keys-rotate-start", "expire"):
        assert action in actions


RECORDS = ["Ticket", "Comment", "User", "Attachment", "Department", "Role", "Setting",
           "TicketFieldValue", "ContactFieldValue", "ApiToken", "BulkExport", "KeyRotation",
           "Export", "region", "ErasureRequest", "EmailChangeRequest", "DataSubjectRequest",
           "Breach", "PrivacyNotice", "NoticeConsent"]


def _view(action: str, record_type: str = "Ticket", record_id: str = "12", changes=None,
          actor: str = "Alice", actor_id: int | None = 3):
    entry = AuditEntry(id=1, seq=1, action=action, record_type=record_type, record_id=record_id,
                       actor_id=actor_id, changes=json.dumps(changes or {}))
    return audit_log.EntryView(entry, changes or {}, actor=actor,
                               record={"type": record_type, "id": record_id, "name": "Dan Lee",
                                       "kind": "end_user"})


@pytest.mark.parametrize("language", ["en", "zh_Hans"])
def test_every_action_the_code_records_reads_as_a_sentence(app, language):
    actions = recorded_actions()
    with app.test_request_context(), force_locale(language):
        for action, where in sorted(actions.items()):
            assert action in audit_sentences.SENTENCES, f"{action!r} ({where}) has no sentence"
            for record_type in RECORDS:
                text = audit_sentences.sentence(_view(action, record_type))
                assert text and "%(" not in text, (action, record_type, text)
                assert "%(" not in "".join(audit_sentences.change_lines(_view(action, record_type)))
        # An action nobody taught the table fails loudly (the page still shows its code).
        with pytest.raises(audit_sentences.UnknownAction):
            audit_sentences.sentence(_view("teleport"))
        assert "teleport" in audit_sentences.safe_sentence(_view("teleport"))


def test_sentences_say_what_happened(app):
    with app.test_request_context(), force_locale("en"):
        s = audit_sentences.sentence
        assert s(_view("update", changes={"priority": ["low", "high"]})) == \
            "Alice changed Priority from Low to High on ticket #12"
        assert s(_view("export", "Export", "tickets", {"module": "tickets", "rows": 1204},
                       actor="Bob")) == "Bob exported 1,204 tickets"
        assert s(_view("restore", "User", "7", {"deleted_at": ["2026-01-01", None]}, actor="Carol")) == \
            "Carol restored contact Dan Lee from the recycle bin"
        assert s(_view("purge", "Ticket", "88", actor="", actor_id=None)) == "The purge removed ticket #88"
    with app.test_request_context(), force_locale("zh_Hans"):
        text = audit_sentences.sentence(_view("update", changes={"priority": ["low", "high"]}))
        assert "Alice" in text and "#12" in text and "Priority" not in text


# -- the page ------------------------------------------------------------------------

@pytest.fixture
def desk_data(ctx):
    admin = factories.admin(name="Alice Admin")
    public_dept = factories.department("Front desk")
    secret_dept = factories.department("Legal")
    audit.update(audit.SYSTEM, secret_dept, is_private=True)
    customer = factories.end_user(name="Dan Lee", email="dan@example.com")
    open_ticket = factories.ticket(customer, "Printer", department=public_dept)
    hidden_ticket = factories.ticket(customer, "Lawsuit", department=secret_dept)
    ticket_service.update_ticket(admin, open_ticket.id, priority="high")
    ticket_service.update_ticket(admin, hidden_ticket.id, priority="urgent")
    return dict(admin=admin, customer=customer, open=open_ticket, hidden=hidden_ticket,
                public_dept=public_dept)


def test_page_shows_sentences_with_old_and_new_values(ctx, desk_data):
    b = signed_in(ctx, desk_data["admin"])
    page = html(b.get("/agent/audit"))
    assert f"Alice Admin changed Priority from Normal to High on ticket #{desk_data['open'].id}" in page
    assert "Alice Admin signed in" in page
    assert "The hash chain has not been verified yet." in page
    b.post("/language", data={"language": "zh_Hans", "next": "/agent/audit",
                              "csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)})
    assert "Priority from" not in html(b.get("/agent/audit"))


def test_filters_combine_stay_in_the_url_and_the_export_takes_them(ctx, desk_data):
    b = signed_in(ctx, desk_data["admin"])
    t = desk_data["open"]
    page = html(b.get(f"/agent/audit?record=ticket:{t.id}&action=update"))
    assert f"on ticket #{t.id}" in page and f"ticket #{desk_data['hidden'].id}" not in page
    assert "signed in" not in page
    assert f"/agent/export/audit.csv?record=ticket:{t.id}&amp;action=update" in page  # the export link keeps them
    resp = b.get(f"/agent/export/audit.csv?header=keys&record=ticket:{t.id}&action=update")
    rows = list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))
    assert [(r["action"], r["record_id"]) for r in rows] == [("update", str(t.id))]
    # actor and subject
    page = html(b.get(f"/agent/audit?subject={desk_data['customer'].id}&action=create"))
    assert f"created ticket #{t.id}" in page and "created contact Dan Lee" in page
    assert "agent Alice Admin" not in page and "signed in" not in page
    page = html(b.get(f"/agent/audit?actor={desk_data['admin'].id}"))
    assert "Alice Admin" in page and "The system created" not in page
    # time window: nothing tomorrow, everything today
    assert "No entries match." in html(b.get("/agent/audit?since=2999-01-01"))
    assert "No entries match." in html(b.get("/agent/audit?until=2000-01-01"))
    # a ticket's own page links to its history
    assert f'href="/agent/audit?record=ticket:{t.id}"' in html(b.get(f"/agent/tickets/{t.id}"))


def test_dotted_and_dashed_actions_filter(ctx, desk_data):
    audit.record(audit.SYSTEM, "region.wiped", "region", "eu", details={"region": "eu", "files": 0})
    b = signed_in(ctx, desk_data["admin"])
    page = html(b.get("/agent/audit?action=region.wiped"))
    assert "The system wiped the old copy in region eu" in page and "signed in" not in page


def test_keyset_pages_walk_back_and_forth(ctx, desk_data):
    for n in range(120):
        audit.record(audit.SYSTEM, "test_mail", "Setting", "mail", details={"via": f"n{n}"})
    filters = AuditFilters(action="test_mail")
    admin = desk_data["admin"]
    first = audit_log.page(admin, filters)
    assert len(first.items) == 50 and first.newer is None and first.older
    second = audit_log.page(admin, filters, before=first.older)
    third = audit_log.page(admin, filters, before=second.older)
    assert len(third.items) == 20 and third.older is None
    ids = [v.entry.id for p in (first, second, third) for v in p.items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 120
    back = audit_log.page(admin, filters, after=third.newer)
    assert [v.entry.id for v in back.items] == [v.entry.id for v in second.items]
    b = signed_in(ctx, admin)
    page = html(b.get(f"/agent/audit?action=test_mail&before={first.older}"))
    assert f"after={second.items[0].entry.id}" in page and "action=test_mail" in page


def test_who_may_not_read_the_log_gets_403(ctx, desk_data):
    agent = factories.agent()
    assert signed_in(ctx, agent).get("/agent/audit").status_code == 403
    assert signed_in(ctx, desk_data["customer"]).get("/agent/audit").status_code == 403


def test_sharing_scope_and_hidden_fields_apply(ctx, desk_data):
    auditor_role = role("Auditor", {"audit:view", "audit:export", "tickets:view", "contacts:view"},
                        scope="departments", fields={"tickets.priority": "hidden"})
    auditor = factories.agent(name="Ann Auditor", role=auditor_role.name)
    audit.create(audit.SYSTEM, desk.models.AgentDepartment, agent=auditor, department=desk_data["public_dept"])
    t, hidden = desk_data["open"], desk_data["hidden"]
    ticket_service.update_ticket(desk_data["admin"], t.id, status="on_hold")
    b = signed_in(ctx, auditor)
    page = html(b.get("/agent/audit"))
    assert f"ticket #{t.id}" in page and f"ticket #{hidden.id}" not in page
    assert "Priority" not in page and "Urgent" not in page
    assert f"changed Status from Open to On hold on ticket #{t.id}" in page
    csv_text = b.get("/agent/export/audit.csv?header=keys").get_data().decode("utf-8-sig")
    ids = {r["record_id"] for r in csv.DictReader(io.StringIO(csv_text)) if r["record_type"] == "Ticket"}
    assert str(t.id) in ids and str(hidden.id) not in ids
    # the admin sees both
    page = html(signed_in(ctx, desk_data["admin"]).get("/agent/audit"))
    assert f"ticket #{hidden.id}" in page and "Urgent" in page


def test_erased_people_read_erased(ctx, desk_data):
    admin, customer = desk_data["admin"], desk_data["customer"]
    contacts.update(admin, customer.id, {"phone": "+44 20 7946 0001"})
    b = signed_in(ctx, admin)
    assert "+44 20 7946 0001" in html(b.get(f"/agent/audit?record=contact:{customer.id}"))
    placeholder = erasure.placeholder(customer)
    erasure.start(admin, customer.id, "anonymize", placeholder)
    page = html(b.get(f"/agent/audit?record=contact:{customer.id}"))
    assert "+44 20 7946 0001" not in page and "[erased]" in page and "Dan Lee" not in page


def test_encrypted_custom_values_are_never_shown(ctx, desk_data):
    admin = desk_data["admin"]
    custom_fields.create(admin, "tickets", {"key": "card", "label": "Card number", "type": "card",
                                            "encrypted": True})
    t = desk_data["open"]
    ticket_service.update_custom_fields(admin, t.id, {"cf_card": "4111 1111 1111 1111"})
    assert TicketFieldValue.select().count() == 1
    page = html(signed_in(ctx, admin).get(f"/agent/audit?record=ticket:{t.id}"))
    assert "1111" not in page
    assert "Card number on ticket" in page and "not shown" in page


# -- the chain's state -------------------------------------------------------------------

def test_daily_verification_records_its_time_and_mails_admins_when_broken(ctx, desk_data):
    assert any(j.name == "verify-audit-chain" and j.seconds == 86400 for j in jobs.JOBS)
    jobs.verify_audit_chain()
    state = audit_log.chain_state()
    assert state["ok"] and state["at"]
    page = html(signed_in(ctx, desk_data["admin"]).get("/agent/audit"))
    assert "intact when last verified at " + state["at"].replace("T", " ") in page
    assert not MailMessage.select().where(MailMessage.subject.contains("hash chain")).exists()
    # Someone edits an entry behind desk's back.
    entry = AuditEntry.select().where(AuditEntry.action == "update").order_by(AuditEntry.id).first()
    AuditEntry._meta.database.execute_sql(
        "UPDATE audit_entry SET action = 'delete' WHERE id = " + str(int(entry.id)))
    jobs.verify_audit_chain()
    assert not audit_log.chain_state()["ok"]
    mails = list(MailMessage.select().where(MailMessage.subject.contains("hash chain")))
    assert [m.recipient for m in mails] == [desk_data["admin"].email]
    assert "broken" in html(signed_in(ctx, desk_data["admin"]).get("/agent/audit"))


def test_an_admin_can_verify_now(ctx, desk_data):
    b = signed_in(ctx, desk_data["admin"])
    resp = post_form(b, "/agent/audit/verify", {}, form_page="/agent/audit")
    assert resp.status_code == 302 and audit_log.chain_state()["ok"]


def test_services_import_nothing_from_the_web_layer():
    for path in sorted((PACKAGE / "services").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "desk.web" or n.startswith("desk.web.") for n in names), path
