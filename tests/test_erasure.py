"""The right to be forgotten (issue 5): the guards, the preview and the typed
confirmation on the erase page, a person's own request landing in the admin's
queue, the two modes, resuming a crashed erasure, and the proof: after an
erasure, neither the raw bytes of the database, the files on disk and the log
output, nor anything the audit module shows, contain the person's name, email
address or phone number, on SQLite and on PostgreSQL."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import logging
import random
import re
import subprocess
import zipfile
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.db import db
from desk.db import is_sqlite
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import EmailChangeRequest
from desk.models import ErasureRequest
from desk.models import MailMessage
from desk.models import Role
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.models.privacy import ANONYMIZE
from desk.models.privacy import DONE
from desk.models.privacy import REQUESTED
from desk.models.privacy import RUNNING
from desk.services import email_change
from desk.services import attachments as files_service
from desk.services import erasure
from desk.services import mail
from desk.services.identifiers import EMAIL_REMOVED
from desk.services.identifiers import Identifiers
from desk.services.identifiers import NAME_REMOVED
from desk.services.identifiers import PHONE_REMOVED
from desk.services import profile
from desk.services import purge
from desk.services import tickets as ticket_service
from desk.services.attachments import Upload
from tests import factories
from tests.conftest import FreshClient
from tests.conftest import csrf_token
from tests.conftest import login
from tests.conftest import post_form
from tests.conftest import browser
from tests.conftest import signed_in

PASSWORD = factories.PASSWORD
NAME = "Xavierine Qwertyson"
EMAIL = "xavierine.q@example.org"
PHONE = "+44 7700 900123"
VALUES = (NAME, EMAIL, PHONE)
# The surname alone too: a stricter needle that no placeholder or other data contains.
NEEDLES = VALUES + ("Qwertyson",)


# --- helpers ------------------------------------------------------------------



def text(resp) -> str:
    return resp.get_data(as_text=True)


def files_field(files) -> list:
    return [(io.BytesIO(content), name) for name, content in files]


def submit(b, subject: str, description: str, files=()) -> int:
    resp = post_form(b, "/tickets/new", {"subject": subject, "description": description,
                                         "attachments": files_field(files)},
                     content_type="multipart/form-data")
    assert resp.status_code == 302, text(resp)[:500]
    return int(re.search(r"/my/tickets/(\d+)$", resp.headers["Location"]).group(1))


def reply_as_requester(b, ticket_id: int, body: str, files=()):
    resp = post_form(b, f"/my/tickets/{ticket_id}", {"body": body, "attachments": files_field(files)},
                     content_type="multipart/form-data")
    assert resp.status_code == 302, text(resp)[:500]


def my_info(b, **values):
    data = {"name": NAME, "phone": "", "mobile": "", "timezone": "UTC", "language": "en"}
    data.update(values)
    resp = post_form(b, "/my/info", data)
    assert resp.status_code == 302, text(resp)[:500]


def erase(b, user_id: int, confirmation: str | None = None, mode: str = ANONYMIZE, token=None):
    data = {"mode": mode,
            "confirmation": f"Deleted user {user_id}" if confirmation is None else confirmation}
    token = token or csrf_token(b, f"/agent/people/{user_id}/erase")
    return b.post(f"/agent/people/{user_id}/erase", data={**data, "csrf_token": token})


def can_sign_in(app, address: str, password: str = PASSWORD) -> bool:
    resp = login(browser(app), address, password)
    assert resp.status_code in (302, 400), resp.status_code
    return resp.status_code == 302


def is_signed_out(b) -> bool:
    resp = b.get("/my/info")
    return resp.status_code == 302 and "/login" in resp.headers["Location"]


def row(model, record_id) -> dict:
    return dict(model.get_by_id(record_id).__data__)


def stored_path(app, stored_name: str) -> Path:
    return Path(app.config["DATA_DIR"]) / "attachments" / stored_name[:2] / stored_name


def found(data: bytes | str, needles=NEEDLES) -> list[str]:
    """The needles in ``data``, compared as UTF-8 bytes and case-insensitively."""
    low = (data.encode("utf-8") if isinstance(data, str) else data).lower()
    return [n for n in needles if n.lower().encode("utf-8") in low]


def context_of(data: bytes, needle: str, width: int = 80) -> list[bytes]:
    low, n = data.lower(), needle.lower().encode()
    out, start = [], 0
    while (i := low.find(n, start)) != -1 and len(out) < 3:
        out.append(data[max(0, i - width): i + len(n) + width])
        start = i + 1
    return out


def decoded_mail(data: bytes) -> str:
    """An .eml file's headers and decoded text parts (bodies may be QP or base64)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = [f"{k}: {v}" for k, v in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


def scan_folder(root: Path) -> dict[str, list[str]]:
    """Every file under ``root`` whose bytes (or decoded mail) hold a needle."""
    hits = {}
    if not root.exists():
        return hits
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        names = found(data)
        if path.suffix == ".eml":
            names += [n for n in found(decoded_mail(data)) if n not in names]
        if names:
            hits[str(path.relative_to(root))] = names
    return hits


def database_bytes(app, database_url: str) -> dict[str, bytes]:
    """SQLite: the database file and any -wal/-shm files, read with the
    connection closed. PostgreSQL: a plain-format data-only pg_dump."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if not db.is_closed():
            db.close()
        try:
            return {p.name: p.read_bytes() for p in
                    (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal"))
                    if p.exists()}
        finally:
            db.connect(reuse_if_open=True)
    dump = subprocess.run(["pg_dump", "--data-only", "--format=plain", database_url],
                          capture_output=True, check=True, timeout=120)
    return {"pg_dump --data-only": dump.stdout}


def scan_database(app, database_url: str) -> dict[str, dict[str, list[bytes]]]:
    hits = {}
    for name, data in database_bytes(app, database_url).items():
        names = found(data)
        if names:
            hits[name] = {n: context_of(data, n) for n in names}
    return hits


def audit_view_hits() -> list[tuple]:
    """Everything the audit module shows an administrator (every entry, every
    value opened wherever a key still exists) that names the person."""
    hits = []
    for entry in AuditEntry.select().order_by(AuditEntry.seq):
        shown = str(audit.read_changes(entry))
        ip = crypto.open_sealed(entry.ip) if crypto.is_sealed(entry.ip) else entry.ip
        names = found(shown) + found(str(ip or ""))
        names += found(" ".join(str(v) for v in (entry.action, entry.record_type, entry.record_id)))
        if names:
            hits.append((entry.seq, entry.action, entry.record_type, entry.record_id, names, shown))
    return hits


def snapshot() -> dict:
    """The state an erasure would change, to show that nothing changed."""
    def rows(model):
        return [dict(r.__data__) for r in model.select().order_by(model._meta.primary_key)]
    return {"users": rows(User), "tickets": rows(Ticket), "comments": rows(Comment),
            "attachments": rows(Attachment), "mail": rows(MailMessage),
            "email_changes": rows(EmailChangeRequest), "erasures": rows(ErasureRequest),
            "audit": AuditEntry.select().count()}


def privacy_officer():
    """An agent who may manage settings (and so erase people) without being an administrator."""
    audit.create(audit.SYSTEM, Role, name="Privacy officer", ticket_scope="all",
                 permissions=json.dumps(["settings:manage", "contacts:view", "agents:view"]))
    return factories.agent(name="Pia Officer", email="pia@example.com", role="Privacy officer")


def start_running(admin, person) -> ErasureRequest:
    """An approved erasure persisted as RUNNING at step 0 (as start() leaves it)."""
    actor = Actor.of(admin)
    with audit.transaction():
        req = audit.create(actor, ErasureRequest, user=person, mode=ANONYMIZE, requested_by=admin.id)
        audit.update(actor, req, status=RUNNING, approved_by=admin.id, started_at=utcnow())
    return req


# --- fixtures -----------------------------------------------------------------

@pytest.fixture
def admin(ctx):
    return factories.admin(name="Ada Admin", email="ada@example.com")


@pytest.fixture
def other(ctx):
    return factories.end_user(name="Oscar Other", email="oscar@example.com")


@pytest.fixture
def person(ctx):
    user = factories.end_user(name=NAME, email=EMAIL)
    profile.update_my_info(user, {"phone": PHONE})
    return user


@pytest.fixture
def admin_browser(ctx, admin):
    return signed_in(ctx, admin)


# --- guards -------------------------------------------------------------------

def test_nobody_erases_themself_nor_the_last_administrator(ctx, admin, admin_browser):
    second = factories.admin(name="Bea Admin", email="bea@example.com")
    officer = privacy_officer()
    officer_browser = signed_in(ctx, officer)

    # Oneself: refused, nothing changes.
    before = snapshot()
    resp = erase(admin_browser, admin.id)
    assert resp.status_code == 403 and "You cannot erase yourself." in text(resp)
    assert snapshot() == before

    # An administrator while another one remains: allowed.
    resp = erase(admin_browser, second.id)
    assert resp.status_code == 302, text(resp)[:500]
    assert row(User, second.id)["anonymized_at"] is not None

    # Now Ada is the last administrator: nobody may erase her, not even someone
    # allowed to erase people.
    before = snapshot()
    resp = erase(officer_browser, admin.id)
    assert resp.status_code == 409 and "The last administrator cannot be erased." in text(resp)
    assert snapshot() == before
    assert row(User, admin.id)["name"] == "Ada Admin" and can_sign_in(ctx, "ada@example.com")
    # ... and she may not erase herself either.
    assert erase(admin_browser, admin.id).status_code == 403
    # An agent without the settings permission does not even see the page.
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    mia_browser = signed_in(ctx, mia)
    assert mia_browser.get(f"/agent/people/{admin.id}/erase").status_code == 403
    assert erase(officer_browser, mia.id, token=None).status_code == 302
    # An erased person is no longer there to erase.
    assert admin_browser.get(f"/agent/people/{second.id}/erase").status_code == 404
    assert audit.verify()[0]


def test_a_second_request_while_one_is_open_is_refused(ctx, admin, admin_browser, person):
    b = signed_in(ctx, person)
    token = csrf_token(b, "/my/info")
    resp = b.post("/my/erasure-request", data={"csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/my/info#erase")
    assert "Your request to erase your data was sent to an administrator." in text(b.get("/my/info"))
    resp = b.post("/my/erasure-request", data={"csrf_token": token})
    assert resp.status_code == 302
    assert "You already asked; an administrator will handle it." in text(b.get("/my/info"))
    assert ErasureRequest.select().count() == 1
    req = ErasureRequest.get()
    assert (req.user_id, req.status, req.requested_by) == (person.id, REQUESTED, person.id)
    # Without a CSRF token nothing is asked.
    assert b.post("/my/erasure-request").status_code == 400
    assert ErasureRequest.select().count() == 1

    # An erasure that is already running (say a crash stopped it) is not started twice.
    other_person = factories.end_user(name="Rita Running", email="rita@example.com")
    running = start_running(admin, other_person)
    before = snapshot()
    resp = erase(admin_browser, other_person.id)
    assert resp.status_code == 409 and "already running" in text(resp)
    assert snapshot() == before
    assert ErasureRequest.get_by_id(running.id).step == 0


def test_the_preview_shows_what_is_affected(ctx, admin, admin_browser, person, other):
    b = signed_in(ctx, person)
    t1 = submit(b, "Printer on fire", "It smokes.", files=[("a.txt", b"a")])
    submit(b, "Second question", "Still smoking.")
    reply_as_requester(b, t1, "Any news?", files=[("b.txt", b"b")])
    reply_as_requester(b, t1, "Hello?")
    theirs = ticket_service.submit(other, f"About {NAME}", "She called.")
    ticket_service.reply(other, theirs.id, f"Her number is {PHONE}.")
    audit_entries = AuditEntry.select().where((AuditEntry.subject_id == person.id)
                                              | (AuditEntry.actor_id == person.id)).count()
    assert audit_entries > 8

    resp = admin_browser.get(f"/agent/people/{person.id}/erase")
    html = text(resp)
    assert resp.status_code == 200
    assert f"{NAME} will be replaced everywhere by “Deleted user {person.id}”" in html
    for label, count in (("Tickets they opened", 2), ("Comments they wrote", 2),
                         ("Files they sent (removed)", 2),
                         ("Audit entries about or by them", audit_entries),
                         ("Tickets and comments that mention them (scrubbed)", 2)):
        assert re.search(rf"<th>{re.escape(label)}</th><td>{count}</td>", html), (label, count)
    assert f"Type Deleted user {person.id}" in html
    assert "They asked for this themselves." not in html


def test_a_wrong_confirmation_changes_nothing(ctx, admin, admin_browser, person):
    b = signed_in(ctx, person)
    ticket_id = submit(b, f"{NAME} needs help", "Please.", files=[("a.txt", NAME.encode())])
    stored = Attachment.get(Attachment.ticket == ticket_id).stored_name
    before = snapshot()
    token = csrf_token(admin_browser, f"/agent/people/{person.id}/erase")
    for confirmation in (f"Deleted user {person.id + 1}", f"deleted user {person.id}",
                         f"Deleted user {person.id}0", NAME, "", "   "):
        resp = erase(admin_browser, person.id, confirmation, token=token)
        assert resp.status_code == 400, confirmation
        assert f"Deleted user {person.id}" in text(resp)  # the page says what to type
    for mode in ("", "delete_everything"):  # a mode that is not offered
        assert erase(admin_browser, person.id, mode=mode, token=token).status_code == 400
    # A missing CSRF token.
    resp = admin_browser.post(f"/agent/people/{person.id}/erase",
                              data={"mode": ANONYMIZE, "confirmation": f"Deleted user {person.id}"})
    assert resp.status_code == 400
    assert snapshot() == before
    assert stored_path(ctx, stored).exists()
    assert not is_signed_out(b) and can_sign_in(ctx, EMAIL)


# --- the person's own request ---------------------------------------------------

def test_a_persons_request_waits_for_an_administrator(ctx, admin, admin_browser, person):
    b = signed_in(ctx, person)
    assert 'action="/my/erasure-request"' in text(b.get("/my/info"))
    resp = post_form(b, "/my/erasure-request", {}, form_page="/my/info")
    assert resp.status_code == 302
    req = ErasureRequest.get(ErasureRequest.user == person.id)
    assert req.status == REQUESTED

    # It is in the admin's queue, with a way to the erase page.
    html = text(admin_browser.get("/agent/settings/erasure-requests"))
    assert NAME in html and f'href="/agent/people/{person.id}/erase"' in html
    assert admin_browser.get(f"/agent/people/{person.id}/erase").status_code == 200
    assert "They asked for this themselves." in text(admin_browser.get(f"/agent/people/{person.id}/erase"))
    # Not for agents who may not manage settings, nor for end users.
    mia = factories.agent(name="Mia Agent", email="mia@example.com")
    assert signed_in(ctx, mia).get("/agent/settings/erasure-requests").status_code == 403
    assert b.get("/agent/settings/erasure-requests").status_code == 403

    # Nothing happens on its own: not by the jobs that resume erasures or purge.
    before = snapshot()
    assert erasure.resume_all() == 0
    purge.purge_expired(ctx.config)
    assert snapshot() == before
    assert row(User, person.id)["name"] == NAME and row(User, person.id)["deleted_at"] is None
    assert not is_signed_out(b) and can_sign_in(ctx, EMAIL)

    # The administrator confirms: the same request is carried out.
    resp = erase(admin_browser, person.id)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/agent/settings/erasure-requests")
    assert ErasureRequest.select().count() == 1
    req = ErasureRequest.get_by_id(req.id)
    assert (req.status, req.approved_by, req.requested_by, req.step) == (
        DONE, admin.id, person.id, erasure.COMPACTED)
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    html = text(admin_browser.get("/agent/settings/erasure-requests"))
    assert "No requests waiting." in html and NAME not in html
    assert is_signed_out(b)


# --- erase with tickets -----------------------------------------------------------

def test_erase_with_tickets_sends_them_through_the_recycle_bin(ctx, admin, admin_browser, person,
                                                               other, monkeypatch):
    b = signed_in(ctx, person)
    mine = [submit(b, f"{NAME}'s printer", "Smoke.", files=[("p.txt", b"printer")]),
            submit(b, "Second one", f"Call {PHONE}.")]
    agent_note = ticket_service.reply(admin, mine[0], "On it.",
                                      uploads=[Upload("fix.txt", io.BytesIO(b"steps"))])
    admin_file = Attachment.get(Attachment.comment == agent_note.id).stored_name
    theirs = ticket_service.submit(other, "Unrelated", "Mine.")
    my_comment_elsewhere = ticket_service.reply(admin, theirs.id, f"Copying {NAME}.")

    resp = erase(admin_browser, person.id, mode="erase_with_tickets")
    assert resp.status_code == 302, text(resp)[:500]
    for ticket_id in mine:
        t = row(Ticket, ticket_id)
        assert t["deleted_at"] is not None and t["deleted_by"] == admin.id
        assert t["requester"] == person.id
        assert NAME not in t["subject"] and PHONE not in t["description"]
    assert row(Ticket, theirs.id)["deleted_at"] is None
    assert row(Comment, my_comment_elsewhere.id)["body"] == "Copying [name removed]."
    assert row(User, person.id)["anonymized_at"] is not None
    html = text(admin_browser.get("/agent/recycle-bin?module=tickets"))
    assert all(f"#{i}" in html for i in mine) or all(f"/{i}/restore" in html for i in mine)
    assert stored_path(ctx, admin_file).exists()  # until the purge

    # Within the retention period the purge leaves them.
    report = purge.purge_expired(ctx.config)
    assert report.tickets == 0 and Ticket.select().where(Ticket.id.in_(mine)).count() == 2
    # Past it they go for good, with the comments and files on them.
    later = utcnow() + dt.timedelta(days=ctx.config["RETENTION_DAYS"] + 1)
    monkeypatch.setattr(purge, "utcnow", lambda: later)
    report = purge.purge_expired(ctx.config)
    assert report.tickets == 2
    assert Ticket.select().where(Ticket.id.in_(mine)).count() == 0
    assert Comment.select().where(Comment.ticket.in_(mine)).count() == 0
    assert Attachment.select().where(Attachment.ticket.in_(mine)).count() == 0
    assert not stored_path(ctx, admin_file).exists()
    for ticket_id in mine:
        assert AuditEntry.select().where(AuditEntry.action == "purge", AuditEntry.record_type == "Ticket",
                                         AuditEntry.record_id == str(ticket_id)).count() == 1
    assert row(Ticket, theirs.id)["deleted_at"] is None
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    assert audit.verify()[0]


# --- resuming ---------------------------------------------------------------------

def test_a_crashed_erasure_resumes_and_finishes_once(ctx, admin, person, other):
    b = signed_in(ctx, person)
    ticket_id = submit(b, f"{NAME} again", f"Mail {EMAIL}", files=[("x.txt", NAME.encode())])
    stored = Attachment.get(Attachment.ticket == ticket_id).stored_name
    theirs = ticket_service.submit(other, "Neighbour", f"{NAME} is at {PHONE}.")
    mention = ticket_service.reply(other, theirs.id, f"Also {EMAIL}.")

    req = start_running(admin, person)
    actor = Actor(admin.id, "")
    # The first two steps complete and are recorded...
    for i in range(2):
        erasure.STEPS[i](actor, req, User.get_by_id(person.id))
        audit.update(actor, req, step=i + 1)
    assert row(User, person.id)["deleted_at"] is not None
    assert row(User, person.id)["name"] == NAME  # not yet anonymized
    assert not stored_path(ctx, stored).exists()
    assert Attachment.select().where(Attachment.uploader == person.id).count() == 0
    # ... the third one runs but the process dies before it is recorded.
    erasure.STEPS[2](actor, req, User.get_by_id(person.id))
    assert ErasureRequest.get_by_id(req.id).step == 2 and ErasureRequest.get_by_id(req.id).status == RUNNING

    assert erasure.resume_all() == 1
    req = ErasureRequest.get_by_id(req.id)
    assert req.status == DONE and req.step == erasure.COMPACTED and req.finished_at is not None
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    assert row(Ticket, theirs.id)["description"] == f"{NAME_REMOVED} is at {PHONE_REMOVED}."
    assert row(Comment, mention.id)["body"] == f"Also {EMAIL_REMOVED}."
    # The repeated step did not scrub twice; the erasure is recorded once.
    scrubs = [(e.record_type, e.record_id) for e in
              AuditEntry.select().where(AuditEntry.action == "scrub")]
    assert len(scrubs) == len(set(scrubs)) and ("Comment", str(mention.id)) in scrubs
    assert AuditEntry.select().where(AuditEntry.action == "erase").count() == 1

    # Running it again changes nothing.
    before = snapshot()
    erasure.run(req.id)
    assert erasure.resume_all() == 0
    assert snapshot() == before
    ok, summary = audit.verify()
    assert ok, summary


def test_the_rebuild_follows_as_its_own_recorded_step_and_resumes(ctx, admin, person, other):
    """The erasure is done when its changes are committed; the rebuild of the
    database files follows as a step of its own, recorded per request ("compact"),
    once for every request waiting (the purge anonymizes several people and
    rebuilds once), and a rebuild a crash left waiting is done by resume_all."""
    first = erasure.run(start_running(admin, person).id, rebuild=False)
    second = erasure.run(start_running(admin, other).id, rebuild=False)
    for req in (first, second):
        assert (req.status, req.step) == (DONE, len(erasure.STEPS)) and req.finished_at is not None
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    compacts = AuditEntry.select().where(AuditEntry.action == "compact")
    assert compacts.count() == 0
    assert erasure.resume_all() == 2
    assert [ErasureRequest.get_by_id(r.id).step for r in (first, second)] == [erasure.COMPACTED] * 2
    assert sorted((e.record_type, e.record_id) for e in compacts) == [
        ("User", str(person.id)), ("User", str(other.id))]
    assert all(json.loads(e.changes)["rebuilt"] is True for e in compacts)
    if is_sqlite():
        assert db.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    # Nothing waits any more: running it again rebuilds and records nothing.
    assert erasure.resume_all() == 0 and erasure.compact_pending() == 0
    assert compacts.count() == 2
    ok, summary = audit.verify()
    assert ok, summary


# --- the proof ----------------------------------------------------------------------

@dataclass
class Forgotten:
    """A person with a full history, erased by an administrator's confirmation."""

    app: object
    database_url: str
    admin: User
    person_id: int
    other_id: int
    my_tickets: list[int]
    their_ticket: int
    mentions: list[int]  # comments by others that named the person
    stored_names: list[str]
    browsers: list[FreshClient]
    log_records: list = field(default_factory=list)

    @property
    def placeholder(self) -> str:
        return f"Deleted user {self.person_id}"


def _give_a_history(app, admin, person, other) -> dict:
    b = signed_in(app, person)
    remembered = signed_in(app, person, remember="y")
    # Profile edits: the audit log holds old and new values.
    my_info(b, name=f"{NAME} Jr", phone="+44 7700 900999", mobile=PHONE, timezone="Europe/London")
    my_info(b, name=NAME, phone=PHONE, mobile="", timezone="Europe/London")
    assert (person := User.get_by_id(person.id)).phone == PHONE and person.name == NAME
    # Tickets, comments and files naming them.
    t1 = submit(b, f"{NAME}: printer on fire", f"Call {NAME} on {PHONE} or write to {EMAIL}.",
                files=[(f"{NAME}.txt", f"Notes by {NAME}, {PHONE}, {EMAIL}\n".encode())])
    t2 = submit(b, f"Second question from {NAME}", "Still smoking.")
    mail.deliver_pending(app.config)  # welcome and acknowledgements: sent, in the outbox
    audit.update(audit.SYSTEM, Ticket.get_by_id(t1), assignee=admin)
    mentions = [ticket_service.reply(admin, t1, f"Hello {NAME}, we will call you on {PHONE}.").id,
                ticket_service.reply(admin, t1, f"{NAME} ({EMAIL}) sounded upset.", public=False).id]
    reply_as_requester(b, t1, f"Thanks! {NAME}, {PHONE}",
                       files=[("more.txt", f"More from {NAME} <{EMAIL}>".encode())])
    # Another person's ticket and comments naming them (in other letter cases too).
    theirs = ticket_service.submit(other, f"Complaint about {NAME.upper()}",
                                   f"My neighbour {NAME} ({EMAIL.upper()}, {PHONE}) keeps calling.")
    mentions.append(ticket_service.reply(other, theirs.id, f"Again: {NAME.lower()}, {EMAIL}, {PHONE}.").id)
    mail.deliver_pending(app.config)
    mentions.append(ticket_service.reply(admin, theirs.id, f"We spoke to {NAME} at {PHONE}.").id)
    # A pending email change, a data export, a failed sign-in.
    resp = post_form(b, "/my/email-change", {"new_email": "xavierine.new@example.org"},
                     form_page="/my/info")
    assert resp.status_code == 302
    resp = post_form(b, "/my/data-export", {})
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.get_data())) as archive:
        assert NAME in archive.read("profile.json").decode()
        assert any(n.startswith("attachments/") for n in archive.namelist())
    assert not can_sign_in(app, EMAIL, "not the password")
    # Sanity: the mail is both queued and sent, the request pending, the failure audited.
    statuses = {m.status for m in MailMessage.select()}
    assert statuses == {"pending", "sent"}, statuses
    assert EmailChangeRequest.get(EmailChangeRequest.user == person.id).status == "pending"
    assert AuditEntry.select().where(AuditEntry.action == "login_failed").count() == 1
    return {"browsers": [b, remembered], "my_tickets": [t1, t2], "their_ticket": theirs.id,
            "mentions": mentions,
            "stored_names": [a.stored_name for a in
                             Attachment.select().where(Attachment.uploader == person.id)]}


def forget(app, database_url, admin, admin_browser, person, other, caplog,
           control: bool = False) -> Forgotten:
    """Give the person a history, then anonymize them through the erase page,
    capturing every log record at DEBUG meanwhile. With ``control``, first show
    that the search finds the values (so finding none later means something)."""
    history = _give_a_history(app, admin, person, other)
    assert len(history["stored_names"]) == 2
    if control:
        data_dir = Path(app.config["DATA_DIR"])
        assert set(found(b"".join(database_bytes(app, database_url).values()))) >= set(VALUES)
        # Files are stored encrypted: their clear bytes (as the app reads them) name the person.
        clear = b"".join(files_service.open_file(app.config, a).read() for a in Attachment.select())
        assert set(found(clear)) >= set(VALUES)
        assert set(sum(scan_folder(data_dir / "outbox").values(), [])) >= set(VALUES)
    token = csrf_token(admin_browser, f"/agent/people/{person.id}/erase")
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        resp = erase(admin_browser, person.id, token=token)
        records = list(caplog.records)
    assert resp.status_code == 302, text(resp)[:1000]
    assert ErasureRequest.get(ErasureRequest.user == person.id).status == DONE
    return Forgotten(app=app, database_url=database_url, admin=admin, person_id=person.id,
                     other_id=other.id, log_records=records, **history)


def test_proof_nothing_on_disk_names_them(ctx, database_url, admin, admin_browser, person, other,
                                          caplog):
    """The database's raw bytes (SQLite file and its -wal/-shm, or a pg_dump), the
    attachment folder, the outbox, the whole data folder and what the
    application logged during the erasure: no name, email or phone."""
    world = forget(ctx, database_url, admin, admin_browser, person, other, caplog, control=True)
    data_dir = Path(ctx.config["DATA_DIR"])
    for name in world.stored_names:
        assert not stored_path(ctx, name).exists()
    assert scan_database(ctx, database_url) == {}
    if is_sqlite():
        path = Path(database_url.removeprefix("sqlite:///"))
        assert scan_folder(path.parent) == {}  # the database and everything beside it
    assert scan_folder(data_dir / "attachments") == {}
    assert scan_folder(data_dir / "outbox") == {}
    assert scan_folder(data_dir) == {}
    # What the application logs (every logger but peewee's SQL log, see below).
    assert world.log_records
    assert [(r.name, r.getMessage()[:300]) for r in world.log_records
            if r.name != "peewee" and found(r.getMessage())] == []

    # Where others named them, the placeholder stands; their tickets stay, pseudonymized.
    p, pid = world.placeholder, world.person_id
    n, e, ph = NAME_REMOVED, EMAIL_REMOVED, PHONE_REMOVED
    theirs = row(Ticket, world.their_ticket)
    assert theirs["subject"] == f"Complaint about {n}"
    assert theirs["description"] == f"My neighbour {n} ({e}, {ph}) keeps calling."
    assert [row(Comment, c)["body"] for c in world.mentions] == [
        f"Hello {n}, we will call you on {ph}.", f"{n} ({e}) sounded upset.",
        f"Again: {n}, {e}, {ph}.", f"We spoke to {n} at {ph}."]
    t1, t2 = (row(Ticket, t) for t in world.my_tickets)
    assert t1["requester"] == pid and t2["requester"] == pid
    assert t1["deleted_at"] is None and t2["deleted_at"] is None
    assert t1["subject"] == f"{n}: printer on fire"
    assert t1["description"] == f"Call {n} on {ph} or write to {e}."
    assert t2["subject"] == f"Second question from {n}"
    assert [c.body for c in Comment.select().where(Comment.author == pid)] == [f"Thanks! {n}, {ph}"]
    person = row(User, pid)
    assert (person["name"], person["email"], person["phone"], person["mobile"]) == (
        p, f"deleted-user-{pid}@invalid.invalid", "", "")
    assert person["anonymized_at"] is not None and person["password_hash"] is None
    assert Attachment.select().where(Attachment.uploader == pid).count() == 0
    assert EmailChangeRequest.select().where(EmailChangeRequest.user == pid).count() == 0
    # Mail that named them is gone; someone else's mail that did not is kept.
    assert not [m.id for m in MailMessage.select() if found(f"{m.recipient} {m.subject} {m.body}")]
    assert MailMessage.select().where(MailMessage.recipient == "oscar@example.com",
                                      MailMessage.subject.contains("Welcome")).count() == 1
    # Agents see the placeholder (the requester) and the markers on the ticket page.
    html = text(admin_browser.get(f"/agent/tickets/{world.my_tickets[0]}"))
    assert p in html and n in html and not found(html)
    ok, summary = audit.verify()
    assert ok, summary


def test_proof_nothing_the_audit_module_shows_names_them(ctx, database_url, admin, admin_browser,
                                                         person, other, caplog):
    world = forget(ctx, database_url, admin, admin_browser, person, other, caplog)
    pid = world.person_id
    # Every entry, every value opened wherever a key still exists, and every ip.
    assert audit_view_hits() == []
    # Scrubbing says that text was scrubbed, never what it said.
    scrubs = list(AuditEntry.select().where(AuditEntry.action == "scrub"))
    scrubbed = {(e.record_type, e.record_id) for e in scrubs}
    expected = {("Ticket", str(t)) for t in world.my_tickets + [world.their_ticket]}
    expected |= {("Comment", str(c)) for c in world.mentions}
    assert expected <= scrubbed, expected - scrubbed
    for entry in scrubs:
        changes = audit.read_changes(entry)
        assert changes and all(v == ["[scrubbed]", "[scrubbed]"] for v in changes.values()), changes
        assert json.loads(entry.changes) == changes  # recorded so, not sealed text
    # The history of others' text that named them is shredded.
    for comment_id in world.mentions:
        create = AuditEntry.get(AuditEntry.record_type == "Comment", AuditEntry.action == "create",
                                AuditEntry.record_id == str(comment_id))
        assert audit.read_changes(create)["body"] == [None, "[erased]"]
    their_create = AuditEntry.get(AuditEntry.record_type == "Ticket", AuditEntry.action == "create",
                                  AuditEntry.record_id == str(world.their_ticket))
    assert audit.read_changes(their_create)["subject"] == [None, "[erased]"]
    assert audit.read_changes(their_create)["description"] == [None, "[erased]"]
    # The person's own earlier values read "[erased]".
    signup = AuditEntry.get(AuditEntry.action == "create", AuditEntry.record_type == "User",
                            AuditEntry.record_id == str(pid))
    assert audit.read_changes(signup)["name"] == [None, "[erased]"]
    assert audit.read_changes(signup)["email"] == [None, "[erased]"]
    edits = [audit.read_changes(e) for e in AuditEntry.select().where(
        AuditEntry.action == "update", AuditEntry.record_id == str(pid), AuditEntry.subject_id == pid,
        AuditEntry.actor_id == pid).order_by(AuditEntry.seq)]
    edits = [c for c in edits if "name" in c]
    assert len(edits) == 2
    assert all(c["name"] == ["[erased]", "[erased]"] for c in edits), edits
    assert edits[0]["mobile"] == ["[erased]", "[erased]"] and edits[1]["phone"] == ["[erased]", "[erased]"]
    anonymize = AuditEntry.get(AuditEntry.action == "anonymize", AuditEntry.record_id == str(pid))
    assert audit.read_changes(anonymize)["name"] == ["[erased]", "[erased]"]
    # Other people's values stay readable: the shredding is the person's alone.
    oscar = AuditEntry.get(AuditEntry.action == "create", AuditEntry.record_type == "User",
                           AuditEntry.record_id == str(world.other_id))
    assert audit.read_changes(oscar)["email"] == [None, "oscar@example.com"]
    erased = AuditEntry.get(AuditEntry.action == "erase", AuditEntry.record_id == str(pid))
    assert erased.actor_id == admin.id
    ok, summary = audit.verify()
    assert ok, summary




def test_proof_nothing_logged_at_debug_during_the_erasure_names_them(ctx, admin, admin_browser,
                                                                     person, other, caplog):
    theirs = ticket_service.submit(other, f"About {NAME}", f"{EMAIL}, {PHONE}")
    token = csrf_token(admin_browser, f"/agent/people/{person.id}/erase")
    with caplog.at_level(logging.DEBUG):
        resp = erase(admin_browser, person.id, token=token)
        records = list(caplog.records)
    assert resp.status_code == 302
    assert row(Ticket, theirs.id)["subject"] == "About [name removed]"
    assert records  # something was logged at DEBUG
    leaking = [(r.name, r.getMessage()[:300]) for r in records if found(r.getMessage())]
    assert leaking == []


def test_the_forgotten_person_cannot_sign_in_and_their_sessions_end(ctx, admin, admin_browser,
                                                                     person):
    browsers = [signed_in(ctx, person), signed_in(ctx, person, remember="y")]
    assert post_form(browsers[0], "/my/email-change", {"new_email": "xavierine.new@example.org"},
                     form_page="/my/info").status_code == 302
    assert erase(admin_browser, person.id).status_code == 302
    for b in browsers:  # signed in before, one with "remember me"
        assert is_signed_out(b)
        resp = b.get("/my/tickets")
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    placeholder_email = f"deleted-user-{person.id}@invalid.invalid"
    for address in (EMAIL, EMAIL.upper(), placeholder_email, "xavierine.new@example.org"):
        assert not can_sign_in(ctx, address), address
    user = User.get_by_id(person.id)
    assert not user.is_active and user.deleted_at is not None and user.password_hash is None
    assert user.session_token != person.session_token
    assert can_sign_in(ctx, "ada@example.com")  # the others still can


# --- beyond the current values ------------------------------------------------------



def test_former_name_and_email_are_forgotten_too(ctx, database_url, admin, admin_browser, person, other):
    """Mentions made while the person still had an earlier name and address."""
    theirs = ticket_service.submit(other, f"Letter for {NAME}", f"Forwarding to {EMAIL}.")
    mention = ticket_service.reply(other, theirs.id, f"{NAME} <{EMAIL}> has not answered.")
    # The person then changes name and (through the approved request) address.
    profile.update_my_info(person, {"name": "Yolanda Zyxwright"})
    req = email_change.request_change(person, "yolanda.z@example.org")
    email_change.approve(admin, req.id)
    link = MailMessage.select().where(MailMessage.recipient == "yolanda.z@example.org").get().body
    email_change.confirm(User.get_by_id(person.id), re.search(r"/confirm-email/(\S+)", link).group(1))
    assert User.get_by_id(person.id).email == "yolanda.z@example.org"

    assert erase(admin_browser, person.id).status_code == 302
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    problems = {"ticket": found(row(Ticket, theirs.id)["subject"] + row(Ticket, theirs.id)["description"]),
                "comment": found(row(Comment, mention.id)["body"]),
                "audit": [h[:5] for h in audit_view_hits()],
                "database": sorted(scan_database(ctx, database_url))}
    assert problems == {"ticket": [], "comment": [], "audit": [], "database": []}




def test_files_others_attached_about_them_are_forgotten_too(ctx, database_url, admin, admin_browser,
                                                            person):
    """An agent attaches a file naming the person to the person's ticket."""
    b = signed_in(ctx, person)
    ticket_id = submit(b, "Invoice please", "For my order.")
    ticket_service.reply(admin, ticket_id, "Here it is.", uploads=[
        Upload(f"Invoice for {NAME}.txt", io.BytesIO(f"Bill to: {NAME}\n{EMAIL}\n{PHONE}\n".encode()))])

    assert erase(admin_browser, person.id).status_code == 302
    assert row(User, person.id)["name"] == f"Deleted user {person.id}"
    data_dir = Path(ctx.config["DATA_DIR"])
    problems = {"attachment folder": scan_folder(data_dir / "attachments"),
                "database": sorted(scan_database(ctx, database_url)),
                "audit": [h[:5] for h in audit_view_hits()]}
    assert problems == {"attachment folder": {}, "database": [], "audit": []}


def raw_pages_postgres(database_url: str) -> bytes:
    """Every page of every table, index and TOAST table of the test database,
    as stored (pageinspect's get_raw_page): dead rows and free space included,
    which no dump shows."""
    import psycopg2
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
            cur.execute("SELECT c.oid::regclass::text, pg_relation_size(c.oid) / 8192 FROM pg_class c"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't')"
                        " AND c.relpersistence = 'p'")
            pages = []
            for relation, count in cur.fetchall():
                for block in range(count):
                    cur.execute("SELECT get_raw_page(%s, %s)", (relation, block))
                    page = bytes(cur.fetchone()[0])
                    if found(page):
                        pages.append(f"[{relation} block {block}]".encode())
                    pages.append(page)
            return b"".join(pages)
    finally:
        conn.close()


@pytest.mark.parametrize("rebuilt_by", ["erasure", "resume"])
def test_proof_no_fragment_lingers_in_free_space_after_mail_about_them(ctx, database_url, admin,
                                                                       admin_browser, person, other,
                                                                       monkeypatch, rebuilt_by):
    """secure_delete zeroes deleted cells, but not the unused space SQLite leaves
    inside live pages when it rebuilds them, and PostgreSQL keeps deleted rows
    in their pages as dead tuples: the security review found
    "harriet@example.com[#516] New reply: Order 115 for Harrie" there after an
    erasure. Queued and sent mail naming the person, churned among other
    people's mail as a busy desk does, must leave no byte in the whole file.
    The erasure commits, then rebuilds the files as a step of its own: right
    away, or (``resume``: the process died in between) by the scheduled resume."""
    rng = random.Random(7)
    ids = []
    for i in range(1500):
        if rng.random() < 0.2:
            row = mail.queue(EMAIL, f"[#{i}] New reply: Order {i} for {NAME}", "x" * rng.randint(50, 600),
                             subject_id=person.id)
        else:
            row = mail.queue(f"someone{i}@example.com", f"[#{i}] New reply: Order {i}",
                             "y" * rng.randint(50, 600))
        ids.append(row.id)
        if rng.random() < 0.5:
            (MailMessage.update(status="sent", sent_at=utcnow(), last_error="e" * rng.randint(0, 300))
             .where(MailMessage.id == rng.choice(ids)).execute())
    if database_url.startswith("sqlite"):
        assert found(b"".join(database_bytes(ctx, database_url).values()))  # the search does look
    else:
        assert found(raw_pages_postgres(database_url))
    if rebuilt_by == "resume":
        monkeypatch.setattr(erasure, "compact_pending", lambda: 0)  # dies before the rebuild
    resp = erase(admin_browser, person.id)
    assert resp.status_code == 302, text(resp)[:500]
    req = ErasureRequest.get(ErasureRequest.user == person.id)
    assert req.status == DONE
    if rebuilt_by == "resume":
        assert req.step == len(erasure.STEPS)  # done, the rebuild still waiting
        monkeypatch.undo()
        assert erasure.resume_all() == 1
    assert ErasureRequest.get_by_id(req.id).step == erasure.COMPACTED
    # Other people's mail stays.
    assert MailMessage.select().where(MailMessage.recipient.startswith("someone")).count() > 1000
    if database_url.startswith("sqlite"):
        assert scan_database(ctx, database_url) == {}
        assert db.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    else:
        raw = raw_pages_postgres(database_url)
        assert found(raw) == [], re.findall(rb"\[[^\]]+ block \d+\]", raw)


def attachments_of(named: list[tuple[str, bytes]]) -> list[files_service.Upload]:
    return [files_service.Upload(filename=name, stream=io.BytesIO(data)) for name, data in named]


def test_every_form_of_their_identifiers_goes_each_kind_to_its_own_marker(ctx, database_url, admin,
                                                                         admin_browser, person, other):
    """The cases a new user found: the first name alone in another person's
    comment, the phone in other formattings, the email split over a line break,
    the name in a file's name. Someone else who shares a first name, in a thread
    that is not about the person, keeps it."""
    first, surname = NAME.split()
    local, domain = EMAIL.split("@")
    b = signed_in(ctx, person)
    mine = submit(b, "Printer", "It smokes.")
    on_mine = ticket_service.reply(admin, mine, f"I know {first}, she told me too.")
    theirs = ticket_service.submit(other, f"Complaint about {NAME}", "Loud music.")
    replies = [ticket_service.reply(admin, theirs.id, body, public=False).id for body in (
        f"{first} called again from 07700 900123.",
        f"Her other numbers: (0)7700-900-123 and +44 7700 900123; {surname} said so.",
        f"Write to {local}@\n{domain} or to {local}@exam=\nple.org (soft break).",
        f"Or just {local} on the chat.")]
    stranger = ticket_service.submit(other, "Another Xavierine", f"{first} Smith, no relation.")
    file_ticket = ticket_service.submit(
        other, "Scans", "Attached.", None, attachments_of([(f"{first}_{surname}_passport.pdf", b"%PDF-1.4 scan")]))
    kept_file = ticket_service.submit(other, "Scans 2", "Attached.", None,
                                      attachments_of([("invoice.pdf", b"%PDF-1.4 invoice")]))
    assert erase(admin_browser, person.id).status_code == 302
    n, e, ph = NAME_REMOVED, EMAIL_REMOVED, PHONE_REMOVED
    assert row(Comment, on_mine.id)["body"] == f"I know {n}, she told me too."
    assert [row(Comment, c)["body"] for c in replies] == [
        f"{n} called again from {ph}.",
        f"Her other numbers: {ph} and {ph}; {n} said so.",
        f"Write to {e} or to {e} (soft break).",
        f"Or just {e} on the chat."]
    assert row(Ticket, theirs.id)["subject"] == f"Complaint about {n}"
    # A thread that never names the person keeps a shared first name.
    assert row(Ticket, stranger.id)["description"] == f"{first} Smith, no relation."
    assert Attachment.select().where(Attachment.ticket == file_ticket.id).count() == 0
    assert Attachment.select().where(Attachment.ticket == kept_file.id).count() == 1
    texts = [t.subject + t.description for t in Ticket.select().where(Ticket.id != stranger.id)]
    texts += [c.body for c in Comment.select()]
    assert [t for t in texts if found(t, NEEDLES + (first, local, "900123", "900-123"))] == []


def test_the_identifier_patterns_know_each_formatting():
    who = Identifiers(names={"Xavierine Qwertyson"}, emails={"xavierine.q@example.org"},
                      phones={"+44 7700 900123"})
    for text in ("+44 7700 900123", "07700 900123", "(0)7700-900-123", "0044 (0)7700 900 123",
                 "+44 (0) 7700.900.123", "7700900123"):
        assert who.scrub(f"call {text} now", about_them=False) == f"call {PHONE_REMOVED} now", text
    for text in ("order 900123", "ref 17700900123", "77009001234"):
        assert who.scrub(text, about_them=True) == text and not who.mentions(text)
    assert who.scrub("XAVIERINE\nqwertyson", about_them=False) == NAME_REMOVED
    assert who.scrub("Xavierine alone", about_them=False) == "Xavierine alone"
    assert who.scrub("Xavierine alone", about_them=True) == f"{NAME_REMOVED} alone"
    assert who.scrub("Xavierines", about_them=True) == "Xavierines"  # a word of its own only
    assert who.scrub("xavierine.q@exam\nple.org", about_them=False) == EMAIL_REMOVED
    assert who.search_terms() == (["Qwertyson", "Xavierine", "xavierine.q"],
                                  [("477", "123"), ("700", "123"), ("770", "123")])
    # Too few digits to tell a phone number from an order number: no pattern.
    assert not Identifiers(names=set(), emails=set(), phones={"12345"})


def test_the_privacy_registers_keep_their_entries_but_not_the_person(ctx, database_url, admin,
                                                                       admin_browser, person, other):
    """Administrators' own notes in the request register and the breach register
    named the person (a reviewer found them left behind by the erasure)."""
    import datetime as _dt
    from desk.models import Breach
    from desk.models import DataSubjectRequest
    from desk.services import breaches
    from desk.services import subject_requests
    now = utcnow()
    logged = subject_requests.log(admin, EMAIL, "access", "letter", now - _dt.timedelta(days=1), True,
                                  identity_note=f"Passport of {NAME} seen; call back on {PHONE}",
                                  notes=f"Xavierine asked by letter from {EMAIL}")
    breach = breaches.record(admin, {"discovered_at": now - _dt.timedelta(hours=1),
                                     "description": f"A list with {NAME} <{EMAIL}> went to {other.email}",
                                     "categories": "contact details"})
    kept_breach = breaches.record(admin, {"discovered_at": now - _dt.timedelta(hours=2),
                                          "description": "An old backup tape is missing",
                                          "categories": "tickets"})
    assert erase(admin_browser, person.id).status_code == 302
    row = DataSubjectRequest.get_by_id(logged.id)
    assert row.kind == "access" and row.identity_checked  # the entry stays
    assert row.identity_note == f"Passport of {NAME_REMOVED} seen; call back on {PHONE_REMOVED}"
    assert row.notes == f"{NAME_REMOVED} asked by letter from {EMAIL_REMOVED}"
    assert Breach.get_by_id(breach.id).description == (
        f"A list with {NAME_REMOVED} <{EMAIL_REMOVED}> went to {other.email}")
    assert Breach.get_by_id(kept_breach.id).description == "An old backup tape is missing"
    assert scan_database(ctx, database_url) == {}
