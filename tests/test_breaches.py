"""The breach register: entries, the 72-hour clock from discovery, and the
reminder mails at 48 and 72 hours while the authority was not told."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from desk import audit
from desk import jobs
from desk.errors import InvalidInput
from desk.errors import PermissionDenied
from desk.models import Breach
from desk.models import MailMessage
from desk.models import Role
from desk.models import utcnow
from desk.services import breaches
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS
from tests.conftest import html

T0 = dt.datetime(2026, 5, 4, 10, 0)


APP_CONFIG = MANY_SIGN_INS


def reminders() -> list[MailMessage]:
    return list(MailMessage.select().where(MailMessage.subject.startswith("Breach #"))
                .order_by(MailMessage.id))


def test_the_72_hour_clock_and_reminders_at_48_and_72_hours(ctx, admin):
    second_admin = factories.admin(name="Bo Backup")
    row = breaches.record(admin, {"discovered_at": T0, "description": "A laptop with a CSV export was stolen",
                                  "people_affected": 120}, now=T0 + dt.timedelta(hours=1))
    at = lambda hours: breaches.view(Breach.get_by_id(row.id), T0 + dt.timedelta(hours=hours))  # noqa: E731
    assert at(1).hours_left == 71 and not at(1).urgent and not at(1).overdue
    assert at(47).hours_left == 25 and not at(47).urgent
    assert at(48).urgent and at(48).hours_left == 24 and not at(48).overdue
    assert at(73).overdue and at(73).hours_left == -1
    assert at(72).deadline == T0 + dt.timedelta(hours=72)

    assert breaches.remind(now=T0 + dt.timedelta(hours=47, minutes=59)) == 0
    assert breaches.remind(now=T0 + dt.timedelta(hours=48)) == 1
    assert sorted(m.recipient for m in reminders()) == sorted([admin.email, second_admin.email])
    assert "24 hours left" in reminders()[0].subject and "2026-05-07 10:00" in reminders()[0].body
    assert breaches.remind(now=T0 + dt.timedelta(hours=60)) == 0  # once at 48 hours
    assert breaches.remind(now=T0 + dt.timedelta(hours=72)) == 1
    late = reminders()[-1]
    assert "72 hours have passed" in late.subject
    assert breaches.remind(now=T0 + dt.timedelta(hours=100)) == 0  # once at 72 hours
    assert len(reminders()) == 4

    # Reported: no more reminders, and the clock says so.
    breaches.update(admin, row.id, {"discovered_at": T0, "description": row.description,
                                    "authority_notified_at": T0 + dt.timedelta(hours=80)},
                    now=T0 + dt.timedelta(hours=81))
    assert at(90).reported and not at(90).overdue and not at(90).urgent


def test_a_breach_reported_in_time_is_never_reminded(ctx, admin):
    breaches.record(admin, {"discovered_at": T0, "description": "Mail sent to the wrong customer",
                            "authority_notified_at": T0 + dt.timedelta(hours=20)},
                    now=T0 + dt.timedelta(hours=21))
    assert breaches.remind(now=T0 + dt.timedelta(hours=80)) == 0 and reminders() == []


def test_the_job_is_declared():
    assert any(j.name == "breach-reminders" and j.func is jobs.remind_breaches for j in jobs.JOBS)


def test_entries_are_checked(ctx, admin):
    now = T0 + dt.timedelta(days=1)
    base = {"discovered_at": T0, "description": "x"}
    for bad in ({**base, "description": "  "}, {**base, "discovered_at": now + dt.timedelta(days=1)},
                {**base, "authority_notified_at": T0 - dt.timedelta(hours=1)},
                {**base, "people_affected": -3}, {**base, "discovered_at": None}):
        with pytest.raises(InvalidInput):
            breaches.record(admin, bad, now=now)
    with pytest.raises(PermissionDenied):
        breaches.record(factories.agent(), base, now=now)


def test_the_register_page_records_and_shows_the_clock(ctx, admin):
    b = signed_in(ctx, admin)
    discovered = (utcnow() - dt.timedelta(hours=50)).replace(second=0, microsecond=0)
    resp = post_form(b, "/agent/privacy/breaches", {
        "discovered_at": discovered.strftime("%Y-%m-%dT%H:%M"), "description": "Backup disk lost",
        "categories": "customers: names, emails", "people_affected": "300", "records_affected": "",
        "consequences": "phishing", "measures": "disk was encrypted", "authority_notified_at": "",
        "people_notified_at": ""})
    assert resp.status_code == 302, html(resp)[:300]
    row = Breach.get()
    assert (row.people_affected, row.records_affected, row.created_by) == (300, None, admin.id)
    page = html(b.get("/agent/privacy/breaches"))
    assert "row-due-soon" in page and "22 hours left" in page
    assert "not reported to the authority" not in page
    assert "22 hours left to tell the authority" in html(b.get("/agent/privacy"))
    detail = html(b.get(f"/agent/privacy/breaches/{row.id}"))
    assert "Backup disk lost" in detail and "22 hours left" in detail
    # Bad input: a clear 400 with the message
    resp = post_form(b, "/agent/privacy/breaches", {"discovered_at": "yesterday", "description": ""})
    assert resp.status_code == 400 and "Describe what happened." in html(resp)
    # Recording the notification stops the clock.
    resp = post_form(b, f"/agent/privacy/breaches/{row.id}", {
        "discovered_at": discovered.strftime("%Y-%m-%dT%H:%M"), "description": "Backup disk lost",
        "authority_notified_at": utcnow().strftime("%Y-%m-%dT%H:%M")},
        form_page=f"/agent/privacy/breaches/{row.id}")
    assert resp.status_code == 302
    assert "Reported to the authority" in html(b.get("/agent/privacy/breaches"))


def test_only_the_privacy_center_sees_breaches(ctx, admin):
    breaches.record(admin, {"discovered_at": T0, "description": "Secret incident"}, now=utcnow())
    officer_role = audit.create(audit.SYSTEM, Role, name="DPO", permissions=json.dumps(["privacy:view"]))
    officer = signed_in(ctx, factories.agent(role=officer_role.name))
    assert "Secret incident" in html(officer.get("/agent/privacy/breaches"))
    assert "Record a breach" not in html(officer.get("/agent/privacy/breaches"))
    assert post_form(officer, "/agent/privacy/breaches", {"description": "x"}).status_code == 403
    assert signed_in(ctx, factories.agent()).get("/agent/privacy/breaches").status_code == 403
