"""The audit core: every write goes through desk.audit, in the same
transaction, with personal values sealed, in a verifiable hash chain."""
from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk.cli import cli
from desk.db import db
from desk.errors import UnauditedWrite
from desk.models import ALL_MODELS
from desk.models import AgentDepartment
from desk.models import ApiToken
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import AuditHead
from desk.models import Comment
from desk.models import ContactFieldValue
from desk.models import Breach
from desk.models import CustomField
from desk.models import NoticeConsent
from desk.models import PrivacyNotice
from desk.models import DataSubjectRequest
from desk.models import Department
from desk.models import EmailChangeRequest
from desk.models import ErasureRequest
from desk.models import Role
from desk.models import Setting
from desk.models import StoredSecret
from desk.models import Ticket
from desk.models import TicketFieldValue
from desk.models import User
from desk.models import utcnow
from tests import factories

# Tables written by desk.audit itself, and operational tables whose writes are
# consequences of audited actions (declared with write_guard = False).
WRITTEN_BY_AUDIT = {AuditEntry, AuditHead}


def _specs():
    """For every audited model: how to create it and what to change."""
    def user():
        return dict(kind="end_user", name="Zoë Example", email="zoe@example.com",
                    password_hash="x", session_token="t"), dict(name="Zoë Renamed", phone="+44 20 7946 0000")

    def ticket():
        requester = factories.end_user()
        return dict(requester=requester, subject="Refund for 张伟"), dict(priority="high")

    def comment():
        t = factories.ticket(factories.end_user())
        return dict(ticket=t, author=t.requester, body="Still broken"), dict(is_public=False)

    def attachment():
        t = factories.ticket(factories.end_user())
        return dict(ticket=t, uploader=t.requester, filename="scan.pdf", stored_name="abc123",
                    sha256="0" * 64, size=10), dict(filename="scan-2.pdf")

    def custom_field(module="tickets"):
        return audit.create(audit.SYSTEM, CustomField, module=module, key=f"k{module}",
                            label="Order number", type="text")

    def ticket_value():
        t = factories.ticket(factories.end_user())
        return dict(ticket=t, field=custom_field().id, value="A-17"), dict(value="A-18")

    def contact_value():
        return (dict(user=factories.end_user(), field=custom_field("contacts").id, value="Gold"),
                dict(value="Silver"))

    def agent_department():
        return dict(agent=factories.agent(), department=factories.department()), None

    return {
        Department: lambda: (dict(name="Billing"), dict(is_private=True)),
        Role: lambda: (dict(name="Supervisor", permissions="[]"), dict(ticket_scope="all")),
        User: user,
        AgentDepartment: agent_department,
        Ticket: ticket,
        Comment: comment,
        Attachment: attachment,
        Setting: lambda: (dict(key="retention_days", value="60"), dict(value="30")),
        EmailChangeRequest: lambda: (dict(user=factories.end_user(), new_email="new@example.com"),
                                     dict(status="rejected", reason="typo")),
        ErasureRequest: lambda: (dict(user=factories.end_user(), mode="erase_with_tickets"),
                                 dict(status="running", step=1)),
        CustomField: lambda: (dict(module="contacts", key="vip", label="VIP", type="checkbox"),
                              dict(label="Very important")),
        TicketFieldValue: ticket_value,
        ContactFieldValue: contact_value,
        StoredSecret: lambda: (dict(name="smtp_password", sealed="k1:abc", key_id="k1"),
                               dict(sealed="k1:def")),
        ApiToken: lambda: (dict(user=factories.end_user(), name="CI", prefix="desk_0badc0de",
                                token_hash="f" * 64, key_id="k1", expires_at="2030-01-01 00:00:00"),
                           dict(revoked_at=utcnow(), revoke_reason="revoked")),
        PrivacyNotice: lambda: (dict(version=7, text="We keep what you send us."), dict(text="Fixed a typo.")),
        NoticeConsent: lambda: (dict(user=factories.end_user(), version=1, kind="acknowledged"), dict(version=2)),
        Breach: lambda: (dict(discovered_at="2026-05-04T10:00:00", description="Laptop with an export stolen"),
                         dict(authority_notified_at=utcnow(), measures="Remote wipe")),
        DataSubjectRequest: lambda: (dict(user=factories.end_user(), kind="access", channel="email",
                                          identity_note="passport seen"),
                                     dict(extended_days=30, extension_reason="many systems")),
    }


def _entries_for(model, record_id):
    return list(AuditEntry.select()
                .where(AuditEntry.record_type == model.__name__,
                       AuditEntry.record_id == str(record_id))
                .order_by(AuditEntry.seq))


def test_every_guarded_model_has_an_audit_spec():
    guarded = {m for m in ALL_MODELS if m.write_guard} - WRITTEN_BY_AUDIT
    assert guarded == set(_specs()), "a new model needs an entry in _specs()"


@pytest.mark.parametrize("model", list(_specs()), ids=lambda m: m.__name__)
def test_create_update_delete_leave_exactly_their_entries(ctx, model):
    create_values, update_values = _specs()[model]()
    rows_before = model.select().count()
    actor = audit.Actor(None, "203.0.113.9")

    instance = audit.create(actor, model, **create_values)
    record_id = audit._record_id(instance)
    if update_values:
        changes = audit.update(actor, instance, **update_values)
        assert set(changes) >= set(update_values)
        assert audit.update(actor, instance, **update_values) == {}  # no change, no entry
    audit.delete(actor, instance)

    entries = _entries_for(model, record_id)
    expected = ["create"] + (["update"] if update_values else []) + ["delete"]
    assert [e.action for e in entries] == expected
    # The newest entries of the whole log are exactly these: nothing else was written.
    assert [e.action for e in AuditEntry.select().order_by(AuditEntry.seq.desc())
            .limit(len(expected))][::-1] == expected
    created = audit.read_changes(entries[0])
    for field, value in create_values.items():
        if field in model.secret_fields:
            assert created[field] == [None, audit.SECRET]
        elif field in model._meta.fields and not isinstance(value, (User, Ticket, Department)):
            assert created[field][1] == value
    assert model.select().count() == rows_before


def test_personal_values_are_sealed_under_the_subjects_key(ctx):
    user = factories.end_user(name="Quentin Distinct", email="quentin@example.com")
    audit.update(audit.SYSTEM, user, phone="+1 555 0100")
    raw = " ".join(e.changes + e.ip for e in AuditEntry.select())
    for value in ("Quentin Distinct", "quentin@example.com", "+1 555 0100"):
        assert value not in raw
    entry = _entries_for(User, user.id)[-1]
    assert audit.read_changes(entry)["phone"] == ["", "+1 555 0100"]


def test_password_hash_never_reaches_the_audit_log(ctx):
    user = factories.end_user()
    raw = " ".join(e.changes for e in AuditEntry.select())
    assert user.password_hash not in raw
    assert audit.read_changes(_entries_for(User, user.id)[0])["password_hash"] == [None, audit.SECRET]


def test_destroyed_subject_key_reads_as_erased_and_chain_stays_intact(ctx):
    user = factories.end_user(name="Erin Erasable")
    crypto.destroy_subject_key(user.id)
    created = audit.read_changes(_entries_for(User, user.id)[0])
    assert created["name"] == [None, crypto.ERASED]
    assert created["kind"] == [None, "end_user"]  # not personal: still readable
    assert audit.verify()[0]


@pytest.mark.parametrize("model", sorted({m for m in ALL_MODELS if m.write_guard}, key=lambda m: m.__name__),
                         ids=lambda m: m.__name__)
def test_writes_outside_the_audit_module_are_refused(ctx, model):
    with pytest.raises(UnauditedWrite):
        model.insert({}).execute()
    with pytest.raises(UnauditedWrite):
        model.update({}).execute()
    with pytest.raises(UnauditedWrite):
        model.delete().execute()
    with pytest.raises(UnauditedWrite):
        model().save()


def test_only_the_audit_module_opens_the_write_guard():
    root = pathlib.Path(__file__).resolve().parent.parent / "desk"
    users = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
             if "_audited_write" in p.read_text()]
    assert sorted(users) == ["audit.py", "models/base.py"]


def test_change_and_entry_share_one_transaction(ctx):
    count = AuditEntry.select().count()
    with pytest.raises(RuntimeError):
        with audit.transaction():
            audit.create(audit.SYSTEM, Department, name="Ghost")
            raise RuntimeError("crash after the write")
    assert Department.get_or_none(Department.name == "Ghost") is None
    assert AuditEntry.select().count() == count
    assert audit.verify()[0]


def test_entries_record_actor_time_and_sealed_address(ctx):
    admin = factories.admin()
    dept = audit.create(audit.Actor.of(admin, "198.51.100.7"), Department, name="Sales")
    entry = _entries_for(Department, dept.id)[0]
    assert entry.actor_id == admin.id
    assert entry.created_at is not None
    assert "198.51.100.7" not in entry.ip and crypto.open_sealed(entry.ip) == "198.51.100.7"


def _run(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def _populate():
    user = factories.end_user()
    for n in range(5):
        audit.update(audit.SYSTEM, user, phone=f"+1 555 010{n}")


def test_audit_verify_reports_ok_on_an_untouched_log(ctx):
    _populate()
    result = _run(ctx, "audit-verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK:")


def test_audit_verify_names_an_edited_entry(ctx):
    _populate()
    victim = AuditEntry.select().order_by(AuditEntry.seq).offset(3).get()
    db.execute_sql("UPDATE audit_entry SET action = 'tampered' WHERE id = %s"
                   if db.obj.param == "%s" else
                   "UPDATE audit_entry SET action = 'tampered' WHERE id = ?", (victim.id,))
    result = _run(ctx, "audit-verify")
    assert result.exit_code == 1
    assert f"entry #{victim.seq} " in result.output and "altered" in result.output


def test_audit_verify_names_a_deleted_entry(ctx):
    _populate()
    victim = AuditEntry.select().order_by(AuditEntry.seq).offset(2).get()
    db.execute_sql(f"DELETE FROM audit_entry WHERE id = {int(victim.id)}")
    result = _run(ctx, "audit-verify")
    assert result.exit_code == 1
    assert f"entry #{victim.seq} is missing" in result.output


def test_audit_verify_notices_the_newest_entry_removed(ctx):
    _populate()
    last = AuditEntry.select().order_by(AuditEntry.seq.desc()).get()
    db.execute_sql(f"DELETE FROM audit_entry WHERE id = {int(last.id)}")
    result = _run(ctx, "audit-verify")
    assert result.exit_code == 1
    assert "removed" in result.output


def test_audit_verify_notices_a_rewritten_changes_value(ctx):
    _populate()
    victim = AuditEntry.select().order_by(AuditEntry.seq.desc()).get()
    forged = json.dumps({"phone": ["x", "y"]})
    AuditEntry._meta.database.execute_sql(
        f"UPDATE audit_entry SET changes = '{forged}' WHERE id = {int(victim.id)}")
    ok, message = audit.verify()
    assert not ok and f"#{victim.seq}" in message
