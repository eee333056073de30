"""Sign-up, sign-in, sign-out, landing pages, sessions and the setup link."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk.cli import cli
from desk.models import AuditEntry
from desk.models import MailMessage
from desk.models import Setting
from desk.models import User
from desk.services import sessions
from desk.services import setup
from tests import factories
from tests.conftest import CSRF_RE
from tests.conftest import browser
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import signup_link


def _actions(record_id=None):
    query = AuditEntry.select().order_by(AuditEntry.seq)
    if record_id is not None:
        query = query.where(AuditEntry.record_id == str(record_id))
    return [e.action for e in query]


def signup(client, name="Ann Example", email="ann@example.com", password="a good password"):
    return post_form(client, "/signup", {"name": name, "email": email, "password": password})


def test_signup_mails_a_link_that_makes_the_account_and_signs_in(ctx, app, client):
    resp = signup(client, name="张伟 🙂", email="Zhang.Wei@Example.com")
    assert resp.status_code == 200 and "Check your email" in resp.get_data(as_text=True)
    assert User.select().count() == 0  # nothing is stored before the address is confirmed
    mailed = MailMessage.get(MailMessage.recipient == "zhang.wei@example.com")
    assert mailed.subject == "Finish creating your account" and "24 hours" in mailed.body
    assert "a good password" not in mailed.body and "argon2" not in mailed.body
    link = signup_link("zhang.wei@example.com")
    page = client.get(link)
    assert page.status_code == 200 and "zhang.wei@example.com" in page.get_data(as_text=True)

    wrong = post_form(client, link, {"password": "someone else's"})
    assert wrong.status_code == 400
    assert "not the password you chose" in wrong.get_data(as_text=True)
    assert User.select().count() == 0

    resp = post_form(client, link, {"password": "a good password"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/my/tickets")
    user = User.get(User.email == "zhang.wei@example.com")
    assert user.kind == "end_user" and user.name == "张伟 🙂"
    assert user.password_hash.startswith("$argon2id$")
    page = client.get("/my/tickets").get_data(as_text=True)
    assert "My Tickets" in page and "张伟 🙂" in page
    assert _actions(user.id) == ["create", "signup"]
    welcome = MailMessage.get(MailMessage.recipient == user.email, MailMessage.subject_id == user.id)
    assert "/my/tickets" in welcome.body
    # The link made one account; followed again elsewhere, it says so.
    again = post_form(browser(app), link, {"password": "a good password"})
    assert again.status_code == 409 and User.select().count() == 1


def test_made_up_or_altered_sign_up_links_are_not_found(ctx, client):
    signup(client, email="ann@example.com")
    link = signup_link("ann@example.com")
    kid, _, sealed = link.rpartition("/")[2].partition(".")
    altered = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    for token in ("not-a-token", f"{kid}.{altered}", f"nokey.{sealed}", "x" * 9000):
        resp = client.get(f"/signup/confirm/{token}")
        assert resp.status_code == 404, token[:20]
    assert User.select().count() == 0


def _answer(client, email: str) -> tuple:
    resp = signup(client, email=email)
    return resp.status_code, CSRF_RE.sub("", resp.get_data(as_text=True)).replace(email, "ADDRESS")


def test_signing_up_with_a_taken_address_answers_the_same_and_tells_the_owner(ctx, client):
    owner = factories.end_user(name="Olga Owner", email="taken@example.com")
    assert _answer(client, "free@example.com") == _answer(client, "TAKEN@example.com")
    told = [m for m in MailMessage.select().where(MailMessage.recipient == "taken@example.com")
            if "tried to sign up" in m.subject]
    assert len(told) == 1 and told[0].subject_id == owner.id
    assert "/login" in told[0].body and "/signup/confirm/" not in told[0].body
    assert User.select().where(User.email == "taken@example.com").count() == 1
    assert User.get(User.email == "taken@example.com").name == "Olga Owner"


BAD_SIGNUPS = [
    ({"name": ""}, "Enter your name."),
    ({"name": "x" * 10_000}, "Field cannot be longer than 200 characters."),
    ({"name": "Nul\x00Byte"}, "control characters"),
    ({"email": ""}, "Enter your email address."),
    ({"email": "not-an-email"}, "Enter a valid email address."),
    ({"email": "a" * 10_000 + "@example.com"}, "Field cannot be longer than 254 characters."),
    ({"email": "nul\x00@example.com"}, "control characters"),
    ({"password": ""}, "Choose a password."),
    ({"password": "short"}, "Field must be between 8 and 1024 characters long."),
    ({"password": "p" * 10_000}, "Field must be between 8 and 1024 characters long."),
]


@pytest.mark.parametrize("bad,message", BAD_SIGNUPS, ids=[m for _, m in BAD_SIGNUPS])
def test_bad_signup_input_is_refused_clearly(ctx, client, bad, message):
    fields = {"name": "Ann", "email": "ann@example.com", "password": "a good password", **bad}
    resp = post_form(client, "/signup", fields)
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    assert User.select().count() == 0


@pytest.mark.parametrize("email,password", [
    ("", ""), ("x" * 10_000, "y"), ("nobody@example.com", "\x00" * 10), ("😀@例子.中国", "密码密码密码密码"),
])
def test_bad_login_input_never_errors(ctx, client, email, password):
    resp = login(client, email, password)
    assert resp.status_code == 400
    assert "Sign in" in resp.get_data(as_text=True)


def test_wrong_password_is_refused_and_audited(ctx, client):
    user = factories.end_user(email="ann@example.com")
    resp = login(client, "ann@example.com", "not the password")
    assert resp.status_code == 400
    assert "Wrong email address or password." in resp.get_data(as_text=True)
    assert _actions(user.id)[-1] == "login_failed"


def test_agent_lands_on_agent_tickets(ctx, client):
    factories.agent(email="agent@example.com")
    resp = login(client, "agent@example.com", factories.PASSWORD)
    assert resp.headers["Location"].endswith("/agent/tickets")
    assert client.get("/agent/tickets").status_code == 200


def test_end_user_lands_on_my_tickets_and_cannot_open_the_desk(ctx, client):
    factories.end_user(email="ann@example.com")
    resp = login(client, "ann@example.com", factories.PASSWORD)
    assert resp.headers["Location"].endswith("/my/tickets")
    assert client.get("/agent/tickets").status_code == 403


def test_pages_need_a_signed_in_user(client):
    for path in ("/my/tickets", "/agent/tickets"):
        resp = client.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_login_follows_a_local_next_only(ctx, client):
    factories.end_user(email="ann@example.com")
    token = csrf_token(client)
    data = {"email": "ann@example.com", "password": factories.PASSWORD, "csrf_token": token}
    resp = client.post("/login?next=//evil.example/x", data=data)
    assert resp.headers["Location"].endswith("/my/tickets")


def test_logout_is_a_post_and_is_audited(ctx, client):
    user = factories.end_user(email="ann@example.com")
    login(client, "ann@example.com", factories.PASSWORD)
    assert client.get("/logout").status_code == 405
    resp = post_form(client, "/logout", {}, form_page="/my/tickets")
    assert resp.status_code == 302
    assert client.get("/my/tickets").status_code == 302
    assert _actions(user.id)[-2:] == ["login", "logout"]


def test_remember_me_sets_a_lasting_cookie(ctx, client):
    factories.end_user(email="ann@example.com")
    resp = login(client, "ann@example.com", factories.PASSWORD, remember="y")
    cookies = resp.headers.getlist("Set-Cookie")
    remember = [c for c in cookies if c.startswith("remember_token=")]
    assert remember and "Expires=" in remember[0] and "HttpOnly" in remember[0]


def test_ending_every_session_signs_out_other_sessions(ctx, client):
    user = factories.end_user(email="ann@example.com")
    login(client, "ann@example.com", factories.PASSWORD, remember="y")
    assert client.get("/my/tickets").status_code == 200
    sessions.end_all(audit.SYSTEM, user, sessions.DELETED)
    assert client.get("/my/tickets").status_code == 302


def test_deactivated_user_cannot_sign_in_or_stay_signed_in(ctx, client):
    user = factories.end_user(email="ann@example.com")
    login(client, "ann@example.com", factories.PASSWORD)
    audit.update(audit.SYSTEM, user, is_active=False)
    assert client.get("/my/tickets").status_code == 302
    assert login(client, "ann@example.com", factories.PASSWORD).status_code == 400


def test_setup_link_creates_the_first_admin_once(ctx, client):
    token = setup.issue_token()
    assert client.get(f"/setup/{token}").status_code == 200
    assert client.get("/setup/not-the-token").status_code == 404
    resp = post_form(client, f"/setup/{token}",
                     {"name": "Ada Admin", "email": "ada@example.com", "password": "admin password"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/tickets")
    admin = User.get(User.email == "ada@example.com")
    assert admin.kind == "agent" and admin.role.is_admin
    assert client.get(f"/setup/{token}").status_code == 404
    assert setup.issue_token() is None


def test_setup_token_is_made_once_and_kept_sealed(ctx, client):
    token = setup.issue_token()
    assert setup.issue_token() == token  # a second app server prints the same link
    stored = Setting.get(Setting.key == "setup_token").value
    assert token not in stored
    assert client.get(f"/setup/{token}").status_code == 200


def test_stored_secrets_open_only_for_their_purpose(ctx):
    sealed = crypto.seal_secret("smtp_password", "pässword")
    assert "pässword" not in sealed
    assert crypto.open_secret("smtp_password", sealed) == "pässword"
    assert crypto.open_secret("setup_token", sealed) is None
    assert crypto.open_secret("smtp_password", sealed[:-4] + "AAA=") is None
    assert crypto.open_secret("smtp_password", None) is None


def test_create_admin_command(ctx):
    runner = CliRunner()
    result = runner.invoke(cli, ["create-admin", "--email", "root@example.com", "--name", "Root",
                                 "--password", "a long password"], obj={"app": ctx})
    assert result.exit_code == 0, result.output
    assert User.get(User.email == "root@example.com").role.is_admin
    again = runner.invoke(cli, ["create-admin", "--email", "root@example.com", "--name", "Root",
                                "--password", "a long password"], obj={"app": ctx})
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(cli, ["create-admin", "--email", "nope", "--name", "Root",
                              "--password", "a long password"], obj={"app": ctx})
    assert bad.exit_code != 0 and "valid email" in bad.output
