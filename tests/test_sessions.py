"""Signing out revokes the session: a server-side record per signed-in
browser, named by both the session cookie and the remember-me cookie."""
from __future__ import annotations

import datetime as dt
import hashlib
import re

from desk import audit
from desk.audit import Actor
from desk.db import db
from desk.models import AuditEntry
from desk.models import BrowserSession
from desk.models import User
from desk.models import utcnow
from desk.services import erasure
from desk.services import sessions
from tests import factories
from tests.conftest import browser
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import signed_in

AGENT_A = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
AGENT_B = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1"


def _copy(source, cookie_names) -> object:
    """A browser of its own holding copies of ``source``'s cookies (the attacker)."""
    copy = browser(source.application)
    for name in cookie_names:
        cookie = source.get_cookie(name)
        assert cookie is not None, name
        copy.set_cookie(name, cookie.value)
    return copy


def _signed_in(resp) -> bool:
    return resp.status_code == 200


def _sign_out(b, page="/my/tickets"):
    resp = post_form(b, "/logout", {}, form_page=page)
    assert resp.status_code == 302
    return resp


def test_a_copied_session_cookie_stops_working_after_sign_out(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user)
    other = signed_in(ctx, user)  # the same person in another browser
    thief = _copy(b, ["session"])
    assert _signed_in(thief.get("/my/tickets"))  # the copy works while the browser is signed in
    _sign_out(b)
    assert thief.get("/my/tickets").status_code == 302
    assert b.get("/my/tickets").status_code == 302
    assert _signed_in(other.get("/my/tickets"))  # the other browser stays signed in
    assert BrowserSession.select().where(BrowserSession.user == user.id).count() == 1


def test_a_copied_remember_cookie_stops_working_after_sign_out(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user, remember="y")
    other = signed_in(ctx, user, remember="y")
    remember = b.get_cookie("remember_token").value
    thief = _copy(b, ["remember_token"])
    assert _signed_in(thief.get("/my/tickets"))  # "remember me" signs the copy in, as designed
    _sign_out(b)
    assert thief.get("/my/tickets").status_code == 302
    late = browser(ctx)  # copied before sign-out, used only afterwards
    late.set_cookie("remember_token", remember)
    assert late.get("/my/tickets").status_code == 302
    assert _signed_in(other.get("/my/tickets"))


def test_the_remember_cookie_names_the_same_browser_record(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user, remember="y")
    thief = _copy(b, ["remember_token"])
    assert _signed_in(thief.get("/my/tickets"))
    # Restoring from the cookie made no second record: both name the same browser.
    assert BrowserSession.select().where(BrowserSession.user == user.id).count() == 1


def test_only_a_keyed_hash_of_the_secret_is_kept(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user, remember="y")
    b.get("/my/tickets")
    identity = sessions.start(user, "198.51.100.7", AGENT_A)
    secret = identity.partition(":")[2]
    row = BrowserSession.get(BrowserSession.secret_hash == sessions.crypto.session_digest(secret))
    assert row.secret_hash != hashlib.sha256(secret.encode()).hexdigest()
    raw = " ".join(str(v) for r in db.execute_sql("SELECT * FROM browser_session").fetchall()
                   for v in r)
    assert secret not in raw
    assert sessions.resume(f"{user.id}:{secret[:-1]}x", "", "") is None
    assert sessions.resume(f"{user.id + 1}:{secret}", "", "") is None  # another person's id
    assert sessions.resume(identity, "", "").id == user.id


def test_sign_out_everywhere_ends_every_browser(ctx):
    user = factories.end_user()
    first = signed_in(ctx, user, remember="y")
    second = signed_in(ctx, user)
    copies = [_copy(first, ["session"]), _copy(first, ["remember_token"])]
    stranger = factories.end_user()
    theirs = signed_in(ctx, stranger)
    assert second.get("/my/sessions/sign-out-everywhere").status_code == 405
    assert second.post("/my/sessions/sign-out-everywhere").status_code == 400  # no CSRF token
    assert _signed_in(first.get("/my/tickets"))
    resp = post_form(second, "/my/sessions/sign-out-everywhere", {}, form_page="/my/info")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    for b in [first, second] + copies:
        assert b.get("/my/tickets").status_code == 302
    assert _signed_in(theirs.get("/my/tickets"))  # nobody else is touched
    assert BrowserSession.select().where(BrowserSession.user == user.id).count() == 0
    entry = AuditEntry.select().where(AuditEntry.action == "sessions_end").get()
    assert entry.subject_id == user.id and audit.read_changes(entry)["count"] == 2


def test_my_info_lists_my_browsers_and_signs_out_one(ctx):
    user = factories.end_user()
    here = browser(ctx)
    here.environ_base["HTTP_USER_AGENT"] = AGENT_A
    assert login(here, user.email, factories.PASSWORD).status_code == 302
    phone = browser(ctx)
    phone.environ_base["HTTP_USER_AGENT"] = AGENT_B
    phone.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    assert login(phone, user.email, factories.PASSWORD).status_code == 302
    stranger = factories.end_user()
    signed_in(ctx, stranger)

    page = here.get("/my/info").get_data(as_text=True)
    section = page[page.index('id="sessions"'):]
    section = section[:section.index("</section>")]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", section[section.index("<tbody>"):], re.S)
    assert len(rows) == 2  # mine only, not the stranger's
    mine = [r for r in rows if 'aria-current="true"' in r]
    assert len(mine) == 1 and "Firefox/128.0" in mine[0] and "This browser" in mine[0]
    other = [r for r in rows if r not in mine][0]
    assert "iPhone" in other and "198.51.100.23" in other
    assert "<caption" in section and 'scope="col"' in section

    phone_row = BrowserSession.get(BrowserSession.user == user.id,
                                   BrowserSession.user_agent == AGENT_B)
    theirs = BrowserSession.get(BrowserSession.user == stranger.id)
    resp = post_form(here, f"/my/sessions/{theirs.id}/sign-out", {}, form_page="/my/info")
    assert resp.status_code == 404  # another person's browser: as if it did not exist
    assert BrowserSession.get_or_none(BrowserSession.id == theirs.id) is not None  # not mine
    resp = post_form(here, f"/my/sessions/{phone_row.id}/sign-out", {}, form_page="/my/info")
    assert resp.status_code == 302 and "/my/info" in resp.headers["Location"]
    assert phone.get("/my/tickets").status_code == 302
    assert _signed_in(here.get("/my/tickets"))
    entry = AuditEntry.select().where(AuditEntry.action == "session_end").get()
    assert audit.read_changes(entry)["session"] == phone_row.id

    # Signing out this browser from the list signs it out.
    this = BrowserSession.get(BrowserSession.user == user.id)
    resp = post_form(here, f"/my/sessions/{this.id}/sign-out", {}, form_page="/my/info")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    assert here.get("/my/tickets").status_code == 302


def test_agents_see_their_browsers_on_my_information(ctx):
    agent = factories.agent()
    b = signed_in(ctx, agent)
    page = b.get("/agent/settings/my-info").get_data(as_text=True)
    assert 'id="sessions"' in page and "This browser" in page and "Sign out everywhere" in page


def test_a_password_change_ends_every_other_browser(ctx):
    user = factories.end_user()
    here = signed_in(ctx, user, remember="y")
    elsewhere = signed_in(ctx, user, remember="y")
    copies = [_copy(here, ["session"]), _copy(here, ["remember_token"])]
    resp = post_form(here, "/my/password", {"current_password": factories.PASSWORD,
                                             "new_password": "a brand new passphrase"},
                     form_page="/my/info")
    assert resp.status_code == 302
    assert elsewhere.get("/my/tickets").status_code == 302
    for copy in copies:  # cookies copied before the change are worthless
        assert copy.get("/my/tickets").status_code == 302
    assert _signed_in(here.get("/my/tickets"))  # this browser goes on, on a new record
    rows = list(BrowserSession.select().where(BrowserSession.user == user.id))
    assert len(rows) == 1 and rows[0].remember
    fresh = _copy(here, ["remember_token"])
    assert _signed_in(fresh.get("/my/tickets"))  # its new remember cookie names the new record


def test_deletion_and_erasure_end_every_browser(ctx):
    admin = factories.admin()
    user = factories.end_user(name="Xavier Gone", email="xavier@example.com")
    b = signed_in(ctx, user, remember="y")
    copy = _copy(b, ["remember_token"])
    erasure.start(admin, user.id, "anonymize", f"Deleted user {user.id}")
    assert b.get("/my/tickets").status_code == 302
    assert copy.get("/my/tickets").status_code == 302
    # Their records (with addresses and browsers) are gone, not just unusable.
    assert BrowserSession.select().where(BrowserSession.user == user.id).count() == 0
    assert "sessions_end" in [e.action for e in AuditEntry.select().where(
        AuditEntry.record_type == "User", AuditEntry.record_id == str(user.id))]


def test_end_all_is_what_services_call(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user)
    assert sessions.end_all(Actor(), user, sessions.DELETED) == 1
    assert b.get("/my/tickets").status_code == 302
    assert sessions.end_all(Actor(), user, sessions.DELETED) == 0


def test_last_seen_is_written_at_most_once_a_minute(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user)
    row = BrowserSession.get(BrowserSession.user == user.id)
    for _ in range(3):
        assert _signed_in(b.get("/my/tickets"))
    assert BrowserSession.get_by_id(row.id).last_seen_at == row.last_seen_at
    earlier = utcnow() - dt.timedelta(minutes=2)
    BrowserSession.update(last_seen_at=earlier).where(BrowserSession.id == row.id).execute()
    assert _signed_in(b.get("/my/tickets"))
    assert BrowserSession.get_by_id(row.id).last_seen_at > earlier


def test_a_browser_away_longer_than_its_cookie_lives_is_signed_out(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user)  # no "remember me": the session cookie's life (31 days)
    long_ago = utcnow() - dt.timedelta(days=32)
    BrowserSession.update(last_seen_at=long_ago).where(BrowserSession.user == user.id).execute()
    assert b.get("/my/tickets").status_code == 302
    assert BrowserSession.select().where(BrowserSession.user == user.id).count() == 0


def test_personal_pages_are_not_stored_by_browsers_or_proxies(ctx):
    user = factories.end_user()
    agent = factories.agent()
    anonymous = browser(ctx)
    assert "no-store" not in anonymous.get("/").headers.get("Cache-Control", "")
    b = signed_in(ctx, user)
    for path in ("/my/info", "/my/tickets", "/my/tokens", "/"):
        assert b.get(path).headers["Cache-Control"] == "no-store", path
    a = signed_in(ctx, agent)
    for path in ("/agent/tickets", "/agent/settings/my-info"):
        assert a.get(path).headers["Cache-Control"] == "no-store", path
    resp = a.get("/my/data-export")
    assert "no-store" in resp.headers["Cache-Control"]


def test_a_deactivated_person_is_not_let_back_in_by_a_live_record(ctx):
    user = factories.end_user()
    b = signed_in(ctx, user)
    audit.update(audit.SYSTEM, User.get_by_id(user.id), is_active=False)
    assert b.get("/my/tickets").status_code == 302
