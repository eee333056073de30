"""Rectification in real browsers against the real server: an end user corrects
their name and phone in My Info and asks for a new email address; an
administrator approves; the confirmation mail (written to the outbox by
``app.py send-mail``, as no SMTP host is set) carries the link; the end user
confirms, and from then on signs in with the new address only."""
from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from tests.browser.conftest import sign_up_in_browser

pytestmark = pytest.mark.browser

ADMIN_EMAIL = "grace.admin@example.com"
ADMIN_NAME = "Grace Admin"
ADMIN_PASSWORD = "admin horse battery staple"

OLD_NAME = "Max Mustermann"
NEW_NAME = "Max Müller-Mustermann"
NEW_PHONE = "+49 30 1234567"
OLD_EMAIL = "max@example.com"
NEW_EMAIL = "max.mueller@example.org"
PASSWORD = "correct horse battery"

CONFIRM_LINK_RE = re.compile(r"https?://\S+?(/confirm-email/[A-Za-z0-9_\-]+)")


def confirmation_mails(outbox: Path, address: str) -> list[email.message.EmailMessage]:
    """The "Confirm your new email address" mails in the outbox addressed to ``address``."""
    found = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg["To"] == address and msg["Subject"] == "Confirm your new email address":
            found.append(msg)
    return found


def sign_in(page, base: str, address: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=email]", address)
    page.fill("input[name=password]", password)
    page.locator("main form").get_by_role("button", name="Sign in").click()


def test_my_info_and_email_change(new_page, live_server, desk_cli, artifacts):
    from playwright.sync_api import expect

    base = live_server.base_url
    # The administrator is created from the command line while the end user works.
    create_admin = desk_cli.start(live_server, "create-admin", "--email", ADMIN_EMAIL,
                                  "--name", ADMIN_NAME, "--password", ADMIN_PASSWORD)

    # The end user signs up and opens My Info from the header.
    user = new_page()
    sign_up_in_browser(user, live_server, OLD_NAME, OLD_EMAIL, PASSWORD)
    user.locator("header").get_by_role("link", name="My Info").click()
    expect(user).to_have_url(base + "/my/info")
    expect(user.get_by_role("heading", name="My Info", exact=True)).to_be_visible()
    expect(user.locator("#email-shown")).to_have_value(OLD_EMAIL)
    expect(user.locator("#email-shown")).not_to_be_editable()

    # Correct name and phone; the saved values are shown.
    details = user.locator("section#details")
    details.locator("input[name=name]").fill(NEW_NAME)
    details.locator("input[name=phone]").fill(NEW_PHONE)
    details.get_by_role("button", name="Save").click()
    expect(user).to_have_url(base + "/my/info")
    expect(user.locator(".alert-success")).to_have_text("Your details were saved.")
    expect(details.locator("input[name=name]")).to_have_value(NEW_NAME)
    expect(details.locator("input[name=phone]")).to_have_value(NEW_PHONE)
    expect(user.locator("header .who")).to_have_text(NEW_NAME)

    # Ask for the new address.
    change = user.locator("section#email")
    change.locator("input[name=new_email]").fill(NEW_EMAIL)
    change.get_by_role("button", name="Ask for the change").click()
    expect(user).to_have_url(base + "/my/info")
    expect(user.locator(".alert-success")).to_contain_text("Your request was sent.")
    expect(change.locator(".alert-info")).to_contain_text(
        f"You asked to change your address to {NEW_EMAIL}. An administrator will review it.")
    expect(user.locator("#email-shown")).to_have_value(OLD_EMAIL)

    # The administrator approves it from the queue.
    assert f"administrator {ADMIN_EMAIL} created" in create_admin.wait()
    admin = new_page()
    sign_in(admin, base, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(admin.locator("header .who")).to_have_text(ADMIN_NAME)
    admin.goto(base + "/agent/settings/email-changes")
    expect(admin.get_by_role("heading", name="Email change requests")).to_be_visible()
    row = admin.locator("table.list tbody tr").filter(has_text=NEW_EMAIL)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(NEW_NAME)
    expect(row).to_contain_text(OLD_EMAIL)
    row.get_by_role("button", name="Approve").click()
    expect(admin).to_have_url(base + "/agent/settings/email-changes")
    expect(admin.locator(".alert-success")).to_have_text(
        "Approved. A confirmation link was sent to the new address.")
    expect(admin.locator("table.list tbody tr").filter(has_text=NEW_EMAIL)).to_have_count(0)

    # Deliver the queued mail now (no SMTP host: into <DATA_DIR>/outbox) rather
    # than wait for the scheduler; it may have written it already, which is fine.
    delivered = desk_cli(live_server, "send-mail")
    assert re.search(r"^\d+ sent, 0 failed", delivered, re.M), delivered
    mails = confirmation_mails(live_server.data_dir / "outbox", NEW_EMAIL)
    assert len(mails) == 1, f"expected one confirmation mail to {NEW_EMAIL}, found {len(mails)}"
    body = mails[0].get_content()
    assert NEW_NAME in body
    links = CONFIRM_LINK_RE.findall(body)
    assert len(links) == 1, f"no single confirmation link in the mail:\n{body}"
    confirm_path = links[0]

    # The user (still signed in) opens the link and confirms.
    user.goto(base + confirm_path)
    expect(user.get_by_role("heading", name="Confirm your new email address")).to_be_visible()
    user.locator("main form").get_by_role("button", name="Confirm").click()
    expect(user).to_have_url(base + "/my/info")
    expect(user.locator(".alert-success")).to_have_text(f"Your email address is now {NEW_EMAIL}.")
    expect(user.locator("#email-shown")).to_have_value(NEW_EMAIL)
    expect(user.locator("section#email .alert-info")).to_have_count(0)
    expect(details.locator("input[name=name]")).to_have_value(NEW_NAME)
    expect(details.locator("input[name=phone]")).to_have_value(NEW_PHONE)
    user.screenshot(path=str(artifacts / "email-change-my-info.png"), full_page=True)

    # Sign out; the old address no longer signs in, the new one does.
    user.locator("header").get_by_role("button", name="Sign out").click()
    expect(user).to_have_url(base + "/login")
    sign_in(user, base, OLD_EMAIL, PASSWORD)
    expect(user).to_have_url(base + "/login")
    expect(user.locator("main .alert-error")).to_have_text("Wrong email address or password.")
    expect(user.locator("header .who")).to_have_count(0)
    sign_in(user, base, NEW_EMAIL, PASSWORD)
    expect(user).to_have_url(base + "/my/tickets")
    expect(user.locator("header .who")).to_have_text(NEW_NAME)
    user.goto(base + "/my/info")
    expect(user.locator("#email-shown")).to_have_value(NEW_EMAIL)

    # The confirmation link worked once.
    user.goto(base + confirm_path)
    user.locator("main form").get_by_role("button", name="Confirm").click()
    expect(user.locator("main")).to_contain_text("This confirmation link was already used.")

    assert (artifacts / "email-change-my-info.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
