"""The mail settings page: an administrator saves the SMTP server (the password
stored sealed, never in clear, never shown), sends a test mail through a real
SMTP server with a login, and sees a banner on settings pages while mail only
goes to the outbox folder. Only settings:manage may do any of it."""
from __future__ import annotations

import re

import pytest
from aiosmtpd.smtp import AuthResult
from aiosmtpd.smtp import LoginPassword

from desk.models import AuditEntry
from desk.models import MailMessage
from desk.models import Setting
from desk.services import mail
from tests import factories
from tests.conftest import csrf_token
from tests.conftest import signed_in
from tests.smtp import Collector
from tests.smtp import smtp_server

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

BANNER = "Mail is not being sent"
PASSWORD = "smtp pässword 42"


class Login:
    def __init__(self):
        self.seen = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.seen.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"desk" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


def post(b, path, data):
    return b.post(path, data={**data, "csrf_token": csrf_token(b, "/agent/settings/mail")})


def settings_form(port, **extra):
    return {"host": "127.0.0.1", "port": str(port), "user": "desk", "password": PASSWORD,
            "mail_from": "help@desk.test", **extra}


def test_admin_saves_smtp_settings_and_sends_a_test_mail(ctx, tmp_path):
    admin = factories.admin()
    b = signed_in(ctx, admin)
    page = b.get("/agent/settings/mail").get_data(as_text=True)
    assert BANNER in page
    assert BANNER in b.get("/agent/settings").get_data(as_text=True)
    # Without a server the test mail lands in the outbox folder, and the page says so.
    resp = post(b, "/agent/settings/mail/test", {"to": "me@example.com"})
    assert resp.status_code == 302
    assert "outbox folder" in b.get("/agent/settings/mail").get_data(as_text=True)
    outbox = list((tmp_path / "instance" / "outbox").glob("*.eml"))
    assert len(outbox) == 1 and b"To: me@example.com" in outbox[0].read_bytes()

    handler, login = Collector(), Login()
    with smtp_server(handler, authenticator=login, auth_required=True, auth_require_tls=False) as server:
        resp = post(b, "/agent/settings/mail", settings_form(server.port))
        assert resp.status_code == 302, resp.get_data(as_text=True)
        stored = Setting.get(Setting.key == "smtp").value
        assert PASSWORD not in stored and "secret:v1:" in stored
        assert not any(PASSWORD in e.changes for e in AuditEntry.select())
        page = b.get("/agent/settings/mail").get_data(as_text=True)
        assert BANNER not in page and PASSWORD not in page
        assert "A password is saved" in page
        assert 'value="127.0.0.1"' in page

        # Saving again with an empty password keeps the saved one.
        assert post(b, "/agent/settings/mail", settings_form(server.port, password="")).status_code == 302
        resp = post(b, "/agent/settings/mail/test", {"to": "me@example.com"})
        assert resp.status_code == 302
        assert "The test mail was sent to me@example.com." in b.get("/agent/settings/mail").get_data(as_text=True)
        assert login.seen[-1] == (b"desk", PASSWORD.encode())
        (message,) = handler.messages()
        assert message["To"] == "me@example.com" and message["From"] == "help@desk.test"

        # Queued mail goes through the saved server too.
        mail.queue("ann@example.com", "Hello", "Body")
        assert mail.deliver_pending(ctx.config) == (1, 0)
        assert len(handler.envelopes) == 2

        # A wrong password: the page says what the server answered, with a 4xx.
        assert post(b, "/agent/settings/mail", settings_form(server.port, password="wrong")).status_code == 302
        resp = post(b, "/agent/settings/mail/test", {"to": "me@example.com"})
        assert resp.status_code == 400
        assert "The test mail was not sent" in resp.get_data(as_text=True)
    assert AuditEntry.select().where(AuditEntry.action == "test_mail").count() == 2


def test_bad_input_is_refused_with_a_message(ctx):
    b = signed_in(ctx, factories.admin())
    for data, message in (({"port": "0"}, "between 1 and 65535"),
                          ({"port": "x"}, ""),
                          ({"host": "bad host"}, "host name"),
                          ({"mail_from": "nobody"}, "sender address")):
        resp = post(b, "/agent/settings/mail", {**settings_form(25), **data})
        assert resp.status_code == 400, data
        assert message in resp.get_data(as_text=True)
    assert post(b, "/agent/settings/mail/test", {"to": "not an address"}).status_code == 400
    assert post(b, "/agent/settings/mail/test", {"to": "a@b.example\r\nBcc: x@y.example"}).status_code == 400
    assert not Setting.select().where(Setting.key == "smtp").exists()
    assert MailMessage.select().count() == 0


def test_only_settings_managers_see_the_page_or_the_banner(ctx):
    agent = factories.agent()
    b = signed_in(ctx, agent)
    assert b.get("/agent/settings/mail").status_code == 403
    assert post(b, "/agent/settings/mail/test", {"to": "me@example.com"}).status_code == 403
    assert BANNER not in b.get("/agent/settings").get_data(as_text=True)
    customer = signed_in(ctx, factories.end_user())
    assert customer.get("/agent/settings/mail").status_code == 403
