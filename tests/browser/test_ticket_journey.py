"""A ticket's journey in real browsers against the real server: an end user
submits a ticket with a PNG attached, an administrator (created with
``app.py create-admin``) answers it from the agent desk, the end user sees the
reply and downloads the file byte for byte, and another end user can reach
neither the ticket nor the file (404)."""
from __future__ import annotations

import re
import struct
import zlib

import pytest

from tests.browser.conftest import sign_up_in_browser

pytestmark = pytest.mark.browser

ADMIN_EMAIL = "ada.admin@example.com"
ADMIN_NAME = "Ada Admin"
ADMIN_PASSWORD = "admin horse battery staple"

REQUESTER_NAME = "Rita Requester"
REQUESTER_EMAIL = "rita@example.com"
OTHER_NAME = "Otto Other"
OTHER_EMAIL = "otto@example.com"
PASSWORD = "correct horse battery"

SUBJECT = "Printer shows a red light"
DESCRIPTION = "Since this morning the printer on floor 2 blinks red. Photo attached."
REPLY = "Thanks Rita, please switch it off and on again; a technician comes at 3 pm."
FILENAME = "red-light.png"


def tiny_png() -> bytes:
    """A real 1x1 PNG (one red pixel), built by hand so its bytes are known."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def sign_up(page, server, name: str, email: str) -> None:
    sign_up_in_browser(page, server, name, email, PASSWORD)


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.locator("main form").get_by_role("button", name="Sign in").click()


def test_ticket_with_attachment_reply_and_download(new_page, live_server, desk_cli, tmp_path,
                                                    artifacts):
    from playwright.sync_api import expect

    base = live_server.base_url
    # The administrator is created from the command line while the end user works.
    create_admin = desk_cli.start(live_server, "create-admin", "--email", ADMIN_EMAIL,
                                  "--name", ADMIN_NAME, "--password", ADMIN_PASSWORD)

    png = tiny_png()
    png_path = tmp_path / FILENAME
    png_path.write_bytes(png)

    # The end user signs up and opens "New ticket" from the header.
    requester = new_page()
    sign_up(requester, live_server, REQUESTER_NAME, REQUESTER_EMAIL)
    requester.locator("header").get_by_role("link", name="New ticket").click()
    expect(requester).to_have_url(base + "/tickets/new")
    expect(requester.get_by_role("heading", name="Submit a request")).to_be_visible()
    requester.fill("input[name=subject]", SUBJECT)
    requester.fill("textarea[name=description]", DESCRIPTION)
    requester.set_input_files("input[name=attachments]", str(png_path))
    requester.locator("main form.upload-form").get_by_role("button", name="Submit").click()

    # Lands on the ticket page, the file listed with the opening message.
    expect(requester).to_have_url(re.compile(re.escape(base) + r"/my/tickets/\d+$"))
    ticket_id = int(requester.url.rsplit("/", 1)[1])
    expect(requester.locator(".alert-success")).to_contain_text(
        f"Your request #{ticket_id} was received.")
    expect(requester.get_by_role("heading", name=f"#{ticket_id} {SUBJECT}")).to_be_visible()
    opening = requester.locator(".thread .comment-opening")
    expect(opening.locator(".comment-body")).to_have_text(DESCRIPTION)
    file_link = opening.locator("ul.files").get_by_role("link", name=FILENAME)
    expect(file_link).to_be_visible()
    href = file_link.get_attribute("href")
    match = re.fullmatch(r"/attachments/(\d+)", href or "")
    assert match, f"unexpected attachment link {href!r}"
    attachment_id = int(match.group(1))

    # The administrator signs in (own browser context) and finds the ticket
    # under "All tickets" (the default view is only their own queue).
    assert f"administrator {ADMIN_EMAIL} created" in create_admin.wait()
    agent = new_page()
    sign_in(agent, base, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(agent).to_have_url(re.compile(re.escape(base) + r"/agent/tickets(\?.*)?$"))
    expect(agent.locator("header .who")).to_have_text(ADMIN_NAME)
    agent.locator("form.filters").get_by_role("link", name="All tickets").click()
    expect(agent).to_have_url(base + "/agent/tickets?view=all")
    row = agent.locator("table.list tbody tr").filter(has_text=SUBJECT)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(REQUESTER_NAME)
    row.get_by_role("link", name=SUBJECT).click()
    expect(agent).to_have_url(base + f"/agent/tickets/{ticket_id}")
    expect(agent.locator(".ticket-side")).to_contain_text(REQUESTER_EMAIL)
    expect(agent.locator(".comment-opening ul.files")).to_contain_text(FILENAME)

    # A public reply.
    agent.fill("textarea[name=body]", REPLY)
    agent.get_by_label("Public reply (the requester sees it)").check()
    agent.locator(".ticket-main form.upload-form").get_by_role("button", name="Send").click()
    expect(agent).to_have_url(base + f"/agent/tickets/{ticket_id}#latest")
    expect(agent.locator(".alert-success")).to_have_text("Reply sent.")
    latest = agent.locator(".thread #latest")
    expect(latest.locator(".comment-body")).to_have_text(REPLY)
    expect(latest.locator(".comment-head strong")).to_have_text(ADMIN_NAME)
    expect(latest.locator(".badge-private")).to_have_count(0)
    agent.screenshot(path=str(artifacts / "ticket-journey-agent.png"), full_page=True)

    # Back with the end user: the reply is there after a reload.
    requester.reload()
    latest = requester.locator(".thread #latest")
    expect(latest.locator(".comment-body")).to_have_text(REPLY)
    expect(latest.locator(".comment-head strong")).to_have_text(ADMIN_NAME)
    requester.screenshot(path=str(artifacts / "ticket-journey-requester.png"), full_page=True)

    # Download the attachment by clicking its link: the same bytes come back.
    with requester.expect_download() as download_info:
        requester.locator(".comment-opening ul.files").get_by_role("link", name=FILENAME).click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == FILENAME
    with open(download.path(), "rb") as fh:
        assert fh.read() == png

    # Another end user can reach neither the ticket nor its file.
    other = new_page()
    sign_up(other, live_server, OTHER_NAME, OTHER_EMAIL)
    for path in (f"/attachments/{attachment_id}", f"/my/tickets/{ticket_id}"):
        response = other.goto(base + path)
        assert response is not None and response.status == 404, \
            f"{path} answered {response and response.status} to another end user"
        expect(other.locator(".error-page .status-code")).to_have_text("404")
        expect(other.get_by_role("heading", name="Not found")).to_be_visible()
        expect(other.locator("main")).not_to_contain_text(SUBJECT)
        expect(other.locator("main")).not_to_contain_text(DESCRIPTION)
    other.goto(base + "/my/tickets")
    expect(other.locator("main")).to_contain_text("You have no tickets yet.")

    for shot in ("ticket-journey-agent.png", "ticket-journey-requester.png"):
        assert (artifacts / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
