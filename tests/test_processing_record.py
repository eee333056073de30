"""The record of processing activities (Art. 30): generated from the models
(a model that gains a personal field the record does not name fails here),
custom fields, retention, processors and region; the controller's details
reach the public privacy page."""
from __future__ import annotations

import csv
import io
import json

import pytest
from peewee import CharField

from desk import audit
from desk.models import ALL_MODELS
from desk.models import BaseModel
from desk.models import Role
from desk.services import custom_fields
from desk.services import mail_settings
from desk.services import processing_record
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in
from tests.conftest import MANY_SIGN_INS


APP_CONFIG = MANY_SIGN_INS


def html(resp) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return resp.get_data(as_text=True)


def test_the_record_names_every_personal_field_of_every_model():
    missing = processing_record.personal_fields() - processing_record.named_fields()
    assert not missing, f"add these to an activity in desk/services/processing_record.py: {sorted(missing)}"
    fields = {f"{m.__name__}.{name}" for m in ALL_MODELS for name in m._meta.fields}
    assert processing_record.named_fields() <= fields  # no stale names either


def test_a_new_personal_field_is_noticed():
    class Loyalty(BaseModel):
        personal_fields = ("nickname",)
        nickname = CharField()
        home_phone = CharField()
        tier = CharField()

    found = processing_record.personal_fields(ALL_MODELS + [Loyalty])
    assert {"Loyalty.nickname", "Loyalty.home_phone"} <= found - processing_record.named_fields()
    assert "Loyalty.tier" not in found


def test_the_page_is_generated_from_what_desk_holds(ctx):
    admin = factories.admin()
    custom_fields.create(admin, "contacts", {"key": "passport", "label": "Passport number",
                                             "type": "text", "encrypted": True})
    mail_settings.save(admin, ctx.config, "smtp.mailer.example", 587, "desk", "pw", True,
                       "help@desk.example")
    page = html(signed_in(ctx, admin).get("/agent/privacy/processing"))
    assert "Passport number" in page and "encrypted" in page
    assert "Mail server smtp.mailer.example" in page
    assert "60 days in the recycle bin" in page
    assert "User.email" in page and "BrowserSession.ip" in page


def test_controller_details_reach_the_public_privacy_page_and_the_csv(ctx):
    admin = factories.admin()
    b = signed_in(ctx, admin)
    public = html(b.get("/privacy"))
    assert "Answering customers" in public and "The controller is" not in public
    # the addresses and browser names kept for security are named too (Art. 13)
    assert "network address (IP) and the browser name of each browser" in public
    resp = post_form(b, "/agent/privacy/processing", {
        "controller_name": "Acme Widgets Ltd", "controller_contact": "1 Main St, privacy@acme.example",
        "dpo_name": "Dana Protector", "dpo_contact": "dpo@acme.example",
        "purposes": "Customer support\nWarranty claims", "processors": "Hetzner Online GmbH (hosting)"})
    assert resp.status_code == 302
    public = html(browser_get(ctx, "/privacy"))
    for text in ("The controller is Acme Widgets Ltd.", "privacy@acme.example", "Dana Protector",
                 "Warranty claims", "Hetzner Online GmbH (hosting)"):
        assert text in public
    assert "Answering customers" not in public  # the controller's own purposes replace desk's list
    rows = list(csv.reader(io.StringIO(b.get("/agent/privacy/processing.csv").get_data().decode("utf-8-sig"))))
    assert ["controller", "Controller", "Acme Widgets Ltd 1 Main St, privacy@acme.example"] in rows
    assert any(r[0] == "activity" and "User.email" in r[2] for r in rows)
    too_long = post_form(b, "/agent/privacy/processing", {"controller_name": "x" * 6000})
    assert too_long.status_code == 400


def browser_get(app, path):
    from tests.conftest import browser
    return browser(app).get(path)


def test_permissions(ctx):
    viewer = audit.create(audit.SYSTEM, Role, name="Viewer", permissions=json.dumps(["privacy:view"]))
    b = signed_in(ctx, factories.agent(role=viewer.name))
    assert "Controller details, purposes and processors" not in html(b.get("/agent/privacy/processing"))
    assert post_form(b, "/agent/privacy/processing", {"controller_name": "x"},
                     form_page="/agent/privacy/processing").status_code == 403
    assert b.get("/agent/privacy/processing.csv").status_code == 403
    assert signed_in(ctx, factories.agent()).get("/agent/privacy/processing").status_code == 403
