"""The register of data subject requests: every kind, from the person's own
buttons or logged by an administrator; the 30-day clock (frozen at 23, 31 and
91 days), the one extension of up to 60 days, links that close requests,
reminders and the CSV."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest

from desk import audit
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import PermissionDenied
from desk.models import DataSubjectRequest
from desk.models import MailMessage
from desk.models import Role
from desk.models import utcnow
from desk.services import email_change
from desk.services import erasure
from desk.services import export
from desk.services import subject_requests as register
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS
from tests.conftest import html

T0 = dt.datetime(2026, 3, 2, 9, 0)


APP_CONFIG = MANY_SIGN_INS


def at(req, days: int):
    """The request as the register shows it ``days`` after T0."""
    row = DataSubjectRequest.get_by_id(req.id)
    return register.view(row, {}, T0 + dt.timedelta(days=days))


def test_the_30_day_clock_at_23_31_and_91_days(ctx, admin):
    person = factories.end_user(email="pat@example.com")
    req = register.log(admin, "PAT@example.com", "access", "email", T0, True, "called back on file number",
                       now=T0)
    assert register.due_at(req) == T0 + dt.timedelta(days=30)
    day23 = at(req, 23)
    assert day23.status == "open" and day23.due_soon and not day23.overdue and day23.days_left == 7
    day31 = at(req, 31)
    assert day31.overdue and not day31.due_soon
    assert at(req, 91).overdue
    # The same request, extended by 60 days on day 23: due on day 90.
    with pytest.raises(InvalidInput):
        register.extend(admin, req.id, 61, "complex", now=T0 + dt.timedelta(days=23))
    with pytest.raises(InvalidInput):
        register.extend(admin, req.id, 60, "  ", now=T0 + dt.timedelta(days=23))
    register.extend(admin, req.id, 60, "Many systems to search", now=T0 + dt.timedelta(days=23))
    assert not at(req, 31).overdue and not at(req, 31).due_soon
    assert at(req, 84).due_soon and not at(req, 89).overdue
    assert at(req, 91).overdue
    with pytest.raises(Conflict):  # once only
        register.extend(admin, req.id, 10, "again", now=T0 + dt.timedelta(days=24))
    assert person.id == DataSubjectRequest.get_by_id(req.id).user_id


def test_no_extension_after_the_deadline(ctx, admin):
    factories.end_user(email="late@example.com")
    req = register.log(admin, "late@example.com", "objection", "letter", T0, False, now=T0)
    with pytest.raises(Conflict):
        register.extend(admin, req.id, 30, "too late", now=T0 + dt.timedelta(days=31))


def test_logging_is_checked(ctx, admin):
    factories.end_user(email="x@example.com")
    with pytest.raises(InvalidInput):
        register.log(admin, "x@example.com", "gossip", "email", T0, True, now=T0)
    with pytest.raises(InvalidInput):
        register.log(admin, "x@example.com", "access", "pigeon", T0, True, now=T0)
    with pytest.raises(InvalidInput):
        register.log(admin, "x@example.com", "access", "email", T0 + dt.timedelta(days=2), True, now=T0)
    with pytest.raises(PermissionDenied):
        register.log(factories.agent(), "x@example.com", "access", "email", T0, True, now=T0)


def test_the_persons_own_actions_are_recorded_and_closed_by_their_action(ctx, admin):
    person = factories.end_user(name="Mia Mine", email="mia@example.com")
    # Access: the download is the request and its fulfilment at once.
    b = signed_in(ctx, person)
    resp = post_form(b, "/my/data-export", {})
    assert resp.status_code == 200 and resp.get_data()[:2] == b"PK"
    access = DataSubjectRequest.get(DataSubjectRequest.kind == "access")
    assert (access.user_id, access.channel, access.identity_checked) == (person.id, "my_info", True)
    assert register.effective(access)[0] == "done"
    # An admin downloading someone's data records no request of theirs.
    list(export.person_zip(admin, person))
    assert DataSubjectRequest.select().where(DataSubjectRequest.kind == "access").count() == 1

    # Rectification: open until the new address is confirmed.
    change = email_change.request_change(person, "mia.new@example.com")
    rect = DataSubjectRequest.get(DataSubjectRequest.kind == "rectification")
    assert rect.email_change_id == change.id and register.effective(rect)[0] == "open"
    email_change.approve(admin, change.id)
    body = MailMessage.select().where(MailMessage.recipient == "mia.new@example.com").get().body
    token = re.search(r"/confirm-email/(\S+)", body).group(1)
    email_change.confirm(person, token)
    assert register.effective(DataSubjectRequest.get_by_id(rect.id))[0] == "done"

    # Erasure: open until the erasure has run.
    resp = post_form(b, "/my/erasure-request", {}, form_page="/my/info")
    assert resp.status_code == 302
    erase = DataSubjectRequest.get(DataSubjectRequest.kind == "erasure")
    assert register.effective(erase)[0] == "open"
    erasure.start(admin, person.id, "anonymize", erasure.placeholder(person))
    status, closed = register.effective(DataSubjectRequest.get_by_id(erase.id))
    assert status == "done" and closed is not None
    # Closing actions wrote their requests down as done (the email change
    # request itself went with the erasure); the job finds nothing left.
    assert register.sync_closed() == 0
    assert {r.status for r in DataSubjectRequest.select()} == {"done"}


def test_an_admin_links_the_fulfilling_action_or_closes_by_hand(ctx, admin):
    person = factories.end_user(email="lou@example.com")
    req = register.log(admin, "lou@example.com", "portability", "phone", utcnow(), True)
    assert register.candidates(admin, req.id) == []
    with pytest.raises(InvalidInput):
        register.link(admin, req.id, "export:1")
    list(export.person_zip(admin, person))
    (target, label), = register.candidates(admin, req.id)
    assert target.startswith("export:") and "data export" in label
    register.link(admin, req.id, target)
    row = DataSubjectRequest.get_by_id(req.id)
    assert row.status == "done" and row.closed_at and row.handler_id == admin.id
    with pytest.raises(Conflict):
        register.close(admin, req.id, "done", "twice")
    other = register.log(admin, "lou@example.com", "restriction", "letter", utcnow(), True)
    with pytest.raises(InvalidInput):
        register.close(admin, other.id, "done", "")
    register.close(admin, other.id, "refused", "Processing is needed for an ongoing contract")
    assert DataSubjectRequest.get_by_id(other.id).status == "refused"


def test_the_page_logs_requests_and_overdue_ones_stand_out(ctx, admin):
    factories.end_user(name="Olga Old", email="olga@example.com")
    factories.end_user(name="Sam Soon", email="sam@example.com")
    old = register.log(admin, "olga@example.com", "access", "email", utcnow() - dt.timedelta(days=31), True)
    soon = register.log(admin, "sam@example.com", "erasure", "phone", utcnow() - dt.timedelta(days=25), True)
    b = signed_in(ctx, admin)
    page = html(b.get("/agent/privacy/requests"))
    rows = re.findall(r'<tr class="([^"]*)">\s*<td><a href="/agent/privacy/requests/(\d+)"', page)
    assert ("row-overdue", str(old.id)) in rows and ("row-due-soon", str(soon.id)) in rows
    assert "Overdue" in page and "Due in 5 days" in page
    assert "1 request is overdue." in html(b.get("/agent/privacy"))
    resp = post_form(b, "/agent/privacy/requests", {
        "email": "olga@example.com", "kind": "objection", "channel": "letter",
        "received_on": utcnow().date().isoformat(), "identity_checked": "y",
        "identity_note": "signature matches", "notes": ""})
    assert resp.status_code == 302
    new = DataSubjectRequest.select().order_by(DataSubjectRequest.id.desc()).get()
    assert (new.kind, new.channel, new.identity_checked, new.created_by) == ("objection", "letter", True, admin.id)
    detail = f"/agent/privacy/requests/{new.id}"
    assert "signature matches" in html(b.get(detail))
    bad = post_form(b, f"{detail}/extend", {"days": "90", "reason": "x"}, form_page=detail)
    assert bad.status_code == 400 and "Extend by 1 to 60 days." in html(bad)
    assert post_form(b, f"{detail}/extend", {"days": "30", "reason": "Archive search"},
                     form_page=detail).status_code == 302
    assert DataSubjectRequest.get_by_id(new.id).extended_days == 30
    # Unknown person: a clear 4xx
    resp = post_form(b, "/agent/privacy/requests", {
        "email": "nobody@example.com", "kind": "access", "channel": "email",
        "received_on": utcnow().date().isoformat()})
    assert resp.status_code == 404 and "Nobody here has this email address" in html(resp)


def test_reminders_go_to_admins_once_a_day(ctx, admin):
    factories.end_user(email="rem@example.com")
    register.log(admin, "rem@example.com", "access", "email", T0, True, now=T0)
    assert register.remind(now=T0 + dt.timedelta(days=10)) == 0
    assert register.remind(now=T0 + dt.timedelta(days=24)) == 1
    mails = list(MailMessage.select().where(MailMessage.subject.contains("Data subject requests due")))
    assert [m.recipient for m in mails] == [admin.email] and "due on 2026-04-01" in mails[0].body
    assert register.remind(now=T0 + dt.timedelta(days=24, hours=3)) == 0  # same day
    assert register.remind(now=T0 + dt.timedelta(days=32)) == 1
    assert "overdue since 2026-04-01" in MailMessage.select().order_by(MailMessage.id.desc()).get().body


def test_csv_export_and_permissions(ctx, admin):
    factories.end_user(name="Cleo 张", email="cleo@example.com")
    register.log(admin, "cleo@example.com", "rectification", "email", T0, True, now=T0)
    resp = signed_in(ctx, admin).get("/agent/privacy/requests.csv?header=keys")
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))
    assert rows and rows[0]["Kind"] == "rectification" and rows[0]["Person"] == "Cleo 张"
    assert rows[0]["Due"].startswith("2026-04-01")
    privacy_officer = audit.create(audit.SYSTEM, Role, name="Privacy officer",
                                   permissions=json.dumps(["privacy:view"]))
    officer = factories.agent(role=privacy_officer.name)
    b = signed_in(ctx, officer)
    assert "Cleo 张" in html(b.get("/agent/privacy/requests"))
    assert b.get("/agent/privacy/requests.csv").status_code == 403
    assert signed_in(ctx, factories.agent()).get("/agent/privacy/requests").status_code == 403
