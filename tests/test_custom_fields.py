"""Custom fields (issue 12): definitions at /agent/settings/fields, values on
every form as cf_<key> with per-type validation, field-level permissions, and
encrypted fields: sealed with AES-256-GCM bound to their place, masked, revealed
(audited) only to roles that may, and never anywhere in clear."""
from __future__ import annotations

import io
import json
import logging
import re
import zipfile

import pytest

from desk import audit
from desk.db import db
from desk.errors import InvalidInput
from desk.errors import PermissionDenied
from desk.models import AuditEntry
from desk.models import ContactFieldValue
from desk.models import CustomField
from desk.models import MailMessage
from desk.models import Role
from desk.models import Ticket
from desk.models import TicketFieldValue
from desk.services import custom_fields
from desk.services import erasure
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.test_erasure import database_bytes
from tests.conftest import MANY_SIGN_INS
from tests.conftest import html

CARD = "4539 5787 6362 1486"  # passes the Luhn check
CARD_DIGITS = CARD.replace(" ", "")


APP_CONFIG = MANY_SIGN_INS


def define(admin, module="tickets", key="order", type="text", **extra):
    return custom_fields.create(admin, module, {"key": key, "label": key.title(), "type": type, **extra})


def role_with(name, permissions, fields=None) -> Role:
    return audit.create(audit.SYSTEM, Role, name=name, permissions=json.dumps(sorted(permissions)),
                        ticket_scope="all", field_permissions=json.dumps(fields or {}))


# -- validation ----------------------------------------------------------------------

VALID = [
    ("text", " Hello 你好 ", "Hello 你好"),
    ("long_text", "line one\nline two", "line one\nline two"),
    ("number", "1,234.50", "1234.5"),
    ("number", "-7", "-7"),
    ("date", "2024-02-29", "2024-02-29"),
    ("checkbox", "y", "1"),
    ("checkbox", "", ""),
    ("email", "Zoe@Example.COM", "zoe@example.com"),
    ("phone", "+86 10 6552 9988", "+86 10 6552 9988"),
    ("card", CARD, CARD_DIGITS),
    ("card", "4111-1111-1111-1111", "4111111111111111"),
    ("choice", "Gold", "Gold"),
]
INVALID = [
    ("number", "twelve", "Enter a number."),
    ("number", "1e20", "Enter a number between"),
    ("number", "NaN", "Enter a number between"),
    ("date", "2023-02-29", "Enter a real date"),
    ("date", "29/02/2024", "Enter a real date"),
    ("email", "not-an-address", "Enter a valid email address."),
    ("phone", "call me maybe", "A phone number has digits"),
    ("card", "4539 5787 6362 1487", "Enter a valid card number"),
    ("card", "1234", "Enter a valid card number"),
    ("choice", "Platinum", "Choose one of the listed values."),
    ("text", "bad\x00byte", "control characters"),
    ("text", "x" * 501, "at most 500"),
]


@pytest.mark.parametrize("kind,raw,stored", VALID)
def test_each_type_accepts_and_normalizes_good_values(ctx, admin, kind, raw, stored):
    field = define(admin, key="f", type=kind, choices="Gold\nSilver")
    assert custom_fields.clean_value(field, raw) == stored


@pytest.mark.parametrize("kind,raw,message", INVALID)
def test_each_type_refuses_bad_values_with_a_clear_message(ctx, admin, kind, raw, message):
    field = define(admin, key="f", type=kind, choices="Gold\nSilver")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        custom_fields.clean_value(field, raw)


def test_definitions_are_checked(ctx, admin):
    with pytest.raises(InvalidInput):
        define(admin, key="Bad Key")
    with pytest.raises(InvalidInput):
        define(admin, type="spreadsheet")
    with pytest.raises(InvalidInput, match="at least one choice"):
        define(admin, type="choice")
    define(admin, key="order")
    with pytest.raises(Exception, match="exists"):
        define(admin, key="order")
    agent = factories.agent()
    with pytest.raises(PermissionDenied):
        define(agent, key="other")


# -- the settings page -----------------------------------------------------------------

def test_admin_defines_renames_deletes_and_restores_a_field(ctx, admin):
    b = signed_in(ctx, admin)
    resp = post_form(b, "/agent/settings/fields", {"module": "tickets", "key": "order_no",
                                                   "label": "Order number", "label_zh": "订单号",
                                                   "type": "text", "public": "y", "position": "2"})
    assert resp.status_code == 302
    field = CustomField.get(CustomField.key == "order_no")
    assert (field.module, field.label_zh, field.public, field.position) == ("tickets", "订单号", True, 2)
    assert "cf_order_no" in html(b.get("/agent/settings/fields"))

    bad = post_form(b, "/agent/settings/fields", {"module": "tickets", "key": "9lives", "label": "X",
                                                  "type": "text"})
    assert bad.status_code == 400 and "The key starts with a small letter" in html(bad)
    twice = post_form(b, "/agent/settings/fields", {"module": "tickets", "key": "order_no",
                                                    "label": "X", "type": "text"})
    assert twice.status_code == 409

    requester = factories.end_user()
    ticket = factories.ticket(requester, "Where is my parcel")
    custom_fields.set_values(admin, "tickets", ticket, {"cf_order_no": "A-1001"})
    resp = post_form(b, f"/agent/settings/fields/{field.id}", {"label": "Order reference",
                                                              "label_zh": "订单号", "public": "y"})
    assert resp.status_code == 302
    page = html(b.get(f"/agent/tickets/{ticket.id}"))
    assert "Order reference" in page and "A-1001" in page  # renaming keeps the data

    assert post_form(b, f"/agent/settings/fields/{field.id}/delete", {},
                     form_page="/agent/settings/fields").status_code == 302
    assert "A-1001" not in html(b.get(f"/agent/tickets/{ticket.id}"))
    assert "In the recycle bin" in html(b.get("/agent/settings/fields"))
    assert post_form(b, f"/agent/settings/fields/{field.id}/restore", {},
                     form_page="/agent/settings/fields").status_code == 302
    assert "A-1001" in html(b.get(f"/agent/tickets/{ticket.id}"))
    actions = [e.action for e in AuditEntry.select().where(AuditEntry.record_type == "CustomField")
               .order_by(AuditEntry.seq)]
    assert actions == ["create", "update", "delete", "restore"]


# -- values on forms ------------------------------------------------------------------------

def test_new_ticket_form_takes_public_fields_and_validates_them(ctx, admin):
    define(admin, key="order", type="number", public=True, required=True)
    define(admin, key="internal", type="text")  # agents only
    user = factories.end_user()
    b = signed_in(ctx, user)
    form = html(b.get("/tickets/new"))
    assert 'name="cf_order"' in form and 'name="cf_internal"' not in form

    before = Ticket.select().count()
    resp = post_form(b, "/tickets/new", {"subject": "Refund", "description": "please",
                                         "cf_order": "twelve"})
    assert resp.status_code == 400
    assert "Order: Enter a number." in html(resp) and 'value="twelve"' in html(resp)
    resp = post_form(b, "/tickets/new", {"subject": "Refund", "description": "please"},
                     form_page="/tickets/new")
    assert resp.status_code == 400 and "Order: This field is required." in html(resp)
    # A field the end user is not shown cannot be set by posting it.
    resp = post_form(b, "/tickets/new", {"subject": "Refund", "description": "please",
                                         "cf_order": "12", "cf_internal": "sneaky"})
    assert resp.status_code == 403
    assert Ticket.select().count() == before

    resp = post_form(b, "/tickets/new", {"subject": "Refund", "description": "please",
                                         "cf_order": "12.50"})
    assert resp.status_code == 302
    ticket = Ticket.select().order_by(Ticket.id.desc()).get()
    assert "12.5" in html(b.get(f"/my/tickets/{ticket.id}"))
    assert "12.5" in html(signed_in(ctx, admin).get(f"/agent/tickets/{ticket.id}"))


def test_agent_edits_ticket_fields_with_clear_messages(ctx, admin):
    define(admin, key="due", type="date")
    define(admin, key="vip", type="checkbox")
    ticket = factories.ticket(factories.end_user(), "Date test")
    b = signed_in(ctx, admin)
    page = f"/agent/tickets/{ticket.id}"
    resp = post_form(b, f"{page}/fields", {"cf_due": "2024-13-01", "cf_vip": "1"}, form_page=page)
    assert resp.status_code == 400 and "Due: Enter a real date as YYYY-MM-DD." in html(resp)
    assert TicketFieldValue.select().count() == 0
    resp = post_form(b, f"{page}/fields", {"cf_due": "2024-12-01", "cf_vip": "1"}, form_page=page)
    assert resp.status_code == 302
    shown = html(b.get(page))
    assert 'value="2024-12-01"' in shown and re.search(r'name="cf_vip" value="1"\s+checked', shown)
    entries = list(AuditEntry.select().where(AuditEntry.record_type == "TicketFieldValue"))
    assert {e.actor_id for e in entries} == {admin.id}
    assert "2024-12-01" in str([audit.read_changes(e) for e in entries])


def test_field_permissions_apply_to_custom_fields(ctx, admin):
    define(admin, key="budget", type="number")
    define(admin, key="notes", type="text")
    ticket = factories.ticket(factories.end_user(), "Permissions")
    custom_fields.set_values(admin, "tickets", ticket, {"cf_budget": "999777", "cf_notes": "fragile"})
    role = role_with("Field worker", ("tickets:view", "tickets:edit"),
                     {"tickets.cf_budget": "hidden", "tickets.cf_notes": "read"})
    agent = factories.agent(role=role.name)
    b = signed_in(ctx, agent)
    page = f"/agent/tickets/{ticket.id}"
    shown = html(b.get(page))
    assert "999777" not in shown and "Budget" not in shown
    assert "fragile" in shown and 'name="cf_notes"' not in shown  # read-only: text, no input
    for data in ({"cf_budget": "1"}, {"cf_notes": "changed"}):
        assert post_form(b, f"{page}/fields", data, form_page=page).status_code == 403
    values = {r.field.key: r.value for r in TicketFieldValue.select()}
    assert values == {"budget": "999777", "notes": "fragile"}
    # The roles page lists custom fields with their labels, and saves levels for them.
    roles_page = html(signed_in(ctx, admin).get(f"/agent/settings/roles/{role.id}"))
    assert 'name="field:tickets.cf_budget"' in roles_page and "Budget" in roles_page


def test_my_info_and_contact_page_show_contact_fields(ctx, admin):
    define(admin, "contacts", key="company", type="text", public=True)
    define(admin, "contacts", key="tier", type="choice", choices="Gold\nSilver")  # agents only
    user = factories.end_user(name="Chen Jing")
    b = signed_in(ctx, user)
    info = html(b.get("/my/info"))
    assert 'name="cf_company"' in info and 'name="cf_tier"' not in info
    resp = post_form(b, "/my/info", {"name": "Chen Jing", "timezone": "UTC", "language": "",
                                     "cf_company": "Acme 有限公司"})
    assert resp.status_code == 302
    assert "Acme 有限公司" in html(b.get("/my/info"))
    assert post_form(b, "/my/info", {"name": "Chen Jing", "timezone": "UTC", "language": "",
                                     "cf_tier": "Gold"}).status_code == 403

    a = signed_in(ctx, admin)
    page = f"/agent/contacts/{user.id}"
    assert "Acme 有限公司" in html(a.get(page))
    resp = post_form(a, f"{page}/fields", {"cf_tier": "Bronze"}, form_page=page)
    assert resp.status_code == 400 and "Choose one of the listed values." in html(resp)
    assert post_form(a, f"{page}/fields", {"cf_tier": "Gold"}, form_page=page).status_code == 302
    assert ContactFieldValue.get(ContactFieldValue.user == user.id,
                                 ContactFieldValue.field == CustomField.get(key="tier").id).value == "Gold"
    light = factories.agent(role="Light Agent")
    assert post_form(signed_in(ctx, light), f"{page}/fields", {"cf_tier": "Silver"},
                     form_page=page).status_code == 403


# -- encrypted fields ----------------------------------------------------------------------

@pytest.fixture
def card_ticket(ctx, admin):
    """A ticket with an encrypted card number entered by its requester."""
    define(admin, key="card", type="card", public=True, encrypted=True)
    user = factories.end_user(name="Pia Payer", email="pia@example.com")
    b = signed_in(ctx, user)
    resp = post_form(b, "/tickets/new", {"subject": "Charge twice", "description": "refund",
                                         "cf_card": CARD})
    assert resp.status_code == 302
    return Ticket.get(Ticket.subject == "Charge twice"), user, b


def test_encrypted_values_are_masked_and_revealed_only_with_permission(ctx, admin, card_ticket):
    ticket, user, requester = card_ticket
    row = TicketFieldValue.get()
    assert row.value == "" and row.sealed.startswith(row.key_id + ":") and CARD_DIGITS not in row.sealed
    masked = "•••• •••• •••• 1486"
    for b, path in ((requester, f"/my/tickets/{ticket.id}"), (signed_in(ctx, admin), f"/agent/tickets/{ticket.id}")):
        page = html(b.get(path))
        assert masked in page and CARD_DIGITS not in page and CARD not in page

    a = signed_in(ctx, admin)
    reveal = f"/agent/tickets/{ticket.id}/fields/card/reveal"
    assert f'action="{reveal}"' in html(a.get(f"/agent/tickets/{ticket.id}"))
    resp = post_form(a, reveal, {}, form_page=f"/agent/tickets/{ticket.id}")
    assert resp.status_code == 200 and CARD_DIGITS in html(resp)
    assert resp.headers["Cache-Control"] == "no-store"
    entry = AuditEntry.select().where(AuditEntry.action == "reveal").get()
    assert (entry.actor_id, entry.record_type, entry.record_id) == (admin.id, "Ticket", str(ticket.id))
    assert audit.read_changes(entry) == {"field": "card"}
    assert CARD_DIGITS not in entry.changes

    # An agent whose role may not reveal: no button, and the URL answers 403.
    agent = factories.agent()
    b = signed_in(ctx, agent)
    page = html(b.get(f"/agent/tickets/{ticket.id}"))
    assert masked in page and "/reveal" not in page
    resp = post_form(b, reveal, {}, form_page=f"/agent/tickets/{ticket.id}")
    assert resp.status_code == 403 and CARD_DIGITS not in html(resp)
    # A role that may reveal but not see the field gets nothing either.
    blind = factories.agent(role=role_with("Blind revealer", ("tickets:view", "tickets:reveal"),
                                           {"tickets.cf_card": "hidden"}).name)
    b = signed_in(ctx, blind)
    assert "1486" not in html(b.get(f"/agent/tickets/{ticket.id}"))
    assert post_form(b, reveal, {}, form_page=f"/agent/tickets/{ticket.id}").status_code == 404
    # Guessing: other tickets, unknown keys, end users.
    other = factories.ticket(factories.end_user(), "Not theirs")
    assert post_form(a, f"/agent/tickets/{other.id}/fields/card/reveal", {},
                     form_page=f"/agent/tickets/{ticket.id}").status_code == 200
    assert post_form(a, f"/agent/tickets/{ticket.id}/fields/nope/reveal", {},
                     form_page=f"/agent/tickets/{ticket.id}").status_code == 404
    resp = post_form(requester, reveal, {}, form_page=f"/my/tickets/{ticket.id}")
    assert resp.status_code == 403 and CARD_DIGITS not in html(resp)
    assert AuditEntry.select().where(AuditEntry.action == "reveal").count() == 2


def test_a_revealer_role_with_the_permission_sees_the_value(ctx, admin, card_ticket):
    ticket, _, _ = card_ticket
    revealer = factories.agent(role=role_with("Billing", ("tickets:view", "tickets:reveal")).name)
    b = signed_in(ctx, revealer)
    resp = post_form(b, f"/agent/tickets/{ticket.id}/fields/card/reveal", {},
                     form_page=f"/agent/tickets/{ticket.id}")
    assert resp.status_code == 200 and CARD_DIGITS in html(resp)


def test_an_empty_encrypted_input_keeps_the_value_and_changes_are_audited_masked(ctx, admin, card_ticket):
    ticket, _, _ = card_ticket
    a = signed_in(ctx, admin)
    page = f"/agent/tickets/{ticket.id}"
    assert post_form(a, f"{page}/fields", {"cf_card": ""}, form_page=page).status_code == 302
    assert custom_fields.export_values(admin, "tickets", ticket, may_reveal=True) == {"card": CARD_DIGITS}
    assert post_form(a, f"{page}/fields", {"cf_card": "4111111111111111"}, form_page=page).status_code == 302
    assert custom_fields.export_values(admin, "tickets", ticket, may_reveal=True) == {"card": "4111111111111111"}
    for entry in AuditEntry.select().where(AuditEntry.record_type == "TicketFieldValue"):
        changes = audit.read_changes(entry)
        assert changes["sealed"][1] == audit.SECRET
        assert "4111111111111111" not in str(changes) and CARD_DIGITS not in str(changes)


def test_swapped_ciphertexts_fail_to_decrypt_without_crashing_the_page(ctx, admin):
    define(admin, key="card", type="card", encrypted=True)
    requester = factories.end_user()
    first = factories.ticket(requester, "First")
    second = factories.ticket(requester, "Second")
    custom_fields.set_values(admin, "tickets", first, {"cf_card": "4111111111111111"})
    custom_fields.set_values(admin, "tickets", second, {"cf_card": CARD})
    a, b = (TicketFieldValue.get(TicketFieldValue.ticket == t.id) for t in (first, second))
    # An attacker with database access swaps the two stored values.
    mark = db.obj.param
    db.execute_sql(f'UPDATE "ticket_field_value" SET "sealed" = CASE "id" WHEN {a.id} THEN {mark} '
                   f'ELSE {mark} END WHERE "id" IN ({a.id}, {b.id})', (b.sealed, a.sealed))
    client = signed_in(ctx, admin)
    for t in (first, second):
        resp = client.get(f"/agent/tickets/{t.id}")
        assert resp.status_code == 200
        page = html(resp)
        assert "This value cannot be decrypted" in page and "1111" not in page and "1486" not in page
        resp = post_form(client, f"/agent/tickets/{t.id}/fields/card/reveal", {},
                         form_page=f"/agent/tickets/{t.id}")
        assert resp.status_code == 409 and "cannot be decrypted" in html(resp)
        assert "4111" not in html(resp) and "4539" not in html(resp)
    # Moving a value to another field of the same ticket fails the same way.
    define(admin, key="card2", type="card", encrypted=True)
    custom_fields.set_values(admin, "tickets", first, {"cf_card2": CARD})
    assert custom_fields.export_values(admin, "tickets", first, True)["card2"] == CARD_DIGITS


def test_marking_a_field_encrypted_later_seals_existing_values_in_batches(ctx, admin):
    field = define(admin, key="passport", type="text")
    requester = factories.end_user()
    tickets = [factories.ticket(requester, f"T{i}") for i in range(5)]
    for i, t in enumerate(tickets):
        custom_fields.set_values(admin, "tickets", t, {"cf_passport": f"P-UNIQUE-{i}7731"})
    custom_fields.update(admin, field.id, {"label": "Passport", "encrypted": True})
    assert CustomField.get_by_id(field.id).encrypting
    assert custom_fields.seal_pending(batch=2) == 2  # a kill after this leaves the rest for later
    assert custom_fields.seal_pending(batch=2) == 2
    assert custom_fields.seal_pending(batch=2) == 1
    assert not CustomField.get_by_id(field.id).encrypting
    assert all(r.value == "" and r.sealed for r in TicketFieldValue.select())
    page = html(signed_in(ctx, admin).get(f"/agent/tickets/{tickets[3].id}"))
    assert "P-UNIQUE-37731" not in page and "••••" in page
    assert custom_fields.export_values(admin, "tickets", tickets[3], True) == {"passport": "P-UNIQUE-37731"}


def test_the_clear_card_number_is_nowhere_but_reveal(ctx, admin, card_ticket, database_url, caplog, tmp_path):
    """The raw-bytes search: database file (or pg_dump), logs, mail, every
    export: zero hits, while Reveal still shows the number."""
    caplog.set_level(logging.DEBUG)
    ticket, user, requester = card_ticket
    define(admin, "contacts", key="national_id", type="text", public=True, encrypted=True)
    resp = post_form(requester, "/my/info", {"name": "Pia Payer", "timezone": "UTC", "language": "",
                                             "cf_national_id": "ZX-99887766-Q"})
    assert resp.status_code == 302
    needles = [CARD_DIGITS, CARD, "ZX-99887766-Q"]

    # The control: Reveal shows both.
    a = signed_in(ctx, admin)
    assert CARD_DIGITS in html(post_form(a, f"/agent/tickets/{ticket.id}/fields/card/reveal", {},
                                         form_page=f"/agent/tickets/{ticket.id}"))
    assert "ZX-99887766-Q" in html(post_form(a, f"/agent/contacts/{user.id}/fields/national_id/reveal",
                                             {}, form_page=f"/agent/contacts/{user.id}"))

    exported = post_form(requester, "/my/data-export", {}).get_data()
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        contents = {n: archive.read(n) for n in archive.namelist()}
    assert "1486" in contents["tickets.json"].decode()  # the masked value is there
    exports = b"".join(contents.values())
    mail = " ".join(m.subject + m.body for m in MailMessage.select())
    audit_text = " ".join(str(audit.read_changes(e)) for e in AuditEntry.select())
    raw = database_bytes(ctx, database_url)
    for needle in needles:
        for name, data in raw.items():
            assert needle.encode() not in data, (needle, name)
        assert needle.encode() not in exports
        assert needle not in mail and needle not in audit_text
        assert needle not in caplog.text
    for path in (tmp_path / "instance").rglob("*"):
        if path.is_file() and path.suffix != ".db" and "desk.db" not in path.name:
            assert not any(n.encode() in path.read_bytes() for n in needles), path


def test_erasing_a_person_destroys_their_encrypted_values(ctx, admin, card_ticket):
    ticket, user, _ = card_ticket
    define(admin, "contacts", key="company", type="text")
    custom_fields.set_values(admin, "contacts", user, {"cf_company": "Pia Payments Ltd"})
    assert TicketFieldValue.select().count() == 1 and ContactFieldValue.select().count() == 1
    erasure.start(admin, user.id, "anonymize", erasure.placeholder(user))
    assert TicketFieldValue.select().count() == 0 and ContactFieldValue.select().count() == 0
    assert ticket_service.get_ticket(admin, ticket.id).subject == "Charge twice"
    audit_text = " ".join(str(audit.read_changes(e)) for e in AuditEntry.select())
    assert "Pia Payments Ltd" not in audit_text


def test_stored_secrets_are_sealed_bound_to_their_name_and_never_audited(ctx, database_url):
    from desk import crypto
    from desk.models import StoredSecret
    from desk.services import settings
    settings.put_secret(audit.SYSTEM, "smtp_password", "hunter2-SMTP-pass")
    assert settings.get_secret("smtp_password") == "hunter2-SMTP-pass"
    assert settings.get_secret("other", "none") == "none"
    row = StoredSecret.get_by_id("smtp_password")
    assert row.key_id == crypto.active_key_id() and "hunter2" not in row.sealed
    with pytest.raises(crypto.CannotDecrypt):
        crypto.decrypt_secret("api_token", row.sealed)  # moved to another name
    settings.put_secret(audit.SYSTEM, "smtp_password", "second-SMTP-pass")
    entries = AuditEntry.select().where(AuditEntry.record_type == "StoredSecret")
    assert [audit.read_changes(e)["sealed"][1] for e in entries] == [audit.SECRET, audit.SECRET]
    for data in database_bytes(ctx, database_url).values():
        assert b"hunter2-SMTP-pass" not in data and b"second-SMTP-pass" not in data
    settings.put_secret(audit.SYSTEM, "smtp_password", "")
    assert settings.get_secret("smtp_password") == ""


def test_the_purge_removes_fields_past_retention_with_their_values(ctx, admin):
    import datetime as dt
    from desk.models import utcnow
    from desk.services import purge
    old = define(admin, key="old", type="text")
    recent = define(admin, key="recent", type="text")
    ticket = factories.ticket(factories.end_user(), "Purge fields")
    custom_fields.set_values(admin, "tickets", ticket, {"cf_old": "bye", "cf_recent": "stay"})
    custom_fields.delete(admin, old.id)
    custom_fields.delete(admin, recent.id)
    audit.update(audit.SYSTEM, CustomField.get_by_id(old.id), deleted_at=utcnow() - dt.timedelta(days=400))
    report = purge.purge_expired(ctx.config)
    assert report.fields == 1
    assert CustomField.get_or_none(CustomField.id == old.id) is None
    assert [v.value for v in TicketFieldValue.select()] == ["stay"]
    assert AuditEntry.select().where(AuditEntry.action == "purge", AuditEntry.record_type == "CustomField",
                                     AuditEntry.record_id == str(old.id)).count() == 1


# -- list columns, filters and exports ------------------------------------------------------

CSV_ROWS = re.compile(r"\r\n")


def csv_rows(resp) -> list[dict]:
    import csv as csv_module
    assert resp.status_code == 200, html(resp)[:300]
    text = resp.get_data().decode("utf-8-sig")
    return list(csv_module.DictReader(io.StringIO(text)))


@pytest.fixture
def fielded(ctx, admin):
    """Three tickets with a plan (choice), an internal note (text, hidden from
    the "Plain" role) and an encrypted card number."""
    define(admin, key="plan", type="choice", choices="Gold\nSilver")
    define(admin, key="note", type="text")
    define(admin, key="card", type="card", encrypted=True)
    requester = factories.end_user(name="Rex Requester")
    tickets = {}
    for subject, plan, note, card in (("Gold one", "Gold", "vip desk", CARD),
                                      ("Silver one", "Silver", "regular", ""),
                                      ("Gold two", "Gold", "", "")):
        t = factories.ticket(requester, subject)
        custom_fields.set_values(admin, "tickets", t, {"cf_plan": plan, "cf_note": note, "cf_card": card})
        tickets[subject] = t
    plain = factories.agent(name="Pat Plain", role=role_with(
        "Plain", ("tickets:view", "tickets:export"), {"tickets.cf_note": "hidden"}).name)
    return tickets, plain


def list_ids(resp) -> set[int]:
    assert resp.status_code == 200, resp.status_code
    return {int(i) for i in re.findall(r'href="/agent/tickets/(\d+)"', html(resp))}


def test_agents_pick_custom_field_columns_and_encrypted_ones_stay_masked(ctx, admin, fielded):
    tickets, plain = fielded
    a = signed_in(ctx, admin)
    page = html(a.get("/agent/tickets?view=all"))
    assert 'name="col" value="plan"' in page and 'name="col" value="card"' in page
    assert "<th>Plan</th>" not in page  # no column until picked
    page = html(a.get("/agent/tickets?view=all&col=plan&col=card"))
    assert "<th>Plan</th>" in page and "<th>Card</th>" in page
    assert "<td>Silver</td>" in page and "<td>•••• •••• •••• 1486</td>" in page
    assert CARD_DIGITS not in page
    # The picked columns go with the pages and the export link.
    assert "col=plan" in page and "col=card" in page
    # A hidden field cannot be picked, and asking for it shows nothing.
    b = signed_in(ctx, plain)
    page = html(b.get("/agent/tickets?view=all&col=note&col=plan"))
    assert 'value="note"' not in page and "vip desk" not in page and "<th>Note</th>" not in page
    assert "<th>Plan</th>" in page


def test_lists_filter_on_custom_fields_but_never_on_encrypted_or_hidden_ones(ctx, admin, fielded):
    tickets, plain = fielded
    a = signed_in(ctx, admin)
    gold = {tickets["Gold one"].id, tickets["Gold two"].id}
    assert list_ids(a.get("/agent/tickets?cf_plan=Gold")) == gold
    assert list_ids(a.get("/agent/tickets?cf_plan=Gold&q=two")) == {tickets["Gold two"].id}
    assert list_ids(a.get("/agent/tickets?cf_note=vip")) == {tickets["Gold one"].id}  # a part of text
    page = html(a.get("/agent/tickets?view=all"))
    assert 'name="cf_plan"' in page and 'name="cf_note"' in page and 'name="cf_card"' not in page
    # Filtering on an encrypted field would tell its values: the list ignores it...
    everything = list_ids(a.get("/agent/tickets?view=all"))
    assert list_ids(a.get(f"/agent/tickets?view=all&cf_card={CARD_DIGITS}")) == everything
    # ...and so does a filter on a field the role does not see.
    b = signed_in(ctx, plain)
    assert list_ids(b.get("/agent/tickets?view=all&cf_note=vip")) == everything
    # The export refuses both rather than quietly holding other rows.
    for query in (f"cf_card={CARD_DIGITS}", "cf_nope=1"):
        resp = a.get(f"/agent/export/tickets.csv?{query}")
        assert resp.status_code == 400 and "Unknown filter values: cf_" in html(resp), query
    assert b.get("/agent/export/tickets.csv?cf_note=vip").status_code == 400


def test_exports_carry_custom_fields_as_the_exporter_may_see_them(ctx, admin, fielded):
    tickets, plain = fielded
    a = signed_in(ctx, admin)
    rows = csv_rows(a.get("/agent/export/tickets.csv?view=all&header=keys"))
    by_id = {int(r["id"]): r for r in rows}
    gold = by_id[tickets["Gold one"].id]
    assert (gold["cf_plan"], gold["cf_note"]) == ("Gold", "vip desk")
    assert gold["cf_card"] == CARD_DIGITS  # an administrator may reveal
    assert by_id[tickets["Silver one"].id]["cf_card"] == ""
    # Translated header labels by default.
    assert "Plan" in csv_rows(a.get("/agent/export/tickets.csv?view=all"))[0]
    # The same filters as the list.
    rows = csv_rows(a.get("/agent/export/tickets.csv?cf_plan=Gold&header=keys"))
    assert {int(r["id"]) for r in rows} == {tickets["Gold one"].id, tickets["Gold two"].id}
    # Without reveal: masked; a hidden field: left out, not blanked.
    resp = signed_in(ctx, plain).get("/agent/export/tickets.csv?view=all&header=keys")
    assert CARD_DIGITS not in resp.get_data().decode("utf-8-sig")
    rows = csv_rows(resp)
    assert "cf_note" not in rows[0]
    assert {r["cf_card"] for r in rows} == {"•••• •••• •••• 1486", ""}
    # Contacts carry their fields too.
    define(admin, "contacts", key="tier", type="text")
    contact = factories.end_user(name="Tia Tier")
    custom_fields.set_values(admin, "contacts", contact, {"cf_tier": "platinum"})
    rows = csv_rows(a.get("/agent/export/contacts.csv?header=keys"))
    assert {r["cf_tier"] for r in rows if r["name"] == "Tia Tier"} == {"platinum"}


def test_the_contacts_list_filters_and_shows_contact_fields_and_its_export_follows(ctx, admin):
    define(admin, "contacts", key="tier", type="choice", choices="Gold\nSilver")
    define(admin, "contacts", key="passport", type="text", encrypted=True)
    gold = factories.end_user(name="Gia Gold")
    silver = factories.end_user(name="Sol Silver")
    custom_fields.set_values(admin, "contacts", gold, {"cf_tier": "Gold", "cf_passport": "P-778899"})
    custom_fields.set_values(admin, "contacts", silver, {"cf_tier": "Silver"})
    a = signed_in(ctx, admin)
    page = html(a.get("/agent/contacts?cf_tier=Gold&col=tier&col=passport"))
    assert "Gia Gold" in page and "Sol Silver" not in page
    assert "<th>Tier</th>" in page and "<td>Gold</td>" in page and "<td>••••</td>" in page
    assert "P-778899" not in page and 'name="cf_passport"' not in page  # never filtered on
    assert "cf_tier=Gold" in page  # the export link keeps the filter
    rows = csv_rows(a.get("/agent/export/contacts.csv?cf_tier=Gold&header=keys"))
    assert [r["name"] for r in rows] == ["Gia Gold"] and rows[0]["cf_tier"] == "Gold"
    assert a.get("/agent/export/contacts.csv?cf_passport=P-778899").status_code == 400
    assert a.get("/agent/export/agents.csv?cf_tier=Gold").status_code == 400
