"""Privacy notice versions: an edit publishes a version, sign-up records the
version accepted, a change prompts at the next sign-in and records the
acknowledgement, the privacy center lists the records, and each person's
export holds their own."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from desk.errors import InvalidInput
from desk.errors import PermissionDenied
from desk.models import NoticeConsent
from desk.services import export
from desk.services import notices
from tests import factories
from tests.conftest import browser
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS
from tests.conftest import html


APP_CONFIG = MANY_SIGN_INS


def records(user) -> list[tuple[int, str]]:
    return [(c.version, c.kind) for c in NoticeConsent.select().where(NoticeConsent.user == user.id)
            .order_by(NoticeConsent.id)]


def test_without_a_notice_nobody_is_asked(ctx, admin):
    person = factories.end_user()
    assert records(person) == []
    b = signed_in(ctx, person)
    assert b.get("/my/tickets").status_code == 200


def test_signup_records_the_version_accepted(ctx, admin):
    notices.publish(admin, "We keep your tickets to answer them.")
    person = factories.end_user(email="new@example.com")
    assert records(person) == [(1, "signup")]
    assert signed_in(ctx, person).get("/my/tickets").status_code == 200  # nothing to acknowledge


def test_a_changed_notice_is_shown_at_the_next_sign_in_and_acknowledged(ctx, admin):
    notices.publish(admin, "Version one.")
    person = factories.end_user(email="reader@example.com")
    notices.publish(admin, "Version two: we now also keep call recordings.")
    b = browser(ctx)
    resp = login(b, person.email, factories.PASSWORD)
    assert resp.status_code == 302
    page = b.get("/my/tickets")
    assert page.status_code == 302 and page.headers["Location"].startswith("/my/privacy-notice")
    shown = html(b.get(page.headers["Location"]))
    assert "Version two: we now also keep call recordings." in shown and "I have read it" in shown
    assert b.get("/privacy").status_code == 200  # the public page stays open
    resp = post_form(b, "/my/privacy-notice", {"version": "2", "next": "/my/tickets"},
                     form_page="/my/privacy-notice")
    assert resp.status_code == 302 and resp.headers["Location"] == "/my/tickets"
    assert records(person) == [(1, "signup"), (2, "acknowledged")]
    assert b.get("/my/tickets").status_code == 200
    # Signing in again asks nothing.
    again = signed_in(ctx, person)
    assert again.get("/my/tickets").status_code == 200
    # A stale version (the notice changed meanwhile) records nothing.
    notices.publish(admin, "Version three.")
    b3 = browser(ctx)
    login(b3, person.email, factories.PASSWORD)
    post_form(b3, "/my/privacy-notice", {"version": "2"}, form_page="/my/privacy-notice")
    assert records(person)[-1] == (2, "acknowledged")
    assert b3.get("/my/tickets").status_code == 302


def test_agents_too_and_the_privacy_center_lists_the_records(ctx, admin):
    agent = factories.agent(name="Otto Agent")
    a = signed_in(ctx, admin)
    resp = post_form(a, "/agent/privacy/consents", {"text": "Staff and customers: what we keep."})
    assert resp.status_code == 302
    assert "Staff and customers: what we keep." in html(browser(ctx).get("/privacy"))
    b = browser(ctx)
    login(b, agent.email, factories.PASSWORD)
    assert b.get("/agent/tickets").headers["Location"].startswith("/my/privacy-notice")
    post_form(b, "/my/privacy-notice", {"version": "1"}, form_page="/my/privacy-notice")
    page = html(a.get("/agent/privacy/consents"))
    assert "Otto Agent" in page and "Acknowledged after a change" in page and "Version 1" in page
    same = post_form(a, "/agent/privacy/consents", {"text": "Staff and customers: what we keep."},
                     form_page="/agent/privacy/consents")
    assert same.status_code == 400 and "same as the version in force" in html(same)


def test_publishing_is_checked(ctx, admin):
    with pytest.raises(InvalidInput):
        notices.publish(admin, "   ")
    with pytest.raises(PermissionDenied):
        notices.publish(factories.agent(), "text")


def test_the_persons_export_holds_their_records(ctx, admin):
    notices.publish(admin, "One.")
    person = factories.end_user()
    notices.publish(admin, "Two.")
    notices.acknowledge(person, 2)
    data = b"".join(export.person_zip(person, person))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        own = json.loads(z.read("privacy_notices.json"))
    assert [(r["version"], r["kind"]) for r in own] == [(1, "signup"), (2, "acknowledged")]
