"""Security baseline: CSRF, headers, cookies, rate limits, password storage."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from desk.models import AuditEntry
from tests import factories
from tests.conftest import CSRF_RE
from tests.conftest import browser
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import sign_up


def test_post_without_csrf_token_is_refused_with_a_clear_page(ctx, client):
    factories.end_user(email="ann@example.com")
    for path, data in [("/login", {"email": "ann@example.com", "password": factories.PASSWORD}),
                       ("/signup", {"name": "A", "email": "b@example.com", "password": "longenough"})]:
        resp = client.post(path, data=data)
        assert resp.status_code == 400
        assert "The form expired or was sent from elsewhere" in resp.get_data(as_text=True)
    assert AuditEntry.select().where(AuditEntry.action == "login").count() == 0


def test_stale_csrf_token_from_another_session_is_refused(ctx, app, client):
    other = app.test_client()
    token = csrf_token(other)
    resp = client.post("/login", data={"email": "x@example.com", "password": "y", "csrf_token": token})
    assert resp.status_code == 400


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/healthz", "/no-such-page"])
def test_security_headers_on_every_response(client, path):
    resp = client.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in resp.headers


def test_pages_have_no_inline_scripts(client):
    for path in ("/", "/login", "/signup"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and "onclick=" not in html


def test_cookies_are_httponly_and_lax(ctx, client):
    factories.end_user(email="ann@example.com")
    resp = login(client, "ann@example.com", factories.PASSWORD, remember="y")
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback


def test_cookies_are_secure_and_hsts_sent_over_https(ctx, app):
    factories.end_user(email="ann@example.com")
    client = app.test_client()
    page = client.get("/login", base_url="https://desk.test")
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    token = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    resp = client.post("/login", base_url="https://desk.test",
                       data={"email": "ann@example.com", "password": factories.PASSWORD,
                             "remember": "y", "csrf_token": token},
                       headers={"Referer": "https://desk.test/login"})
    assert resp.status_code == 302
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies)


def test_wrong_passwords_for_one_account_are_throttled_and_audited(ctx, client):
    user = factories.end_user(email="ann@example.com")
    for _ in range(5):
        assert login(client, "ann@example.com", "wrong password").status_code == 400
    resp = login(client, "ann@example.com", factories.PASSWORD)  # even the right one waits
    assert resp.status_code == 429
    assert "Too many failed sign-in attempts" in resp.get_data(as_text=True)
    failed = AuditEntry.select().where(AuditEntry.action == "login_failed",
                                       AuditEntry.record_id == str(user.id)).count()
    assert failed == 6
    assert AuditEntry.select().where(AuditEntry.action == "login").count() == 0


def test_other_accounts_are_not_throttled_by_one_accounts_failures(ctx, client):
    factories.end_user(email="ann@example.com")
    factories.end_user(email="bob@example.com")
    for _ in range(5):
        login(client, "ann@example.com", "wrong password")
    assert login(client, "bob@example.com", factories.PASSWORD).status_code == 302


def test_one_address_is_limited_across_accounts(make_app):
    app = make_app(LOGIN_ADDRESS_LIMIT="3 per minute")
    client = app.test_client()
    statuses = [login(client, f"user{n}@example.com", "whatever pass").status_code for n in range(4)]
    assert statuses == [400, 400, 400, 429]
    with app.app_context():
        assert AuditEntry.select().where(AuditEntry.action == "login_failed").count() >= 4


def test_password_is_hashed_with_argon2_and_never_logged(ctx, app, client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "unforgettable-Passw0rd"
    resp = sign_up(client, "Ann", "ann@example.com", secret)
    assert resp.status_code == 302
    assert login(app.test_client(), "ann@example.com", secret + "x").status_code == 400
    from desk.models import User
    stored = User.get(User.email == "ann@example.com").password_hash
    assert stored.startswith("$argon2id$") and secret not in stored
    assert secret not in caplog.text
    assert all(secret not in (e.changes + e.ip) for e in AuditEntry.select())
    from desk.models import MailMessage
    assert all(secret not in m.body for m in MailMessage.select())


# --- sign-in throttling: no lock-out by strangers, no account discovery ---------

def _sign_in(app, email: str, password: str, ip: str):
    client = browser(app)
    return post_form(client, "/login", {"email": email, "password": password},
                     environ_base={"REMOTE_ADDR": ip})


def test_a_stranger_cannot_lock_the_owner_out(make_app):
    app = make_app(LOGIN_ACCOUNT_MAX_FAILURES=3, LOGIN_ADDRESS_LIMIT="1000 per minute")
    with app.app_context():
        factories.admin(email="boss@example.com")
    statuses = [_sign_in(app, "boss@example.com", "guess", "203.0.113.9").status_code
                for _ in range(4)]
    assert statuses == [400, 400, 400, 429]  # the guesser waits
    resp = _sign_in(app, "boss@example.com", factories.PASSWORD, "198.51.100.7")
    assert resp.status_code == 302  # the owner, elsewhere, was never made to wait


def test_guessing_from_many_addresses_makes_the_owner_wait_only_briefly(make_app):
    app = make_app(LOGIN_ACCOUNT_MAX_FAILURES_ALL=3, LOGIN_MAX_WAIT_SECONDS=1)
    with app.app_context():
        factories.admin(email="boss@example.com")
    statuses = [_sign_in(app, "boss@example.com", "guess", f"203.0.113.{n}").status_code
                for n in range(1, 4)]
    assert statuses == [400, 400, 400]
    waiting = _sign_in(app, "boss@example.com", factories.PASSWORD, "198.51.100.7")
    assert waiting.status_code == 429
    assert "Wait 1 second and try again" in waiting.get_data(as_text=True)
    time.sleep(1.05)
    assert _sign_in(app, "boss@example.com", factories.PASSWORD, "198.51.100.7").status_code == 302


def _answers(app, email: str, ip: str) -> list[tuple]:
    """What a client sees over repeated wrong passwords, the address itself blanked."""
    seen = []
    for _ in range(4):
        resp = _sign_in(app, email, "wrong password", ip)
        body = CSRF_RE.sub("", resp.get_data(as_text=True)).replace(email, "ADDRESS")
        seen.append((resp.status_code, body))
    return seen


def test_known_and_unknown_addresses_get_the_same_answers(make_app):
    app = make_app(LOGIN_ACCOUNT_MAX_FAILURES=3)
    with app.app_context():
        factories.end_user(email="ann@example.com")
    known = _answers(app, "ann@example.com", "203.0.113.1")
    unknown = _answers(app, "nobody@example.com", "203.0.113.2")
    assert [status for status, _ in known] == [400, 400, 400, 429]
    assert "Wait 1 second and try again" in known[3][1]
    assert known == unknown


def test_the_wait_grows_and_is_capped_and_the_store_holds_no_address(ctx):
    from desk.extensions import limiter
    from desk.services.login_throttle import Limits
    from desk.services.login_throttle import LoginThrottle
    store = limiter.storage
    one = Limits(per_client=2, per_account=100, window_seconds=900, max_wait_seconds=3)
    waits = []
    for _ in range(5):
        LoginThrottle(store, one, "Ann@Example.com", "203.0.113.1").failed()
        waits.append(LoginThrottle(store, one, "ann@example.com", "203.0.113.1").wait_seconds())
    assert waits == [0, 1, 2, 4, 8]  # one client: doubling, up to the window
    assert LoginThrottle(store, one, "ann@example.com", "203.0.113.2").wait_seconds() == 0
    spread = Limits(per_client=100, per_account=2, window_seconds=900, max_wait_seconds=3)
    waits = []
    for n in range(5):
        LoginThrottle(store, spread, "bob@example.com", f"198.51.100.{n}").failed()
        waits.append(LoginThrottle(store, spread, "bob@example.com", "192.0.2.1").wait_seconds())
    assert waits == [0, 1, 2, 3, 3]  # every client: never more than max_wait
    raw = Path(store.path).read_bytes() + Path(store.path + "-wal").read_bytes()
    assert b"example.com" not in raw.lower() and b"203.0.113" not in raw
