"""Roles, data-sharing rules and field-level permissions (issue 6).

1. The permission matrix: every role x every route x every method, with the
   outcome expected from a rule table that must cover exactly the app's routes.
2. No page renders a value the role may not see; read-only fields show as text
   and a POST that changes them is refused.
3. Data-sharing scopes (all, departments, assigned) and private departments.
4. The roles admin UI: create, copy, edit, delete, and what may not be done.
5. Removing a permission takes effect on the next request.
6. The effective-permissions view of one agent, changing an agent's role, and
   the new agent page.
"""
from __future__ import annotations

import html as html_module
import io
import json
import re
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import MultiDict

from desk import audit
from desk import policy
from desk.models import AgentDepartment
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import BrowserSession
from desk.models import Comment
from desk.models import CustomField
from desk.models import Department
from desk.models import DataSubjectRequest
from desk.models import Role
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.models.privacy import EmailChangeRequest
from desk.services import attachments as files
from desk.services import breaches
from desk.services import bulk_export
from desk.services import custom_fields
from desk.services import email_change
from desk.services import recycle_bin
from desk.services import sessions
from desk.services import tickets as ticket_service
from desk.services import tokens
from tests import factories
from tests.conftest import CSRF_RE
from tests.conftest import browser
from tests.conftest import login
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS
from tests.conftest import html


APP_CONFIG = MANY_SIGN_INS


# -- helpers -----------------------------------------------------------------------



def form_token(client, path: str) -> str:
    """The CSRF token of the form ``path`` renders for this browser's user."""
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.status_code)
    match = CSRF_RE.search(resp.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post(client, path: str, data: dict | list[tuple[str, str]] | None = None):
    """POST a form with the session's CSRF token (read once from a form page,
    then reused: it stays the same for the whole session). ``data`` as a list
    of pairs repeats keys, as a browser sends ticked checkboxes."""
    token = getattr(client, "desk_csrf", None)
    if token is None:
        token = client.desk_csrf = form_token(client, "/agent/settings/my-info")
    if isinstance(data, list):
        return client.post(path, data=MultiDict([*data, ("csrf_token", token)]))
    return client.post(path, data={**(data or {}), "csrf_token": token})


def reload(row):
    return type(row).get_by_id(row.id)


def join(agent, department) -> None:
    audit.create(audit.SYSTEM, AgentDepartment, agent=agent, department=department)


def make_role(name: str, permissions=(), scope: str = "departments", fields: dict | None = None) -> Role:
    return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(sorted(permissions)),
                        ticket_scope=scope, field_permissions=json.dumps(fields or {}))


def agent_with(role: Role, name: str | None = None, email: str | None = None):
    return factories.agent(name=name, email=email, role=role.name)


def role_entries(role_id, action: str | None = None) -> list[AuditEntry]:
    query = (AuditEntry.select()
             .where(AuditEntry.record_type == "Role", AuditEntry.record_id == str(role_id))
             .order_by(AuditEntry.seq))
    if action:
        query = query.where(AuditEntry.action == action)
    return list(query)


AGENT_ROW = re.compile(r'<a href="/agent/tickets/(\d+)">')


def main_part(resp) -> str:
    """The page's own content (without the header and footer, which carry the path)."""
    page = html(resp)
    return page[page.index("<main"):page.index("</main>")]


def listed(resp) -> set[int]:
    """Ticket ids a list page links to."""
    assert resp.status_code == 200, resp.status_code
    return {int(i) for i in AGENT_ROW.findall(html(resp))}


# ==================================================================================
# 1. The permission matrix
# ==================================================================================

# What each role holds, as the issue specifies it (not read back from the policy).
ALL_PERMISSIONS = frozenset(f"{m}:{a}" for m in policy.MODULES for a in policy.ACTIONS)
AGENT_PERMISSIONS = frozenset({
    "tickets:view", "tickets:create", "tickets:edit", "tickets:export",
    "comments:view", "comments:create", "comments:edit",
    "contacts:view", "contacts:create", "contacts:edit",
    "agents:view", "departments:view"})
LIGHT_AGENT_PERMISSIONS = frozenset({"tickets:view", "comments:view", "comments:create", "contacts:view"})

ROLES = {
    # name: (signs in as, permissions)
    "anonymous": (None, frozenset()),
    "end_user": ("owner", frozenset()),
    "light_agent": ("light", LIGHT_AGENT_PERMISSIONS),
    "agent": ("agent", AGENT_PERMISSIONS),
    "custom_no_permissions": ("nobody", frozenset()),
    "administrator": ("admin", ALL_PERMISSIONS),
}
AGENT_ROLES = {"light_agent", "agent", "custom_no_permissions", "administrator"}

# Every endpoint's rule. The vocabulary:
#   public            anyone, signed in or not
#   setup-token       public, but only the one-time setup link works: a wrong or
#                     spent token answers 404 to everyone
#   signed_in         anyone signed in (their own data); anonymous -> /login
#   signed_in-token   as signed_in; a POST with a wrong confirmation token -> 404
#   end_user          end users only; agents 403
#   agent             any signed-in agent; end users 403
#   module:action     agents holding that permission ("+" joins several); others 403
#   ticket:<perm>     one ticket: agents who cannot see it get 404 (existence does not
#                     leak), agents who see it but lack <perm> get 403 ("-": nobody may)
#   requester|<agents' rule>
#                     end users (over their own records); agents follow the rule after "|"
#   own-record|<agents' rule>
#                     a record an end user owns: its owner is allowed, every other
#                     end user gets 404 (not 403); agents follow the rule after "|"
# "{module}" stands for the value of the route's any(...) argument.
RULES = {
    "portal.home": "public",
    "health.healthz": "public",
    "privacy.privacy_page": "public",
    "auth.login": "public",
    "auth.signup": "public",
    "portal.language": "public",
    "auth.first_admin": "setup-token",
    "auth.signup_confirm": "setup-token",

    "auth.logout": "signed_in",
    "portal.my_tickets": "signed_in",
    "me.my_info": "signed_in",
    "me.request_email_change": "signed_in",
    "me.change_password": "signed_in",
    "me.data_export": "signed_in",
    "me.request_erasure": "signed_in",
    "me.confirm_email": "signed_in-token",
    "me.end_session": "signed_in-token",  # someone else's browser: 404 to all
    "me.end_all_sessions": "signed_in",  # runs just before the sign-out, then signs in again

    "portal.new_ticket": "end_user",
    "portal.ticket": "own-record|agent",  # agents are sent on to the agent page
    "portal.ticket_status": "own-record|ticket:-",
    "files.download": "own-record|ticket:tickets:view",

    "me.agent_info": "agent",
    "admin.index": "agent",

    "agent.tickets": "tickets:view",
    "agent.ticket": "ticket:tickets:view",
    "agent.reply": "ticket:comments:create",
    "agent.properties": "ticket:tickets:edit",
    "agent.delete_ticket": "ticket:tickets:delete",
    "agent.delete_comment": "ticket:comments:delete",

    "privacy.people": "{module}:view",
    "privacy.delete_person": "contacts:delete",  # the target is a contact
    "privacy.erase": "settings:manage",
    "privacy.bin_list": "recycle_bin:view",
    "privacy.restore": "{module}:restore",
    "privacy.purge_now": "{module}:delete+recycle_bin:delete",
    "privacy.erasure_queue": "settings:manage",
    "privacy.settings_page": "settings:manage",
    "audit.audit_page": "audit:view",
    "audit.verify_now": "settings:manage",
    "privacy_center.index": "privacy:view",
    "privacy_center.requests": "privacy:view",
    "privacy_center.log_request": "privacy:edit",
    "privacy_center.request_detail": "privacy:view",
    "privacy_center.extend": "privacy:edit",
    "privacy_center.link": "privacy:edit",
    "privacy_center.close": "privacy:edit",
    "privacy_center.requests_csv": "privacy:export",
    "privacy_center.breach_list": "privacy:view",
    "privacy_center.record_breach": "privacy:edit",
    "privacy_center.breach": "privacy:view",
    "privacy_center.update_breach": "privacy:edit",
    "privacy_center.processing": "privacy:view",
    "privacy_center.consents": "privacy:view",
    "privacy_center.publish_notice": "privacy:edit",
    "notice.show": "signed_in",
    "notice.acknowledge": "signed_in",
    "privacy_center.save_processing": "privacy:edit",
    "privacy_center.processing_csv": "privacy:export",
    "regions.region_page": "settings:manage",

    "admin.department_list": "departments:manage",
    "admin.add_member": "departments:manage",
    "admin.remove_member": "departments:manage",
    "admin.email_changes": "settings:manage",
    "admin.approve_email_change": "settings:manage",
    "admin.reject_email_change": "settings:manage",

    "exports.module_csv": "{module}:export",
    "admin.bulk_export_page": "admin",
    "admin.bulk_export_download": "admin",

    "roles.role_list": "settings:manage",
    "roles.new_role": "settings:manage",
    "roles.role": "settings:manage",
    "roles.copy_role": "settings:manage",
    "roles.delete_role": "settings:manage",
    "roles.new_agent": "agents:create",
    "roles.agent_permissions": "settings:manage",

    "mail.settings": "settings:manage",
    "mail.test": "settings:manage",

    "fields.field_list": "settings:manage",
    "fields.edit_field": "settings:manage",
    "fields.delete_field": "settings:manage",
    "fields.restore_field": "settings:manage",
    "fields.contact": "contacts:view",
    "fields.contact_fields": "contacts:edit",
    "fields.reveal_contact_field": "contacts:reveal",
    "agent.ticket_fields": "ticket:tickets:edit",
    "fields.reveal_ticket_field": "ticket:tickets:reveal",

    "tokens.my_tokens": "signed_in",
    "tokens.revoke_mine": "signed_in-token",  # someone else's token: 404 to all
    "tokens.all_tokens": "settings:manage",
    "tokens.revoke_any": "settings:manage",

    # The JSON API, called with a token of each role (no token: 401).
    "api.openapi_document": "public",
    "api.docs": "public",
    "api.me": "signed_in",
    "api.my_export": "signed_in",
    "api.list_tickets": "requester|tickets:view",
    "api.get_ticket": "own-record|ticket:tickets:view",
    "api.create_ticket": "end_user",
    "api.update_ticket": "own-record|ticket:tickets:edit",
    "api.add_comment": "own-record|ticket:comments:create",
    "api.download_attachment": "own-record|ticket:tickets:view",
    "api.list_contacts": "contacts:view",
    "api.get_contact": "contacts:view",
    "api.create_contact": "contacts:create",
    "api.update_contact": "contacts:edit",
    "api.reveal_ticket_field": "ticket:tickets:reveal",
    "api.reveal_contact_field": "contacts:reveal",
}

ALLOWED, FORBIDDEN, NOT_FOUND, LOGIN = "allowed", "403", "404", "to /login"
CSRF_MESSAGE = "The form expired or was sent from elsewhere"


def app_endpoints(app) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}


def test_the_rule_table_covers_exactly_the_routes_of_the_app(tmp_path):
    from desk import create_app
    from tests.conftest import TEST_CONFIG
    app = create_app(dict(TEST_CONFIG, DATABASE_URL=f"sqlite:///{tmp_path / 'routes.db'}",
                          DATA_DIR=str(tmp_path / "instance")))
    endpoints = app_endpoints(app)
    assert len(endpoints) >= 40
    missing = sorted(endpoints - set(RULES))
    stale = sorted(set(RULES) - endpoints)
    assert not missing, f"routes without a rule in RULES: {missing}"
    assert not stale, f"rules for routes the app no longer has: {stale}"


def test_every_rule_is_well_formed():
    words = {"public", "setup-token", "signed_in", "signed_in-token", "end_user", "agent", "admin"}
    for endpoint, rule in RULES.items():
        for part in rule.split("|"):
            if part in words or part in ("own-record", "requester"):
                continue
            perms = part.removeprefix("ticket:")
            if perms == "-":
                continue
            for perm in perms.split("+"):
                module, _, action = perm.partition(":")
                assert module in (*policy.MODULES, "{module}") and action in policy.ACTIONS, \
                    (endpoint, rule)


def expected_outcome(rule: str, role: str, method: str, variant: str) -> str:
    """What ``role`` must get from a route with ``rule``."""
    head, _, agents_rule = rule.partition("|")
    if head == "public":
        return ALLOWED
    if head == "setup-token":
        return NOT_FOUND
    if role == "anonymous":
        return LOGIN
    if head == "signed_in":
        return ALLOWED
    if head == "signed_in-token":
        return NOT_FOUND if method == "POST" else ALLOWED
    if head == "end_user":
        return ALLOWED if role == "end_user" else FORBIDDEN
    if head == "requester":
        if role == "end_user":
            return ALLOWED
        return expected_outcome(agents_rule, role, method, variant)
    if head == "own-record":
        if role == "end_user":
            return ALLOWED if variant == "own" else NOT_FOUND
        return expected_outcome(agents_rule, role, method, variant)
    if role not in AGENT_ROLES:
        return FORBIDDEN
    held = ROLES[role][1]
    if head == "agent":
        return ALLOWED
    if head == "admin":
        return ALLOWED if role == "administrator" else FORBIDDEN
    if head.startswith("ticket:"):
        # The matrix ticket sits in a department every matrix agent belongs to,
        # so an agent sees it exactly when they may view tickets.
        if "tickets:view" not in held:
            return NOT_FOUND
        head = head.removeprefix("ticket:")
        if head == "-":
            return FORBIDDEN
    return ALLOWED if all(p in held for p in head.split("+")) else FORBIDDEN


def actual_outcome(resp) -> str:
    status = resp.status_code
    if status in (301, 302, 303, 307, 308):
        # Sent to sign in (with ?next=), as opposed to a page after the action
        # (signing out ends on /login too, without ?next=).
        target = urlsplit(resp.headers.get("Location", ""))
        return LOGIN if target.path == "/login" and "next=" in target.query else ALLOWED
    if status == 403:
        return FORBIDDEN
    if status == 404:
        return NOT_FOUND
    if status in (200, 201, 204, 400, 409, 413):
        return ALLOWED
    return f"status {status}"


@pytest.fixture
def matrix(ctx):
    """Real records for every URL argument, and one person per role."""
    admin = factories.admin(name="Ada Admin", email="ada@example.com")
    nothing = make_role("Nothing at all", ())
    disposable = make_role("Disposable role", ("tickets:view",))
    desk_dept = factories.department("Front desk")
    members_dept = factories.department("Members")
    light = factories.agent(name="Lou Light", email="light@example.com", role="Light Agent")
    agent = factories.agent(name="Abe Agent", email="agent@example.com")
    nobody = agent_with(nothing, name="Nora Nothing", email="nothing@example.com")
    member = factories.agent(name="Max Member", email="member@example.com")
    for person in (light, agent, nobody):
        join(person, desk_dept)
    join(member, members_dept)
    owner = factories.end_user(name="Olga Owner", email="owner@example.com")
    other = factories.end_user(name="Otto Other", email="other@example.com")
    to_delete = factories.end_user(name="Dora Doomed", email="doomed@example.com")
    to_erase = factories.end_user(name="Eve Erasable", email="erasable@example.com")

    def submitted(user, subject):
        return ticket_service.submit(user, subject, "details", desk_dept.id,
                                     [files.Upload(filename=f"{subject}.txt", stream=io.BytesIO(b"x\n"))])

    ticket = submitted(owner, "Own ticket")
    foreign = submitted(other, "Someone else's ticket")
    doomed = factories.ticket(owner, "Ticket to delete", department=desk_dept)
    own_file = files_of(ticket)[0]
    foreign_file = files_of(foreign)[0]
    comment = ticket_service.reply(admin, ticket.id, "a comment to delete", True)

    binned = {}
    for key in ("restore", "purge"):
        t = factories.ticket(owner, f"binned ticket ({key})", department=desk_dept)
        ticket_service.delete_ticket(admin, t.id)
        c = ticket_service.reply(admin, ticket.id, f"binned comment ({key})", False)
        ticket_service.delete_comment(admin, ticket.id, c.id)
        binned[("tickets", key)], binned[("comments", key)] = t.id, c.id
    gone_contact = factories.end_user(name="Gina Gone", email="gone@example.com")
    gone_agent = factories.agent(name="Gus Gone", email="gone.agent@example.com")
    recycle_bin.delete_person(admin, gone_contact.id)
    recycle_bin.delete_person(admin, gone_agent.id)
    binned[("contacts", "restore")], binned[("agents", "restore")] = gone_contact.id, gone_agent.id

    change = email_change.request_change(other, "otto.new@example.com")
    subject_request = DataSubjectRequest.get(DataSubjectRequest.email_change_id == change.id)
    breach = breaches.record(admin, {"discovered_at": utcnow(), "description": "Matrix breach"})
    cards = {}
    for module, record in (("tickets", ticket), ("contacts", owner)):
        cards[module] = custom_fields.create(admin, module, {
            "key": "card", "label": "Card", "type": "card", "encrypted": True})
        custom_fields.set_values(admin, module, record, {"cf_card": "4111 1111 1111 1111"})
    trash = custom_fields.create(admin, "contacts", {"key": "trash", "label": "Trash", "type": "text"})
    restorable = custom_fields.create(admin, "contacts", {"key": "back", "label": "Back", "type": "text"})
    custom_fields.delete(admin, restorable.id)
    someones_token, _ = tokens.create(member, "member's token")
    sessions.start(member, "192.0.2.1", "matrix")
    session_row = BrowserSession.get(BrowserSession.user == member.id)
    made = bulk_export.run(bulk_export.start(admin).id)
    return {
        "people": {"admin": admin, "light": light, "agent": agent, "nobody": nobody, "owner": owner},
        "args": {"ticket_id": ticket.id, "comment_id": comment.id, "department_id": members_dept.id,
                 "agent_id": member.id, "request_id": change.id, "role_id": nothing.id,
                 "token": "not-a-valid-token", "key": "card",
                 "token_id": someones_token.id, "export_id": made.id,
                 "session_id": session_row.id, "breach_id": breach.id},
        "overrides": {
            "agent.delete_ticket": {"ticket_id": doomed.id},
            "privacy.delete_person": {"user_id": to_delete.id},
            "privacy.erase": {"user_id": to_erase.id},
            "roles.delete_role": {"role_id": disposable.id},
            "fields.contact": {"user_id": owner.id},
            "fields.contact_fields": {"user_id": owner.id},
            "fields.reveal_contact_field": {"user_id": owner.id},
            "fields.edit_field": {"field_id": cards["tickets"].id},
            "fields.delete_field": {"field_id": trash.id},
            "fields.restore_field": {"field_id": restorable.id},
            **{f"privacy_center.{name}": {"request_id": subject_request.id}
               for name in ("request_detail", "extend", "link", "close")},
        },
        "own": {"ticket_id": ticket.id, "attachment_id": own_file.id},
        "foreign": {"ticket_id": foreign.id, "attachment_id": foreign_file.id},
        "binned": binned,
        "post_data": {
            # Enough for the form to be valid, so the permission check (not form
            # validation) decides; every value leaves the record as it was.
            "agent.reply": {"body": "matrix note", "visibility": "private"},
            "agent.properties": {"status": "open", "priority": "normal", "department": desk_dept.id,
                                 "assignee": 0},
            "admin.add_member": {"agent": agent.id},
            "portal.ticket": {"body": "matrix reply"},
            "portal.ticket_status": {"status": "open"},
            "fields.edit_field": {"label": "Card", "encrypted": "y"},
            "fields.field_list": {"module": "tickets", "key": "matrix", "label": "Matrix", "type": "text"},
            "agent.ticket_fields": {"cf_card": ""},
            "fields.contact_fields": {"cf_card": ""},
        },
    }


def reload_ticket(ticket_id) -> Ticket:
    return Ticket.get_by_id(ticket_id)


def files_of(ticket):
    return ticket_service.ticket_files(ticket)


def matrix_cases(app, m) -> list[tuple[str, str, str, str, str]]:
    """(endpoint, method, path, variant, module) for every route, method and
    any(...) value; own-record routes twice, with the signed-in end user's own
    record and with another end user's. The sign-out comes last."""
    cases = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("api."):
            continue
        head = RULES.get(rule.endpoint, "").partition("|")[0]
        variants = ["own", "foreign"] if head == "own-record" else [""]
        choices = {name: sorted(getattr(conv, "items", ()))
                   for name, conv in rule._converters.items() if getattr(conv, "items", None)}
        modules = choices.get("module", [""])
        for variant in variants:
            for module in modules:
                values = {**m["args"], **m["overrides"].get(rule.endpoint, {}),
                          **(m[variant] if variant else {}), "module": module}
                if "record_id" in rule.arguments:
                    kind = "purge" if rule.endpoint == "privacy.purge_now" else "restore"
                    values["record_id"] = m["binned"][(module, kind)]
                path = rule.rule
                for name in rule.arguments:
                    path = re.sub(r"<(?:[^<>]+:)?%s>" % name, str(values[name]), path)
                for method in sorted(rule.methods & {"GET", "POST"}):
                    cases.append((rule.endpoint, method, path, variant, module))
    last = {"me.end_all_sessions": 1, "auth.logout": 2}
    cases.sort(key=lambda c: last.get(c[0], 0))
    return cases


TOKEN_PAGES = {"anonymous": "/login", "end_user": "/my/info"}


@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(role, matrix, ctx):
    m = matrix
    who = ROLES[role][0]
    client = signed_in(ctx, m["people"][who]) if who else browser(ctx)
    token = form_token(client, TOKEN_PAGES.get(role, "/agent/settings/my-info"))
    cases = matrix_cases(ctx, m)
    assert len({c[0] for c in cases}) == len([e for e in RULES if not e.startswith("api.")])
    wrong = []
    for endpoint, method, path, variant, module in cases:
        rule = RULES[endpoint].replace("{module}", module)
        want = expected_outcome(rule, role, method, variant)
        if method == "GET":
            resp = client.get(path)
        else:
            resp = client.post(path, data={**m["post_data"].get(endpoint, {}), "csrf_token": token})
            assert CSRF_MESSAGE.encode() not in resp.get_data(), \
                f"CSRF, not permission, decided {method} {path}"
        resp.get_data()  # read it all, as a browser does (exports stream)
        got = actual_outcome(resp)
        if got != want:
            wrong.append(f"{method} {path} [{endpoint}: {rule}]: expected {want}, got {got} "
                         f"({resp.status_code} {resp.headers.get('Location', '')})")
        if endpoint == "me.end_all_sessions" and method == "POST" and who:
            # Signed out everywhere: sign in again for the sign-out case.
            assert actual_outcome(client.get("/my/tickets")) == LOGIN
            assert login(client, m["people"][who].email, factories.PASSWORD).status_code == 302
            token = form_token(client, TOKEN_PAGES.get(role, "/agent/settings/my-info"))
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    if who:  # the sign-out (the last case) really ended the session
        assert actual_outcome(client.get("/my/tickets")) == LOGIN
    # What was refused left no trace; what was allowed really happened.
    done = role == "administrator"
    ids = m["args"]
    assert (reload_ticket(m["overrides"]["agent.delete_ticket"]["ticket_id"]).deleted_at is not None) == done
    assert (Comment.get_by_id(ids["comment_id"]).deleted_at is not None) == done
    assert (Role.get_or_none(Role.id == m["overrides"]["roles.delete_role"]["role_id"]) is None) == done
    assert (User.get_by_id(m["overrides"]["privacy.delete_person"]["user_id"]).deleted_at is not None) == done
    assert (reload_ticket(m["binned"][("tickets", "restore")]).deleted_at is None) == done
    assert (Ticket.get_or_none(Ticket.id == m["binned"][("tickets", "purge")]) is None) == done
    assert (EmailChangeRequest.get_by_id(ids["request_id"]).status != "pending") == done
    assert (Role.select().where(Role.name.startswith("Nothing at all (copy")).exists()) == done
    fields = {f.key: f for f in CustomField.select()}
    assert (fields["trash"].deleted_at is not None) == done
    assert (fields["back"].deleted_at is None) == done
    assert ("matrix" in fields) == done
    reveals = AuditEntry.select().where(AuditEntry.action == "reveal").count()
    assert reveals == (2 if done else 0)


API_BODIES = {
    "api.create_ticket": lambda role: {"subject": "matrix ticket", "description": "via the API"},
    "api.update_ticket": lambda role: {"status": "open"},
    "api.add_comment": lambda role: ({"body": "matrix reply"} if role == "end_user"
                                     else {"body": "matrix note", "public": False}),
    "api.create_contact": lambda role: {"name": "Matrix Contact", "email": f"matrix-{role}@example.com"},
    "api.update_contact": lambda role: {"name": "Olga Owner"},
}


def api_outcome(resp) -> str:
    if resp.status_code == 401:
        return LOGIN  # the API's "sign in first"
    return actual_outcome(resp)


@pytest.mark.parametrize("role", list(ROLES))
def test_api_permission_matrix(role, matrix, ctx):
    """Every API route x every role, called with a token of that role."""
    m = matrix
    who = ROLES[role][0]
    headers = {}
    if who:
        headers["Authorization"] = "Bearer " + tokens.create(m["people"][who], "matrix")[1]
    client = browser(ctx)
    values_for = {**m["args"], "contact_id": m["people"]["owner"].id}
    wrong, seen = [], set()
    for rule in ctx.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        seen.add(rule.endpoint)
        head = RULES[rule.endpoint].partition("|")[0]
        for variant in (["own", "foreign"] if head == "own-record" else [""]):
            values = {**values_for, **(m[variant] if variant else {})}
            path = rule.rule
            for name in rule.arguments:
                path = re.sub(r"<(?:[^<>]+:)?%s>" % name, str(values[name]), path)
            for method in sorted(rule.methods & {"GET", "POST", "PATCH"}):
                body = API_BODIES.get(rule.endpoint)
                resp = client.open(path, method=method, headers=headers,
                                   json=body(role) if body else None)
                want = expected_outcome(RULES[rule.endpoint], role, method, variant)
                got = api_outcome(resp)
                if got != want:
                    wrong.append(f"{method} {path} [{rule.endpoint}: {RULES[rule.endpoint]}]: expected "
                                 f"{want}, got {got} ({resp.status_code} {resp.get_data(as_text=True)[:200]})")
    assert seen == {e for e in RULES if e.startswith("api.")}
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


# ==================================================================================
# 2. No page renders a value the role may not see
# ==================================================================================

SECRET_EMAIL = "rhea.hidden@example.com"
SECRET_PHONE = "+44 20 7946 0958"
SECRET_TEXT = "The vault combination is 4711-XK"
WORKER = ("tickets:view", "tickets:edit", "comments:view", "comments:create", "contacts:view")
HIDDEN_FIELDS = {"contacts.email": "hidden", "contacts.phone": "hidden",
                 "tickets.priority": "hidden", "tickets.description": "hidden"}
PRIORITY_SELECT = re.compile(r'<select[^>]*name="priority"')
PRIORITY_BADGE = 'class="badge priority-'


@pytest.fixture
def secret(ctx):
    """An urgent ticket whose requester has an email and a phone, and whose
    description holds a secret."""
    admin = factories.admin(name="Ada Admin")
    requester = factories.end_user(name="Rhea Requester", email=SECRET_EMAIL)
    audit.update(audit.SYSTEM, requester, phone=SECRET_PHONE)
    support = factories.department("Support")
    ticket = factories.ticket(requester, "Harmless subject", description=SECRET_TEXT,
                              priority="urgent", department=support)
    calm = factories.ticket(requester, "A calm one", priority="low", department=support)
    return {"admin": admin, "requester": requester, "support": support, "ticket": ticket, "calm": calm}


def worker(levels: dict, name: str = "Field test role"):
    return agent_with(make_role(name, WORKER, "all", levels), name="Wes Worker")


def test_hidden_fields_appear_on_no_page(secret, ctx):
    t = secret["ticket"]
    # The control: the values do show for a role that may see them.
    admin = signed_in(ctx, secret["admin"])
    page = html(admin.get(f"/agent/tickets/{t.id}"))
    assert SECRET_EMAIL in page and SECRET_PHONE in page and SECRET_TEXT in page
    assert PRIORITY_BADGE + "urgent" in page and PRIORITY_SELECT.search(page)
    assert PRIORITY_BADGE + "urgent" in html(admin.get("/agent/tickets?view=all"))

    agent = signed_in(ctx, worker(HIDDEN_FIELDS))
    listing = agent.get("/agent/tickets?view=all")
    assert listed(listing) == {t.id, secret["calm"].id}
    ticket_page = agent.get(f"/agent/tickets/{t.id}")
    assert ticket_page.status_code == 200
    for resp in (listing, ticket_page):
        page = html(resp)
        assert "Rhea Requester" in page  # the name is not hidden
        for value in (SECRET_EMAIL, SECRET_PHONE, SECRET_TEXT, "mailto:", PRIORITY_BADGE):
            assert value not in page, value
    page = html(ticket_page)
    assert "Harmless subject" in page
    assert not PRIORITY_SELECT.search(page)
    assert "<dt>Priority</dt>" not in page and ">Urgent<" not in page
    assert re.search(r'<select[^>]*name="status"', page)  # the editable ones stay editable
    # Changing a hidden field is refused too.
    resp = post(agent, f"/agent/tickets/{t.id}/properties",
                {"status": "open", "priority": "low", "department": secret["support"].id, "assignee": 0})
    assert resp.status_code == 403
    assert reload(t).priority == "urgent"



# hidden field -> two filters that differ only in the hidden value; with the value
# hidden, the list must not answer them differently.
HIDDEN_FILTERS = {
    "tickets.priority": ("priority=urgent", "priority=low"),
    "tickets.status": ("status=open", "status=on_hold"),
    "tickets.department": ("department={support}", "department={elsewhere}"),
    "tickets.assignee": ("assignee={admin}", "assignee=none"),
    "tickets.subject": ("q=Harmless", "q=nothing+like+it"),
    "tickets.requester": ("requester=Rhea", "requester=Nobody"),
    "contacts.email": (f"requester={SECRET_EMAIL}", "requester=someone.else@example.com"),
}


def test_list_filters_do_not_reveal_hidden_fields(secret, ctx):
    """E.g. with the priority hidden, ?priority=urgent must not pick out the urgent tickets."""
    audit.update(audit.SYSTEM, secret["ticket"], assignee=secret["admin"])
    elsewhere = factories.department("Elsewhere")
    ids = {"support": secret["support"].id, "elsewhere": elsewhere.id, "admin": secret["admin"].id}
    leaks = []
    for field, queries in HIDDEN_FILTERS.items():
        agent = signed_in(ctx, worker({field: "hidden"}, name=f"Hides {field}"))
        one, other = (q.format(**ids) for q in queries)
        if listed(agent.get(f"/agent/tickets?view=all&{one}")) != \
                listed(agent.get(f"/agent/tickets?view=all&{other}")):
            leaks.append(f"{field}: ?{one} and ?{other} list different tickets")
        name = field.partition(".")[2]
        if re.search(rf'<select[^>]*name="{name}"', html(agent.get("/agent/tickets?view=all"))):
            leaks.append(f"{field}: the list offers a {name} filter")
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("field", [
    "contacts.name",
    "tickets.requester",
])
def test_a_hidden_requester_name_appears_on_no_page(field, secret, ctx):
    t = secret["ticket"]
    ticket_service.reply(secret["requester"], t.id, "Any news?", True)
    agent = signed_in(ctx, worker({field: "hidden"}))
    listing, page = agent.get("/agent/tickets?view=all"), agent.get(f"/agent/tickets/{t.id}")
    assert t.id in listed(listing) and "Any news?" in html(page)
    assert "Rhea Requester" not in html(listing)
    assert "Rhea Requester" not in html(page)


def test_the_contacts_list_hides_hidden_contact_fields(secret, ctx):
    agent = signed_in(ctx, worker(HIDDEN_FIELDS))
    page = html(agent.get("/agent/contacts"))
    assert "Rhea Requester" in page
    assert SECRET_EMAIL not in page and SECRET_PHONE not in page
    assert "Rhea Requester" not in html(agent.get("/agent/contacts?q=rhea.hidden"))


def test_a_read_only_priority_is_shown_as_text_and_cannot_be_changed(secret, ctx):
    reader = worker({"tickets.priority": "read"})
    agent = signed_in(ctx, reader)
    t, dept = secret["ticket"], secret["support"].id
    page = html(agent.get(f"/agent/tickets/{t.id}"))
    assert "<dt>Priority</dt><dd>Urgent</dd>" in page
    assert PRIORITY_BADGE + "urgent" in page
    assert not PRIORITY_SELECT.search(page)
    assert re.search(r'<select[^>]*name="status"', page)
    updates = AuditEntry.select().where(AuditEntry.record_type == "Ticket",
                                        AuditEntry.record_id == str(t.id), AuditEntry.action == "update")
    before = updates.count()

    # A change to the read-only field is refused, not silently dropped.
    resp = post(agent, f"/agent/tickets/{t.id}/properties",
                {"status": "on_hold", "priority": "low", "department": dept, "assignee": 0})
    assert resp.status_code == 403
    fresh = reload(t)
    assert (fresh.priority, fresh.status) == ("urgent", "open")
    assert updates.count() == before

    # Only an editable field: applied.
    resp = post(agent, f"/agent/tickets/{t.id}/properties",
                {"status": "on_hold", "department": dept, "assignee": 0})
    assert resp.status_code == 302
    assert (reload(t).status, reload(t).priority) == ("on_hold", "urgent")

    # The read-only field with its current value (as a form showing it would send it): accepted.
    resp = post(agent, f"/agent/tickets/{t.id}/properties",
                {"status": "closed", "priority": "urgent", "department": dept, "assignee": 0})
    assert resp.status_code == 302
    assert (reload(t).status, reload(t).priority) == ("closed", "urgent")
    assert updates.count() == before + 2


# ==================================================================================
# 3. Data-sharing scopes and private departments
# ==================================================================================

VIEWER = ("tickets:view", "comments:view", "comments:create")


@pytest.fixture
def scopes(ctx):
    sales, support = factories.department("Sales"), factories.department("Support")
    vault = audit.create(audit.SYSTEM, Department, name="Vault", is_private=True)
    sees_all = make_role("Sees all", VIEWER, "all")
    sees_assigned = make_role("Sees assigned", VIEWER, "assigned")
    people = {
        "all": agent_with(sees_all, name="Alma All"),
        "all_in_vault": agent_with(sees_all, name="Vera Vault"),
        "departments": factories.agent(name="Dan Departments"),  # built-in Agent: own departments
        "departments_in_vault": factories.agent(name="Val Vaultdept"),
        "assigned": agent_with(sees_assigned, name="Asa Assigned"),
    }
    join(people["all"], sales)
    join(people["all_in_vault"], vault)
    join(people["departments"], sales)
    join(people["departments_in_vault"], vault)
    join(people["assigned"], sales)
    ann = factories.end_user(name="Ann Customer")
    admin = factories.admin()
    t = {
        "sales": factories.ticket(ann, "in sales", department=sales),
        "support": factories.ticket(ann, "in support", department=support),
        "loose": factories.ticket(ann, "in no department"),
        "vault": factories.ticket(ann, "in the private vault", department=vault),
        "for_dept": factories.ticket(ann, "support, assigned to Dan", department=support,
                                     assignee=people["departments"]),
        "for_assigned": factories.ticket(ann, "support, assigned to Asa", department=support,
                                         assignee=people["assigned"]),
    }
    note = ticket_service.reply(admin, t["vault"].id, "vault note", False,
                                [files.Upload(filename="vault.txt", stream=io.BytesIO(b"secret\n"))])
    return {"people": people, "tickets": t, "vault": vault,
            "vault_file": Attachment.get(Attachment.comment == note.id)}


SEES = {
    "all": {"sales", "support", "loose", "for_dept", "for_assigned"},
    "all_in_vault": {"sales", "support", "loose", "vault", "for_dept", "for_assigned"},
    "departments": {"sales", "loose", "for_dept"},
    "departments_in_vault": {"loose", "vault"},
    "assigned": {"for_assigned"},
}


def test_each_scope_sees_exactly_its_tickets_in_lists_and_pages(scopes, ctx):
    t = scopes["tickets"]
    missing_id = max(x.id for x in t.values()) + 1000
    for who, names in SEES.items():
        agent = signed_in(ctx, scopes["people"][who])
        assert listed(agent.get("/agent/tickets?view=all")) == {t[n].id for n in names}, who
        nothing_there = agent.get(f"/agent/tickets/{missing_id}")
        assert nothing_there.status_code == 404
        for name, ticket in t.items():
            resp = agent.get(f"/agent/tickets/{ticket.id}")
            if name in names:
                assert resp.status_code == 200, (who, name)
                continue
            assert resp.status_code == 404, (who, name)
            # The answer for an invisible ticket is the one for no ticket at all.
            assert main_part(resp) == main_part(nothing_there)
            resp = post(agent, f"/agent/tickets/{ticket.id}/reply", {"body": "hello", "visibility": "private"})
            assert resp.status_code == 404, (who, name)
        download = agent.get(f"/attachments/{scopes['vault_file'].id}")
        assert download.status_code == (200 if "vault" in names else 404), who
    assert Comment.select().where(Comment.body == "hello").count() == 0


def test_private_department_tickets_need_membership_even_with_scope_all(scopes, ctx):
    vault_ticket = scopes["tickets"]["vault"].id
    outsider = signed_in(ctx, scopes["people"]["all"])
    member = signed_in(ctx, scopes["people"]["all_in_vault"])
    assert outsider.get(f"/agent/tickets/{vault_ticket}").status_code == 404
    assert member.get(f"/agent/tickets/{vault_ticket}").status_code == 200
    # Joining the department opens it on the next request; leaving closes it again.
    alma, vault = scopes["people"]["all"], scopes["vault"]
    join(alma, vault)
    assert outsider.get(f"/agent/tickets/{vault_ticket}").status_code == 200
    audit.delete(audit.SYSTEM, AgentDepartment.get(AgentDepartment.agent == alma.id,
                                                   AgentDepartment.department == vault.id))
    assert outsider.get(f"/agent/tickets/{vault_ticket}").status_code == 404


BIN_ROW_TITLE = re.compile(r"<tr>\s*<td>(.*?)</td>", re.S)


def bin_titles(client, module: str, q: str = "") -> list[str]:
    resp = client.get(f"/agent/recycle-bin?module={module}" + (f"&q={q}" if q else ""))
    assert resp.status_code == 200, resp.status_code
    return [html_module.unescape(t).strip() for t in BIN_ROW_TITLE.findall(main_part(resp))]


def test_the_recycle_bin_follows_each_scope_like_the_live_pages(scopes, ctx):
    """Custom roles holding the bin and restore permissions see in the bin exactly
    the deleted tickets (and their comments) they saw live, and restore no other."""
    t, people = scopes["tickets"], scopes["people"]
    admin = factories.admin()
    for who in people:
        scope = "departments" if who.startswith("departments") else people[who].role.ticket_scope
        binned = make_role(f"Bin {who}", VIEWER + ("recycle_bin:view", "tickets:restore",
                                                   "comments:restore"), scope)
        audit.update(audit.SYSTEM, people[who], role=binned)
    notes = {name: ticket_service.reply(admin, ticket.id, f"note on {name}", False)
             for name, ticket in t.items()}
    for name, note in notes.items():
        ticket_service.delete_comment(admin, t[name].id, note.id)
    for ticket in t.values():
        ticket_service.delete_ticket(admin, ticket.id)
    for who, names in SEES.items():
        agent = signed_in(ctx, people[who])
        assert sorted(bin_titles(agent, "tickets")) == sorted(f"#{t[n].id} {t[n].subject}" for n in names), who
        assert sorted(bin_titles(agent, "comments")) == sorted(
            f"#{t[n].id}: note on {n}" for n in names), who
        # The search does not find what the scope hides.
        assert bin_titles(agent, "tickets", "vault") == (
            [f"#{t['vault'].id} in the private vault"] if "vault" in names else []), who
        for name in set(t) - names:
            assert post(agent, f"/agent/recycle-bin/tickets/{t[name].id}/restore").status_code == 404, (who, name)
            assert post(agent, f"/agent/recycle-bin/comments/{notes[name].id}/restore").status_code == 404
            assert reload(t[name]).deleted_at is not None and reload(notes[name]).deleted_at is not None
    # Asa (assigned) restores the one ticket she may open.
    asa = signed_in(ctx, people["assigned"])
    assert post(asa, f"/agent/recycle-bin/tickets/{t['for_assigned'].id}/restore").status_code == 302
    assert reload(t["for_assigned"]).deleted_at is None


def test_the_recycle_bin_keeps_hidden_fields_and_unpermitted_modules_out(ctx):
    """The review's role: bin + restore, scope "assigned to me", contact name and
    email hidden, no comments:view. It saw a private ticket's subject, a private
    note's body, a contact's name and email, and restored a ticket it cannot open."""
    admin = factories.admin()
    vault = audit.create(audit.SYSTEM, Department, name="Vault", is_private=True)
    odd = make_role("Odd bin keeper", ("tickets:view", "contacts:view", "recycle_bin:view",
                                       "tickets:restore", "comments:restore", "contacts:restore"),
                    "assigned", {"contacts.name": "hidden", "contacts.email": "hidden"})
    keeper = agent_with(odd, name="Kit Keeper")
    ann = factories.end_user(name="Harriet Hidden", email="harriet@example.com")
    secret = factories.ticket(ann, "Merger plans", department=vault)
    mine = factories.ticket(ann, "Keeper's own ticket", assignee=keeper)
    note = ticket_service.reply(admin, mine.id, "private note body", False)
    ticket_service.delete_comment(admin, mine.id, note.id)
    ticket_service.delete_ticket(admin, secret.id)
    ticket_service.delete_ticket(admin, mine.id)
    recycle_bin.delete_person(admin, ann.id)

    client = signed_in(ctx, keeper)
    page = html(client.get("/agent/recycle-bin"))
    for leaked in ("Merger plans", "private note body", "Harriet", "harriet@example.com"):
        assert leaked not in page, leaked
    assert 'module=comments"' not in page  # no tab for a module the role may not view
    assert bin_titles(client, "tickets") == [f"#{mine.id} Keeper's own ticket"]
    # Asking for the comments tab opens a tab the role may view instead.
    assert "private note body" not in html(client.get("/agent/recycle-bin?module=comments"))
    assert bin_titles(client, "contacts") == [f"#{ann.id}"]
    assert bin_titles(client, "contacts", "Harriet") == []  # no search on a hidden field
    assert post(client, f"/agent/recycle-bin/tickets/{secret.id}/restore").status_code == 404
    assert post(client, f"/agent/recycle-bin/comments/{note.id}/restore").status_code == 404
    assert reload(secret).deleted_at is not None and reload(note).deleted_at is not None
    assert post(client, f"/agent/recycle-bin/tickets/{mine.id}/restore").status_code == 302
    assert post(client, f"/agent/recycle-bin/contacts/{ann.id}/restore").status_code == 302
    assert reload(mine).deleted_at is None and reload(ann).deleted_at is None


# ==================================================================================
# 4. The roles admin UI
# ==================================================================================

def role_form(name: str, scope: str, permissions=(), levels: dict | None = None) -> list[tuple[str, str]]:
    """The role page's form as a browser posts it: name, scope, one
    ``permissions`` pair per ticked box, ``field:<module>.<field>`` per select."""
    pairs = [("name", name), ("ticket_scope", scope)]
    pairs += [("permissions", p) for p in permissions]
    pairs += [(f"field:{key}", level) for key, level in (levels or {}).items()]
    return pairs


def checked_boxes(page: str) -> set[str]:
    return set(re.findall(r'name="permissions" value="([^"]+)"[^>]*\bchecked\b', page))


def selected_levels(page: str) -> dict[str, str]:
    levels = {}
    for key, options in re.findall(r'<select name="field:([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        levels[key] = re.search(r'<option value="(\w+)" selected>', options).group(1)
    return levels


@pytest.fixture
def admin_browser(ctx):
    admin = factories.admin(name="Ada Admin", email="ada@example.com")
    return admin, signed_in(ctx, admin)


def test_admin_creates_copies_edits_and_deletes_roles(admin_browser, ctx):
    admin, b = admin_browser
    listing = html(b.get("/agent/settings/roles"))
    for name in ("Administrator", "Agent", "Light Agent"):
        assert f">{name}</a>" in listing
    new_page = b.get("/agent/settings/roles/new")
    assert new_page.status_code == 200
    assert len(re.findall(r'name="permissions"', html(new_page))) == len(policy.MODULES) * len(policy.ACTIONS)

    # Create.
    resp = post(b, "/agent/settings/roles", role_form(
        "Billing desk", "assigned", ["tickets:view", "comments:view", "exports:export"],
        {"tickets.priority": "read", "contacts.phone": "hidden", "contacts.email": "edit"}))
    assert resp.status_code == 302
    role = Role.get(Role.name == "Billing desk")
    assert urlsplit(resp.headers["Location"]).path == f"/agent/settings/roles/{role.id}"
    assert (role.builtin, role.is_admin, role.ticket_scope) == (False, False, "assigned")
    assert set(json.loads(role.permissions)) == {"tickets:view", "comments:view", "exports:export"}
    assert json.loads(role.field_permissions) == {"tickets.priority": "read", "contacts.phone": "hidden"}
    page = html(b.get(f"/agent/settings/roles/{role.id}"))
    assert checked_boxes(page) == {"tickets:view", "comments:view", "exports:export"}
    levels = selected_levels(page)
    assert len(levels) == sum(len(names) for names in policy.FIELDS.values())
    assert (levels["tickets.priority"], levels["contacts.phone"], levels["tickets.status"]) == \
        ("read", "hidden", "edit")
    [created] = role_entries(role.id, "create")
    assert created.actor_id == admin.id
    changes = audit.read_changes(created)
    assert changes["name"] == [None, "Billing desk"]
    assert changes["ticket_scope"] == [None, "assigned"]
    assert set(json.loads(changes["permissions"][1])) == {"tickets:view", "comments:view", "exports:export"}

    # Copy a built-in role: a custom role with the same permissions and scope.
    builtin = Role.get(Role.name == "Agent")
    resp = post(b, f"/agent/settings/roles/{builtin.id}/copy")
    assert resp.status_code == 302
    copy = Role.get(Role.name == "Agent (copy)")
    assert urlsplit(resp.headers["Location"]).path == f"/agent/settings/roles/{copy.id}"
    assert not copy.builtin and not copy.is_admin
    assert set(json.loads(copy.permissions)) == set(json.loads(builtin.permissions)) == AGENT_PERMISSIONS
    assert copy.ticket_scope == builtin.ticket_scope
    assert len(role_entries(copy.id, "create")) == 1
    assert post(b, f"/agent/settings/roles/{builtin.id}/copy").status_code == 302
    assert Role.select().where(Role.name == "Agent (copy 2)").exists()

    # Edit the copy.
    resp = post(b, f"/agent/settings/roles/{copy.id}", role_form(
        "Agent, no contacts", "all", ["tickets:view", "tickets:edit", "comments:view"],
        {"contacts.email": "hidden", "tickets.description": "read"}))
    assert resp.status_code == 302
    copy = reload(copy)
    assert (copy.name, copy.ticket_scope) == ("Agent, no contacts", "all")
    assert set(json.loads(copy.permissions)) == {"tickets:view", "tickets:edit", "comments:view"}
    assert json.loads(copy.field_permissions) == {"contacts.email": "hidden", "tickets.description": "read"}
    [edited] = role_entries(copy.id, "update")
    assert edited.actor_id == admin.id
    changes = audit.read_changes(edited)
    assert changes["name"] == ["Agent (copy)", "Agent, no contacts"]
    assert changes["ticket_scope"] == ["departments", "all"]
    old, new = (set(json.loads(v)) for v in changes["permissions"])
    assert (old, new) == (AGENT_PERMISSIONS, {"tickets:view", "tickets:edit", "comments:view"})
    assert [json.loads(v) for v in changes["field_permissions"]] == \
        [{}, {"contacts.email": "hidden", "tickets.description": "read"}]
    # Saving the same values again changes (and records) nothing.
    post(b, f"/agent/settings/roles/{copy.id}", role_form(
        "Agent, no contacts", "all", ["tickets:view", "tickets:edit", "comments:view"],
        {"contacts.email": "hidden", "tickets.description": "read"}))
    assert len(role_entries(copy.id, "update")) == 1

    # Delete it.
    resp = post(b, f"/agent/settings/roles/{copy.id}/delete")
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).path == "/agent/settings/roles"
    assert Role.get_or_none(Role.id == copy.id) is None
    [deleted] = role_entries(copy.id, "delete")
    assert deleted.actor_id == admin.id
    assert audit.read_changes(deleted)["name"] == ["Agent, no contacts", None]
    assert b.get(f"/agent/settings/roles/{copy.id}").status_code == 404


def test_built_in_roles_cannot_be_edited_or_deleted(admin_browser, ctx):
    admin, b = admin_browser
    for name in ("Administrator", "Agent", "Light Agent"):
        role = Role.get(Role.name == name)
        before = (role.name, role.permissions, role.field_permissions, role.ticket_scope)
        page = html(b.get(f"/agent/settings/roles/{role.id}"))
        assert "Built-in roles cannot be changed" in page
        assert re.search(r'name="permissions" value="tickets:view"[^>]*disabled', page)
        resp = post(b, f"/agent/settings/roles/{role.id}",
                          role_form(f"{name} renamed", "assigned", ["tickets:view"]))
        assert resp.status_code == 403, name
        assert post(b, f"/agent/settings/roles/{role.id}/delete").status_code == 403, name
        fresh = reload(role)
        assert (fresh.name, fresh.permissions, fresh.field_permissions, fresh.ticket_scope) == before
        assert role_entries(role.id, "update") == [] and role_entries(role.id, "delete") == []


def test_role_rules_in_use_duplicate_and_unknown_values(admin_browser, ctx):
    admin, b = admin_browser
    used = make_role("In use", ("tickets:view",))
    agent_with(used, name="Uma User")
    resp = post(b, f"/agent/settings/roles/{used.id}/delete")
    assert resp.status_code == 409
    assert "Agents still have this role" in html(resp)
    assert Role.get_or_none(Role.id == used.id) is not None

    count = Role.select().count()
    for name in ("Agent", "In use"):
        assert post(b, "/agent/settings/roles", role_form(name, "all")).status_code == 409, name
    resp = post(b, f"/agent/settings/roles/{used.id}", role_form("Light Agent", "all", ["tickets:view"]))
    assert resp.status_code == 409
    assert reload(used).name == "In use"

    bad = [
        role_form("Bad permission", "all", ["tickets:fly"]),
        role_form("Bad module", "all", ["kitchen:view"]),
        role_form("Bad level", "all", [], {"tickets.priority": "secret"}),
        role_form("Bad field", "all", [], {"tickets.nonexistent": "read"}),
        role_form("Bad scope", "everything", ["tickets:view"]),
        role_form("", "all", ["tickets:view"]),
    ]
    for pairs in bad:
        assert post(b, "/agent/settings/roles", pairs).status_code == 400, pairs
        assert post(b, f"/agent/settings/roles/{used.id}", pairs).status_code == 400, pairs
    assert Role.select().count() == count
    fresh = reload(used)
    assert (fresh.permissions, fresh.field_permissions) == ('["tickets:view"]', "{}")
    assert role_entries(used.id, "update") == []


# ==================================================================================
# 5. A permission removed is gone on the agent's next request
# ==================================================================================

def test_removing_a_permission_takes_effect_on_the_next_request(admin_browser, ctx):
    admin, admin_b = admin_browser
    role = make_role("Ticket viewer", ("tickets:view", "comments:view"), "all")
    agent = signed_in(ctx, agent_with(role, name="Tess Viewer"))
    assert agent.get("/agent/tickets").status_code == 200

    page = html(admin_b.get(f"/agent/settings/roles/{role.id}"))
    assert {"tickets:view", "comments:view"} == checked_boxes(page)
    resp = post(admin_b, f"/agent/settings/roles/{role.id}",
                      role_form("Ticket viewer", "all", ["comments:view"], selected_levels(page)))
    assert resp.status_code == 302

    assert agent.get("/agent/tickets").status_code == 403  # same session, no new sign-in
    [change] = role_entries(role.id, "update")
    old, new = (set(json.loads(v)) for v in audit.read_changes(change)["permissions"])
    assert "tickets:view" in old and "tickets:view" not in new

    # And granting it back works just as fast.
    post(admin_b, f"/agent/settings/roles/{role.id}",
               role_form("Ticket viewer", "all", ["comments:view", "tickets:view"]))
    assert agent.get("/agent/tickets").status_code == 200


# ==================================================================================
# 6. The effective-permissions view, roles of agents, new agents
# ==================================================================================

MATRIX_ROW = re.compile(r'<tr><th scope="row">([^<·]+)</th>((?:<td>[^<]*</td>)+)</tr>')
FIELD_ROW = re.compile(r'<tr><th scope="row">([^<]+) · ([^<]+)</th><td>([^<]+)</td></tr>')
SCOPE_SENTENCES = {
    "all": "All tickets (except private departments they are not in)",
    "departments": "Tickets of their departments and tickets assigned to them",
    "assigned": "Only tickets assigned to them",
}


def _codes(name: str, codes) -> dict[str, str]:
    """Shown label -> stored code, from the app's label table (the code itself
    when a code has no label)."""
    from desk.web import labels
    table = getattr(labels, name, {})
    return {**{c: c for c in codes}, **{str(table[c]): c for c in codes if c in table}}


def shown_matrix(page: str) -> dict[str, set[str]]:
    """module -> the actions ticked on the effective-permissions page."""
    modules = _codes("MODULE_LABELS", policy.MODULES)
    shown = {}
    for label, cells in MATRIX_ROW.findall(page):
        marks = re.findall(r"<td>([^<]*)</td>", cells)
        assert len(marks) == len(policy.ACTIONS) and set(marks) <= {"✓", "·"}, marks
        shown[modules[label]] = {a for a, mark in zip(policy.ACTIONS, marks) if mark == "✓"}
    return shown


def shown_fields(page: str) -> dict[str, str]:
    modules = _codes("MODULE_LABELS", policy.FIELDS)
    fields = _codes("FIELD_LABELS", {f for names in policy.FIELDS.values() for f in names})
    levels = _codes("LEVEL_LABELS", policy.ACCESS_LEVELS)
    levels.update({"Editable": "edit", "Read-only": "read", "Hidden": "hidden"})
    return {f"{modules[m]}.{fields[f]}": levels[label] for m, f, label in FIELD_ROW.findall(page)}


def test_effective_permissions_view_matches_the_policy(admin_browser, ctx):
    admin, b = admin_browser
    sales = factories.department("Sales")
    vault = audit.create(audit.SYSTEM, Department, name="Vault", is_private=True)
    factories.department("Elsewhere")
    granted = {"tickets:view", "tickets:edit", "comments:view", "contacts:view", "recycle_bin:view"}
    role = make_role("Effective test", granted, "departments",
                     {"tickets.priority": "read", "contacts.email": "hidden", "tickets.subject": "hidden"})
    person = agent_with(role, name="Erin Effective", email="erin@example.com")
    join(person, sales)
    join(person, vault)

    page = html(b.get(f"/agent/settings/agents/{person.id}"))
    assert "Erin Effective" in page and "erin@example.com" in page
    assert f'<option selected value="{role.id}">Effective test</option>' in page \
        or f'<option value="{role.id}" selected>Effective test</option>' in page
    assert SCOPE_SENTENCES["departments"] in page
    assert "Sales, Vault (Private)" in page and "Elsewhere" not in page

    matrix = shown_matrix(page)
    assert list(matrix) == list(policy.MODULES)
    assert {f"{m}:{a}" for m, actions in matrix.items() for a in actions} == granted
    for m in policy.MODULES:
        for a in policy.ACTIONS:
            assert (a in matrix[m]) == policy.can(person, f"{m}:{a}"), (m, a)

    fields = shown_fields(page)
    assert set(fields) == {f"{m}.{f}" for m, names in policy.FIELDS.items() for f in names}
    for key, level in fields.items():
        module, _, name = key.partition(".")
        assert level == policy.field_access(person, module, name), key
    assert (fields["tickets.priority"], fields["contacts.email"], fields["tickets.subject"]) == \
        ("read", "hidden", "hidden")
    assert fields["tickets.status"] == "edit"  # editable: the role may edit tickets
    assert fields["contacts.name"] == "read"  # no contacts:edit, so read-only at most

    # The administrator: everything ticked, everything editable.
    page = html(b.get(f"/agent/settings/agents/{admin.id}"))
    assert shown_matrix(page) == {m: set(policy.ACTIONS) for m in policy.MODULES}
    assert set(shown_fields(page).values()) == {"edit"}
    # An agent with no permissions at all: nothing ticked, every field hidden.
    empty = agent_with(make_role("Empty", ()), name="Ned Empty")
    page = html(b.get(f"/agent/settings/agents/{empty.id}"))
    assert shown_matrix(page) == {m: set() for m in policy.MODULES}
    assert set(shown_fields(page).values()) == {"hidden"}


def test_the_effective_scope_of_an_administrator_is_what_the_policy_does(admin_browser, ctx):
    admin, b = admin_browser
    vault = audit.create(audit.SYSTEM, Department, name="Vault", is_private=True)
    secret_ticket = factories.ticket(factories.end_user(), "in the vault", department=vault)
    page = html(b.get(f"/agent/settings/agents/{admin.id}"))
    sees_it = b.get(f"/agent/tickets/{secret_ticket.id}").status_code == 200
    claims_exception = SCOPE_SENTENCES["all"] in page
    assert not (claims_exception and sees_it), \
        "the page says private departments are excluded, but the admin sees their tickets"


def test_admin_changes_an_agents_role_but_never_demotes_the_last_administrator(admin_browser, ctx):
    admin, b = admin_browser
    person = factories.agent(name="Cal Change")
    light = Role.get(Role.name == "Light Agent")
    agent_role = Role.get(Role.name == "Agent")

    person_b = signed_in(ctx, person)
    assert person_b.get("/agent/agents").status_code == 200  # an Agent may list agents

    resp = post(b, f"/agent/settings/agents/{person.id}", {"role": light.id})
    assert resp.status_code == 302
    assert reload(person).role_id == light.id
    assert person_b.get("/agent/agents").status_code == 403  # the next request already knows
    entry = (AuditEntry.select().where(AuditEntry.record_type == "User", AuditEntry.record_id == str(person.id),
                                       AuditEntry.action == "update").order_by(AuditEntry.seq.desc()).first())
    assert entry.actor_id == admin.id
    assert audit.read_changes(entry)["role"] == [agent_role.id, light.id]
    assert shown_matrix(html(b.get(f"/agent/settings/agents/{person.id}"))) == {
        m: {a for a in policy.ACTIONS if f"{m}:{a}" in LIGHT_AGENT_PERMISSIONS} for m in policy.MODULES}

    # The only administrator stays one.
    resp = post(b, f"/agent/settings/agents/{admin.id}", {"role": agent_role.id})
    assert resp.status_code == 409
    assert "The last administrator must stay an administrator." in html(resp)
    assert reload(admin).role.is_admin
    # With a second administrator, one of them may become an agent.
    second = factories.admin(name="Sam Second")
    assert post(b, f"/agent/settings/agents/{second.id}", {"role": agent_role.id}).status_code == 302
    assert reload(second).role_id == agent_role.id
    assert post(b, f"/agent/settings/agents/{admin.id}", {"role": agent_role.id}).status_code == 409
    # Unknown role: refused, nothing changes.
    assert post(b, f"/agent/settings/agents/{person.id}", {"role": 999999}).status_code == 400
    assert reload(person).role_id == light.id


def test_new_agent_page_creates_an_agent_with_role_and_departments(admin_browser, ctx):
    admin, b = admin_browser
    sales, support = factories.department("Sales"), factories.department("Support")
    factories.department("Elsewhere")
    light = Role.get(Role.name == "Light Agent")
    page = html(b.get("/agent/settings/agents/new"))
    for name in ("Administrator", "Agent", "Light Agent", "Sales", "Support"):
        assert f">{name}</option>" in page

    resp = post(b, "/agent/settings/agents/new", [
        ("name", "Nina New"), ("email", "nina@example.com"), ("password", factories.PASSWORD),
        ("role", str(light.id)), ("departments", str(sales.id)), ("departments", str(support.id))])
    assert resp.status_code == 302
    nina = User.get(User.email == "nina@example.com")
    assert urlsplit(resp.headers["Location"]).path == f"/agent/settings/agents/{nina.id}"
    assert (nina.kind, nina.name, nina.role_id) == ("agent", "Nina New", light.id)
    assert policy.department_ids(nina) == {sales.id, support.id}
    page = html(b.get(f"/agent/settings/agents/{nina.id}"))
    assert "Sales, Support" in page and SCOPE_SENTENCES["departments"] in page
    created = AuditEntry.select().where(AuditEntry.record_type == "User", AuditEntry.record_id == str(nina.id),
                                        AuditEntry.action == "create").get()
    assert created.actor_id == admin.id
    assert AuditEntry.select().where(AuditEntry.record_type == "AgentDepartment",
                                     AuditEntry.action == "create", AuditEntry.actor_id == admin.id).count() == 2
    # She can sign in and works as a Light Agent at once.
    nina_b = signed_in(ctx, nina)
    assert nina_b.get("/agent/tickets").status_code == 200
    assert nina_b.get("/agent/settings/roles").status_code == 403

    # Bad input: a 4xx, no agent.
    count = User.select().count()
    for pairs in ([("name", "X"), ("email", "nina@example.com"), ("password", factories.PASSWORD),
                   ("role", str(light.id))],
                  [("name", "Y"), ("email", "y@example.com"), ("password", factories.PASSWORD),
                   ("role", "999999")],
                  [("name", "Z"), ("email", "not-an-email"), ("password", factories.PASSWORD),
                   ("role", str(light.id))]):
        resp = post(b, "/agent/settings/agents/new", pairs)
        assert 400 <= resp.status_code < 500, pairs
    assert User.select().count() == count


def test_the_one_ticket_check_agrees_with_the_list_rule_for_every_user_and_ticket(ctx):
    """get_ticket reads one ticket by id and asks policy.sees_ticket; lists use
    policy.ticket_filter in SQL. For every kind of user (end users, agents of
    each sharing scope, in and out of departments, private ones included,
    without the view permission, deactivated, admins) and every kind of
    ticket (no department, a public or private one, mine or not, assigned to
    the agent or not), the two must give the same answer."""
    def role(name, permissions, scope):
        return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(sorted(permissions)),
                            ticket_scope=scope, field_permissions="{}")
    public, private, other_private = (factories.department("Public"), factories.department("Private"),
                                      factories.department("Other private"))
    for dept in (private, other_private):
        audit.update(audit.SYSTEM, dept, is_private=True)
    customer, stranger = factories.end_user(), factories.end_user()
    users = [customer, stranger, factories.admin()]
    for scope in ("all", "departments", "assigned"):
        role(f"Scope {scope}", ["tickets:view", "comments:view"], scope)
        for membership in ((), (public,), (private,), (public, private)):
            agent = factories.agent(role=f"Scope {scope}")
            for dept in membership:
                audit.create(audit.SYSTEM, AgentDepartment, agent=agent.id, department=dept.id)
            users.append(agent)
    role("Blind", ["comments:view"], "all")
    users.append(factories.agent(role="Blind"))
    gone = factories.agent()
    audit.update(audit.SYSTEM, gone, is_active=False)
    users.append(gone)
    tickets = []
    for dept in (None, public, private, other_private):
        for assignee in [None] + [u for u in users if u.kind != "end_user"][3:12]:
            tickets.append(factories.ticket(customer, department=dept, assignee=assignee))
    checked = 0
    for user in users:
        user = User.get_by_id(user.id)
        for ticket in tickets:
            listed = Ticket.select().where(Ticket.id == ticket.id, policy.ticket_filter(user)).exists()
            try:
                ticket_service.get_ticket(user, ticket.id)
                found = True
            except Exception as err:  # NotFound
                assert err.__class__.__name__ == "NotFound"
                found = False
            assert found == listed, (user.email, user.kind, ticket.department_id, ticket.assignee_id)
            checked += found
    assert 0 < checked < len(users) * len(tickets)
