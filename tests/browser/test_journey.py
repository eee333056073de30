"""An end user's journey in a real browser against the real server: sign up
(with a Chinese name, confirmed by the mailed link), land on My Tickets, sign
out, sign in again, sign out."""
from __future__ import annotations

import re

import pytest

from tests.serverproc import mailed_link

pytestmark = pytest.mark.browser

NAME = "张伟"
EMAIL = "zhang.wei@example.com"
PASSWORD = "correct horse battery"


def test_sign_up_sign_out_sign_in(page, live_server, artifacts):
    from playwright.sync_api import expect

    base = live_server.base_url

    # Sign up.
    page.goto(base + "/signup")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.fill("input[name=name]", NAME)
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign up").click()

    # The same answer whether or not the address has an account: the mail says.
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator("main")).to_contain_text(EMAIL)
    page.goto(base + mailed_link(live_server.data_dir / "desk.db", EMAIL))
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form").get_by_role("button", name="Create my account").click()

    # Lands on My Tickets, signed in under the Chinese name.
    expect(page).to_have_url(base + "/my/tickets")
    expect(page.get_by_role("heading", name="My Tickets")).to_be_visible()
    expect(page.locator("header .who")).to_have_text(NAME)
    expect(page.locator(".alert-success")).to_contain_text(f"Welcome, {NAME}")
    assert page.title().startswith("My Tickets")
    page.screenshot(path=str(artifacts / "journey-my-tickets.png"), full_page=True)

    # Sign out: the header's POST form.
    sign_out = page.locator("header").get_by_role("button", name="Sign out")
    expect(sign_out).to_be_visible()
    sign_out.click()
    expect(page).to_have_url(base + "/login")
    expect(page.locator(".alert-info")).to_contain_text("You are signed out.")
    expect(page.locator("header").get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.locator("header .who")).to_have_count(0)
    page.screenshot(path=str(artifacts / "journey-sign-in.png"), full_page=True)

    # Signed out for real: My Tickets now sends the browser to sign in.
    page.goto(base + "/my/tickets")
    expect(page).to_have_url(re.compile(re.escape(base) + r"/login(\?.*)?$"))

    # Sign in again.
    page.goto(base + "/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/my/tickets")
    expect(page.get_by_role("heading", name="My Tickets")).to_be_visible()
    expect(page.locator("header .who")).to_have_text(NAME)

    # And out again.
    page.locator("header").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(base + "/login")
    expect(page.locator("header .who")).to_have_count(0)

    # The server subprocess served all of it (its gunicorn access log saw the forms).
    log = live_server.stdout
    for line in ('"POST /signup" 200', '"POST /login" 302',
                 '"POST /logout" 302'):
        assert line in log, f"{line} not in the server's access log\n{live_server.logs()}"
    assert re.search(r'"POST /signup/confirm/\S+" 302', log), live_server.logs()
    assert log.count('"POST /logout" 302') == 2
    for shot in ("journey-my-tickets.png", "journey-sign-in.png"):
        assert (artifacts / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
