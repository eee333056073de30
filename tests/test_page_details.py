"""Page details a new user trips over: the recycle bin opens where the items
are, the role page can copy, destructive buttons confirm and say what they act
on, file sizes read well, and the markup works on phones and for screen readers
(no hidden columns, no aria-describedby="None", linked hints, fieldsets)."""
from __future__ import annotations

import html
import io
import re

from desk import ROOT
from desk.models import Role
from desk.services import attachments as files
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import csrf_token
from tests.conftest import signed_in


def text(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def post(b, path: str, data: dict | None = None):
    return b.post(path, data={**(data or {}), "csrf_token": csrf_token(b, "/")})


def test_the_recycle_bin_opens_on_a_tab_that_holds_items(ctx):
    admin = factories.admin(name="Ada Admin")
    contact = factories.end_user(name="Bob Buyer", email="bob@example.com")
    b = signed_in(ctx, admin)
    page = text(b.get("/agent/recycle-bin"))
    assert "The recycle bin is empty." in page
    assert post(b, f"/agent/people/{contact.id}/delete").status_code == 302
    page = text(b.get("/agent/recycle-bin"))
    assert re.search(r'module=contacts"\s+aria-current="page"', page)
    assert "Bob Buyer" in page and "The recycle bin is empty." not in page
    tickets_tab = text(b.get("/agent/recycle-bin?module=tickets"))
    assert "Nothing of this kind was deleted." in tickets_tab
    assert "The recycle bin is empty." not in tickets_tab


def test_the_role_page_has_the_copy_button_it_mentions(ctx):
    admin = factories.admin()
    b = signed_in(ctx, admin)
    agent_role = Role.get(Role.name == "Agent")
    page = text(b.get(f"/agent/settings/roles/{agent_role.id}"))
    assert "Copy this role to make one you can edit." in page
    action = f'action="/agent/settings/roles/{agent_role.id}/copy"'
    assert action in page and "Copy this role</button>" in page
    resp = post(b, f"/agent/settings/roles/{agent_role.id}/copy")
    assert resp.status_code == 302
    assert Role.select().where(Role.builtin == False).count() == 1  # noqa: E712


def test_destructive_buttons_confirm_and_name_what_they_act_on(ctx):
    admin = factories.admin(name="Ada Admin")
    contact = factories.end_user(name="Bob Buyer", email="bob@example.com")
    b = signed_in(ctx, admin)
    people = html.unescape(text(b.get("/agent/contacts")))
    assert 'data-confirm="Move Bob Buyer to the recycle bin?"' in people
    assert 'Delete<span class="visually-hidden"> Bob Buyer</span></button>' in people
    assert 'Erase…<span class="visually-hidden"> Bob Buyer</span></a>' in people
    ticket = ticket_service.submit(contact, "Broken keyboard", "Keys stick")
    page = text(b.get(f"/agent/tickets/{ticket.id}"))
    assert 'data-confirm="Move this ticket to the recycle bin?"' in page
    assert post(b, f"/agent/tickets/{ticket.id}/delete").status_code == 302
    bin_page = html.unescape(text(b.get("/agent/recycle-bin?module=tickets")))
    assert f'data-confirm="Delete “#{ticket.id} Broken keyboard” for good? This cannot be undone."' in bin_page
    assert f'Restore<span class="visually-hidden"> #{ticket.id} Broken keyboard</span>' in bin_page
    factories.agent(name="Mia Agent")
    b.post(f"/agent/settings/roles/{Role.get(Role.name == 'Agent').id}/copy",
           data={"csrf_token": csrf_token(b, "/")})
    roles = html.unescape(text(b.get("/agent/settings/roles")))
    assert re.search(r'data-confirm="Delete the role [^"]+\?"', roles)
    assert 'Copy<span class="visually-hidden"> Agent</span>' in roles
    # The script that asks is served and loaded on every page.
    assert b.get("/static/confirm.js").status_code == 200
    assert 'src="/static/confirm.js"' in people


def test_file_sizes_read_well(ctx):
    requester = factories.end_user()
    uploads = [files.Upload(filename="tiny.txt", stream=io.BytesIO(b"12345")),
               files.Upload(filename="mid.txt", stream=io.BytesIO(b"x" * 1536))]
    ticket = ticket_service.submit(requester, "Files", "Two files", uploads=uploads)
    page = text(signed_in(ctx, requester).get(f"/my/tickets/{ticket.id}"))
    assert "5 bytes" in page and "1.5 KB" in page
    assert "0.0 KB" not in page


def test_markup_for_phones_and_screen_readers(ctx):
    admin = factories.admin()
    requester = factories.end_user()
    ticket = ticket_service.submit(requester, "Printer", "It blinks")
    b = signed_in(ctx, admin)
    pages = {path: text(b.get(path)) for path in (
        "/agent/tickets?view=all", f"/agent/tickets/{ticket.id}", "/agent/contacts",
        "/agent/recycle-bin", "/agent/settings/roles", "/agent/settings/my-info",
        f"/agent/settings/roles/{Role.get(Role.name == 'Agent').id}")}
    end_user = signed_in(ctx, requester)
    pages.update({path: text(end_user.get(path)) for path in (
        "/my/tickets", "/tickets/new", f"/my/tickets/{ticket.id}", "/my/info")})
    for path, page in pages.items():
        assert 'aria-describedby="None"' not in page, path
        # Every list table sits in a sideways-scrolling region; no empty header cell.
        assert page.count('<table class="list') == page.count('<div class="table-scroll" role="region"'), path
        assert "<th></th>" not in page, path
    for path in ("/tickets/new", f"/my/tickets/{ticket.id}"):
        page = pages[path]
        assert 'aria-describedby="attachments-hint attachments-error"' in page, path
        assert re.search(r'id="attachments-error" role="alert" tabindex="-1" hidden', page), path
    agent_ticket = pages[f"/agent/tickets/{ticket.id}"]
    props = agent_ticket[agent_ticket.index("<fieldset class=\"props-fields\">"):]
    assert "<legend" in props[:200] and 'name="status"' in props[:props.index("</fieldset>")]
    assert not re.search(r"<dl[^>]*>(?:(?!</dl>).)*<select", agent_ticket, re.S)
    css = (ROOT / "static" / "desk.css").read_text()
    assert "display: none" not in css
    assert "focus()" in (ROOT / "static" / "upload-check.js").read_text()
