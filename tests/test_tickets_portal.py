"""The help center, end-user side: submitting tickets with attachments, My Tickets,
one ticket's public conversation, isolation between end users, downloads, size
limits and the mail each step queues (one test delivers it over real SMTP)."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import re
import struct
import time
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer

from desk import audit
from desk.db import db
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Department
from desk.models import MailMessage
from desk.models import Ticket
from desk.models import utcnow
from desk.services import mail
from desk.services import tickets as ticket_service
from desk.services.attachments import Upload
from desk.services.attachments import open_file
from desk.services.attachments import sanitize_filename
from tests import factories
from tests.conftest import csrf_token
from tests.conftest import post_form
from tests.smtp import Collector
from tests.smtp import free_port
from tests.conftest import signed_in

HUGE_ID = "99999999999999999999"
TICKET_LINK = re.compile(r'href="/my/tickets/(\d+)"')


# --- helpers ------------------------------------------------------------------

def png_bytes() -> bytes:
    """A real 1x1 PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))



def files_field(files) -> list:
    return [(io.BytesIO(content), name) for name, content in files]


def submit(browser, subject="Printer on fire", description="It smokes when I print.", files=(),
           **extra):
    data = {"subject": subject, "description": description, "attachments": files_field(files), **extra}
    return post_form(browser, "/tickets/new", data, content_type="multipart/form-data")


def send_reply(browser, ticket_id, body="Any news?", files=()):
    return post_form(browser, f"/my/tickets/{ticket_id}",
                     {"body": body, "attachments": files_field(files)},
                     content_type="multipart/form-data")


def set_status(browser, ticket_id, status):
    return post_form(browser, f"/my/tickets/{ticket_id}/status", {"status": status},
                     form_page="/tickets/new")


def ticket_id_from(resp) -> int:
    assert resp.status_code == 302, resp.get_data(as_text=True)
    match = re.search(r"/my/tickets/(\d+)$", resp.headers["Location"])
    assert match, resp.headers["Location"]
    return int(match.group(1))


def stored_files(app) -> list[Path]:
    root = Path(app.config["DATA_DIR"]) / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def mails_to(address: str, containing: str = "") -> list[MailMessage]:
    return [m for m in MailMessage.select().where(MailMessage.recipient == address).order_by(MailMessage.id)
            if containing in m.subject]


def audit_actions(record_type: str, record_id) -> list[str]:
    return [e.action for e in AuditEntry.select().where(AuditEntry.record_type == record_type,
                                                          AuditEntry.record_id == str(record_id))
            .order_by(AuditEntry.seq)]


def main_of(resp) -> str:
    return re.search(r"<main.*</main>", resp.get_data(as_text=True), re.S).group(0)


def listed_ids(html: str) -> list[int]:
    return [int(n) for n in TICKET_LINK.findall(html)]


@contextlib.contextmanager
def app_context(app):
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            yield app
        finally:
            if not db.is_closed():
                db.close()


@pytest.fixture
def ann(ctx):
    return factories.end_user(name="Ann Example", email="ann@example.com")


@pytest.fixture
def ann_browser(ctx, ann):
    return signed_in(ctx, ann)


# --- submitting a ticket ------------------------------------------------------

def test_submit_a_ticket_with_two_attachments(ctx, ann, ann_browser):
    report = b"line one\nline two\n" * 10
    image = png_bytes()
    resp = submit(ann_browser, subject="Printer on fire", description="Smoke everywhere.",
                  files=[("report.txt", report), ("screen.png", image)])
    ticket_id = ticket_id_from(resp)

    ticket = Ticket.get_by_id(ticket_id)
    assert (ticket.subject, ticket.description, ticket.status) == ("Printer on fire", "Smoke everywhere.", "open")
    assert ticket.requester_id == ann.id and ticket.assignee_id is None

    rows = list(Attachment.select().where(Attachment.ticket == ticket_id).order_by(Attachment.id))
    assert [(r.filename, r.size, r.comment_id, r.uploader_id) for r in rows] == [
        ("report.txt", len(report), None, ann.id), ("screen.png", len(image), None, ann.id)]
    for row, content in zip(rows, (report, image)):
        assert re.fullmatch(r"[0-9a-f]{32}", row.stored_name)
        assert row.sha256 == hashlib.sha256(content).hexdigest()
        path = Path(ctx.config["DATA_DIR"]) / "attachments" / row.stored_name[:2] / row.stored_name
        assert path.read_bytes().startswith(b"DESKF1") and content not in path.read_bytes()  # sealed
        with open_file(ctx.config, row) as fh:
            assert fh.read() == content
    assert rows[0].stored_name != rows[1].stored_name
    assert [r.content_type for r in rows] == ["application/octet-stream", "image/png"]
    assert len(stored_files(ctx)) == 2  # no leftovers (.part files) next to them

    ack = mails_to(ann.email, f"[#{ticket_id}]")
    assert len(ack) == 1 and ack[0].status == "pending"
    assert "Printer on fire" in ack[0].subject and f"/my/tickets/{ticket_id}" in ack[0].body

    assert audit_actions("Ticket", ticket_id) == ["create"]
    for row in rows:
        assert audit_actions("Attachment", row.id) == ["create"]
    assert AuditEntry.get(AuditEntry.record_type == "Ticket", AuditEntry.record_id == str(ticket_id)).actor_id == ann.id

    page = ann_browser.get(resp.headers["Location"]).get_data(as_text=True)
    assert f"Your request #{ticket_id} was received." in page
    assert "Printer on fire" in page and "Smoke everywhere." in page
    assert f'href="/attachments/{rows[0].id}"' in page and f'href="/attachments/{rows[1].id}"' in page


FILENAMES = {
    "../../etc/passwd": "passwd",
    "bad\x01name\x1f\u202egnp.txt": "badnamegnp.txt",
    "  ...  ": "file",
    "合同 2024.pdf": "合同 2024.pdf",
}


def test_original_filename_is_kept_only_sanitized(ctx, ann_browser):
    ticket_id = ticket_id_from(submit(ann_browser, files=[(raw, raw.encode()) for raw in FILENAMES]))
    rows = list(Attachment.select().where(Attachment.ticket == ticket_id).order_by(Attachment.id))
    assert [r.filename for r in rows] == list(FILENAMES.values())
    assert sorted(p.name for p in stored_files(ctx)) == sorted(r.stored_name for r in rows)
    for raw, row in zip(FILENAMES, rows):
        resp = ann_browser.get(f"/attachments/{row.id}")
        assert resp.status_code == 200 and resp.data == raw.encode()
        disposition = resp.headers["Content-Disposition"]
        assert disposition.startswith("attachment;") and "/" not in disposition and ".." not in disposition
    chinese = ann_browser.get(f"/attachments/{rows[-1].id}").headers["Content-Disposition"]
    assert "filename*=UTF-8''%E5%90%88%E5%90%8C" in chinese  # 合同


def test_sanitize_filename_drops_windows_paths_and_odd_characters():
    # The test client cannot send a backslash in a multipart filename unchanged,
    # so the Windows form of a path is checked on the function itself.
    assert sanitize_filename("..\\..\\windows\\win.ini") == "win.ini"
    assert sanitize_filename("C:\\Users\\ann\\report.pdf") == "report.pdf"
    assert sanitize_filename("a\tb\n\u200bc.txt") == "abc.txt"
    assert sanitize_filename("x" * 300 + ".txt") == "x" * 190 + ".txt"
    assert sanitize_filename("") == "file"


def test_department_choice_only_when_several_are_public(ctx, ann, ann_browser):
    assert 'name="department"' not in ann_browser.get("/tickets/new").get_data(as_text=True)

    billing = factories.department("Billing")
    secret = audit.create(audit.SYSTEM, Department, name="Internal audit", is_private=True)
    form = ann_browser.get("/tickets/new").get_data(as_text=True)
    assert 'name="department"' not in form  # one public department: nothing to choose
    only = Ticket.get_by_id(ticket_id_from(submit(ann_browser)))
    assert only.department_id == billing.id

    support = factories.department("Support")
    form = ann_browser.get("/tickets/new").get_data(as_text=True)
    assert 'name="department"' in form and "Billing" in form and "Support" in form
    assert "Internal audit" not in form
    chosen = Ticket.get_by_id(ticket_id_from(submit(ann_browser, department=str(support.id))))
    assert chosen.department_id == support.id
    none_chosen = Ticket.get_by_id(ticket_id_from(submit(ann_browser, department="0")))
    assert none_chosen.department_id is None

    before = Ticket.select().count()
    for bad in (str(secret.id), "987654", "abc", HUGE_ID):
        resp = submit(ann_browser, department=bad)
        assert resp.status_code == 400, bad
        assert "Not a valid choice" in resp.get_data(as_text=True) or "Invalid Choice" in resp.get_data(as_text=True)
    assert Ticket.select().count() == before


BAD_TICKETS = [
    ({"subject": ""}, "Enter a subject."),
    ({"subject": "   "}, "Enter a subject."),
    ({"description": ""}, "Describe what you need."),
    ({"subject": "x" * 10_000}, "Field cannot be longer than 255 characters."),
    ({"description": "y" * 50_001}, "Field cannot be longer than 50000 characters."),
    ({"subject": "Nul\x00Byte"}, "Text must not contain control characters."),
    ({"description": "before\x00after"}, "Text must not contain control characters."),
]


def test_bad_ticket_and_reply_input_is_refused_clearly(ctx, ann_browser):
    for bad, message in BAD_TICKETS:
        resp = submit(ann_browser, files=[("a.txt", b"kept?")], **bad)
        assert resp.status_code == 400, bad
        html = resp.get_data(as_text=True)
        assert message in html and "Submit a request" in html, bad
    assert Ticket.select().count() == 0 and Attachment.select().count() == 0
    assert stored_files(ctx) == []

    ticket_id = ticket_id_from(submit(ann_browser))
    for body, message in (("", "Write a reply."), ("a\x00b", "Text must not contain control characters."),
                          ("z" * 50_001, "Field cannot be longer than 50000 characters.")):
        resp = send_reply(ann_browser, ticket_id, body, files=[("x.txt", b"x")])
        assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    no_csrf = ann_browser.post(f"/my/tickets/{ticket_id}", data={"body": "hello"})
    assert no_csrf.status_code == 400
    assert Comment.select().count() == 0 and Attachment.select().count() == 0


def test_missing_or_stale_csrf_token_is_refused(ctx, ann_browser):
    data = {"subject": "Hello", "description": "World"}
    missing = ann_browser.post("/tickets/new", data=data)
    assert missing.status_code == 400
    assert "The form expired or was sent from elsewhere" in missing.get_data(as_text=True)

    csrf_token(ann_browser, "/tickets/new")  # the session now holds its raw token
    with ann_browser.session_transaction() as session:
        raw = session["csrf_token"]

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 2 * 3600

    old_token = URLSafeTimedSerializer(ctx.secret_key, salt="wtf-csrf-token",
                                       signer=TwoHoursAgo).dumps(raw)
    stale = ann_browser.post("/tickets/new", data={**data, "csrf_token": old_token})
    assert stale.status_code == 400
    assert "The form expired or was sent from elsewhere" in stale.get_data(as_text=True)

    forged = ann_browser.post("/tickets/new", data={**data, "csrf_token": "x" * 40})
    assert forged.status_code == 400
    assert Ticket.select().count() == 0


def test_unknown_and_huge_ids_are_not_found(ctx, ann_browser):
    for path in (f"/my/tickets/{HUGE_ID}", "/my/tickets/2147483647", "/my/tickets/0", "/my/tickets/-1",
                 "/my/tickets/abc", f"/attachments/{HUGE_ID}", "/attachments/2147483647"):
        resp = ann_browser.get(path)
        assert resp.status_code == 404, path
        assert "Not found" in resp.get_data(as_text=True)
    for path in (f"/my/tickets/{HUGE_ID}", f"/my/tickets/{HUGE_ID}/status", "/my/tickets/2147483647/status"):
        resp = post_form(ann_browser, path, {"body": "hi", "status": "closed"}, form_page="/tickets/new")
        assert resp.status_code == 404, path



def _digits(number: int, zero: str) -> str:
    """``number`` written in the decimal digits of another script."""
    return "".join(chr(ord(zero) + int(d)) for d in str(number))


# Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali, fullwidth, mathematical.
OTHER_ZEROS = ["\u0660", "\u06f0", "\u0966", "\u09e6", "\uff10", "\U0001d7d8"]


@pytest.mark.parametrize("zero", OTHER_ZEROS)
def test_ids_in_urls_are_ascii_digits_only(ctx, ann_browser, zero):
    ticket_id = ticket_id_from(submit(ann_browser, files=[("a.txt", b"a"), ("b.txt", b"b"),
                                                          ("c.txt", b"c")]))
    attachment_id = Attachment.select().order_by(Attachment.id.desc()).first().id
    assert ann_browser.get(f"/attachments/{attachment_id}").data == b"c"
    assert ann_browser.get(f"/my/tickets/{ticket_id}").status_code == 200
    for path in (f"/attachments/{_digits(attachment_id, zero)}",
                 f"/my/tickets/{_digits(ticket_id, zero)}",
                 f"/attachments/{attachment_id}\u200b", f"/attachments/+{attachment_id}"):
        resp = ann_browser.get(quote(path))
        assert resp.status_code == 404, path
        assert "Not found" in resp.get_data(as_text=True)
    resp = post_form(ann_browser, quote(f"/my/tickets/{_digits(ticket_id, zero)}/status"),
                     {"status": "closed"}, form_page="/tickets/new")
    assert resp.status_code == 404
    assert Ticket.get_by_id(ticket_id).status != "closed"


def test_every_route_id_uses_the_one_ascii_id_converter(app):
    from werkzeug.routing.converters import NumberConverter
    from desk.web.pages import IdConverter
    assert IdConverter.regex == "[0-9]+"
    ids = 0
    for rule in app.url_map.iter_rules():
        for name, converter in rule._converters.items():
            if name.endswith("_id") or name == "id" or isinstance(converter, NumberConverter):
                assert type(converter) is IdConverter, (rule.rule, name)
                ids += 1
    assert ids > 30

# --- size limits --------------------------------------------------------------

@pytest.fixture
def small_limits(make_app):
    """Files up to 1 MB each, 2 MB per request (hard cap 2 * 2 + 1 = 5 MB)."""
    app = make_app(ATTACHMENT_MAX_MB=1, UPLOAD_MAX_MB=2)
    with app_context(app):
        user = factories.end_user(email="ann@example.com")
        yield app, signed_in(app, user)


MB = 2**20
TOO_LARGE = {
    "one-file-over-1MB": ([("big.bin", b"a" * (MB + MB // 2))], "“big.bin” is larger than 1 MB."),
    "three-files-over-2MB": ([(f"part{i}.bin", b"b" * (MB * 9 // 10)) for i in range(3)],
                             "The files together are larger than 2 MB."),
}


def test_too_large_files_get_413_and_keep_what_the_user_typed(small_limits):
    app, browser = small_limits
    for files, message in TOO_LARGE.values():
        resp = submit(browser, subject="Invoice 4711 is wrong", description="Please see the scans <attached>.",
                      files=files)
        assert resp.status_code == 413
        html = resp.get_data(as_text=True)
        assert message in html
        assert 'value="Invoice 4711 is wrong"' in html
        assert "Please see the scans &lt;attached&gt;.</textarea>" in html
        assert 'name="csrf_token"' in html and "Submit a request" in html
        assert Ticket.select().count() == 0 and Attachment.select().count() == 0
        assert stored_files(app) == []
        assert not AuditEntry.select().where(AuditEntry.record_type.in_(["Ticket", "Attachment"])).exists()
        assert not MailMessage.select().where(MailMessage.subject.contains("We received")).exists()

    ticket_id = ticket_id_from(submit(browser, files=[("ok.bin", b"c" * (MB - 10))]))
    resp = send_reply(browser, ticket_id, body="Here is the full log", files=[("log.bin", b"d" * (MB + 1))])
    assert resp.status_code == 413
    html = resp.get_data(as_text=True)
    assert "“log.bin” is larger than 1 MB." in html and "Here is the full log</textarea>" in html
    assert Comment.select().count() == 0 and Attachment.select().count() == 1
    assert len(stored_files(app)) == 1


def test_request_above_the_hard_cap_gets_a_clear_413_page(small_limits):
    app, browser = small_limits
    assert app.config["MAX_CONTENT_LENGTH"] == 5 * MB
    resp = submit(browser, files=[("huge.bin", b"e" * (5 * MB + 1))])
    assert resp.status_code == 413
    html = resp.get_data(as_text=True)
    assert "Too large" in html and "The upload is larger than allowed." in html
    assert Ticket.select().count() == 0 and stored_files(app) == []


# --- My Tickets ---------------------------------------------------------------

def test_my_tickets_lists_own_tickets_newest_activity_first(ctx, ann, ann_browser):
    bob = factories.end_user()
    base = utcnow() - dt.timedelta(days=1)
    old = factories.ticket(ann, "Old printer question")
    held = factories.ticket(ann, "Waiting for PRINTER parts", status="on_hold")
    done = factories.ticket(ann, "Password reset", status="closed")
    other = factories.ticket(bob, "Bob's printer")
    for hours, ticket in ((1, held), (2, done), (3, old), (4, other)):
        audit.update(audit.SYSTEM, ticket, updated_at=base + dt.timedelta(hours=hours))

    html = ann_browser.get("/my/tickets").get_data(as_text=True)
    assert listed_ids(html) == [old.id, done.id, held.id]
    assert "Bob&#39;s printer" not in html and "Bob's printer" not in html
    assert 'All <span class="count">3</span>' in html
    for label in ("Open", "On hold", "Closed"):
        assert f'{label} <span class="count">1</span>' in html

    # new activity (a reply) moves a ticket to the top
    assert send_reply(ann_browser, held.id, "Any news?").status_code == 302
    assert listed_ids(ann_browser.get("/my/tickets").get_data(as_text=True))[0] == held.id

    assert listed_ids(ann_browser.get("/my/tickets?status=open").get_data(as_text=True)) == [old.id]
    assert listed_ids(ann_browser.get("/my/tickets?status=on_hold").get_data(as_text=True)) == [held.id]
    assert listed_ids(ann_browser.get("/my/tickets?status=closed").get_data(as_text=True)) == [done.id]
    unknown = ann_browser.get("/my/tickets?status=deleted")
    assert unknown.status_code == 200 and len(listed_ids(unknown.get_data(as_text=True))) == 3

    found = ann_browser.get("/my/tickets?q=printer").get_data(as_text=True)
    assert sorted(listed_ids(found)) == sorted([old.id, held.id])
    assert listed_ids(ann_browser.get("/my/tickets?q=printer&status=on_hold").get_data(as_text=True)) == [held.id]
    nothing = ann_browser.get("/my/tickets?q=%25").get_data(as_text=True)
    assert listed_ids(nothing) == [] and "No tickets match." in nothing
    for q in ("x" * 10_000, "' OR 1=1 --", "打印机", "_"):
        resp = ann_browser.get("/my/tickets", query_string={"q": q})
        assert resp.status_code == 200 and listed_ids(resp.get_data(as_text=True)) == []


def test_my_tickets_pagination(ctx, ann, ann_browser):
    made = [factories.ticket(ann, f"Question {i}") for i in range(30)]
    first = ann_browser.get("/my/tickets").get_data(as_text=True)
    assert len(listed_ids(first)) == 25 and "Page 1 of 2" in first
    second = ann_browser.get("/my/tickets?page=2").get_data(as_text=True)
    assert len(listed_ids(second)) == 5 and "Page 2 of 2" in second
    assert sorted(listed_ids(first) + listed_ids(second)) == sorted(t.id for t in made)
    assert listed_ids(second) == [t.id for t in made[:5]][::-1]
    for page in ("0", "-3", "abc", ""):
        resp = ann_browser.get(f"/my/tickets?page={page}")
        assert resp.status_code == 200 and listed_ids(resp.get_data(as_text=True)) == listed_ids(first)
    beyond = ann_browser.get(f"/my/tickets?page={HUGE_ID}")
    assert beyond.status_code == 200 and listed_ids(beyond.get_data(as_text=True)) == []


def test_search_with_control_characters_never_errors(ctx, ann, ann_browser):
    # PostgreSQL refuses NUL in a string literal: the search must not pass it on (500 before).
    printer = factories.ticket(ann, "Printer")
    for q in ("\x00", "print\x00er", "\x01\x7f", "\u202e"):
        resp = ann_browser.get("/my/tickets", query_string={"q": q})
        assert resp.status_code in (200, 400), repr(q)
    found = ann_browser.get("/my/tickets", query_string={"q": "print\x00er"})
    if found.status_code == 200:
        assert listed_ids(found.get_data(as_text=True)) in ([], [printer.id])


# --- one ticket ---------------------------------------------------------------

def test_ticket_page_shows_public_thread_in_order_and_never_private_notes(ctx, ann, ann_browser):
    agent = factories.admin(name="Alice Agent")
    ticket_id = ticket_id_from(submit(ann_browser, description="Opening words", files=[("first.txt", b"1")]))
    ticket_service.reply(agent, ticket_id, "Agent answer one",
                         uploads=[Upload("answer.txt", io.BytesIO(b"public file"))])
    ticket_service.reply(agent, ticket_id, "SECRET internal note", public=False,
                         uploads=[Upload("secret-note.txt", io.BytesIO(b"private file"))])
    assert send_reply(ann_browser, ticket_id, "Customer follow-up").status_code == 302

    html = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    positions = [html.index(text) for text in
                 ("Opening words", "first.txt", "Agent answer one", "answer.txt", "Customer follow-up")]
    assert positions == sorted(positions)
    assert "SECRET internal note" not in html and "secret-note.txt" not in html
    assert "Private note" not in html

    private_file = Attachment.get(Attachment.filename == "secret-note.txt")
    public_file = Attachment.get(Attachment.filename == "answer.txt")
    assert f"/attachments/{private_file.id}" not in html
    assert ann_browser.get(f"/attachments/{private_file.id}").status_code == 404
    assert ann_browser.get(f"/attachments/{public_file.id}").data == b"public file"
    # the agent sees both
    agent_html = signed_in(ctx, agent).get(f"/agent/tickets/{ticket_id}").get_data(as_text=True)
    assert "SECRET internal note" in agent_html and "secret-note.txt" in agent_html

    # a deleted comment disappears for the end user, its file stays on disk until the purge
    ticket_service.delete_comment(agent, ticket_id, public_file.comment_id)
    html = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    assert "Agent answer one" not in html and "answer.txt" not in html and "Customer follow-up" in html
    assert ann_browser.get(f"/attachments/{public_file.id}").status_code == 404
    assert len(stored_files(ctx)) == 3

    # so does a deleted ticket, with everything on it
    first_file = Attachment.get(Attachment.filename == "first.txt")
    ticket_service.delete_ticket(agent, ticket_id)
    assert ann_browser.get(f"/my/tickets/{ticket_id}").status_code == 404
    assert ann_browser.get(f"/attachments/{first_file.id}").status_code == 404
    listing = ann_browser.get("/my/tickets").get_data(as_text=True)
    assert listed_ids(listing) == [] and 'All <span class="count">0</span>' in listing
    assert len(stored_files(ctx)) == 3


def test_reply_with_attachment_notifies_the_assignee(ctx, ann, ann_browser):
    agent = factories.agent(email="alice.agent@example.com")
    ticket_id = ticket_id_from(submit(ann_browser))
    assert send_reply(ann_browser, ticket_id, "No assignee yet").status_code == 302
    assert mails_to(agent.email) == []

    ticket_service.update_ticket(factories.admin(), ticket_id, assignee_id=agent.id)
    assigned = len(mails_to(agent.email))
    resp = send_reply(ann_browser, ticket_id, "Here is the log", files=[("log.txt", b"ERROR 42\n")])
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/my/tickets/{ticket_id}#latest")

    comment = Comment.select().where(Comment.ticket == ticket_id).order_by(Comment.id.desc()).get()
    assert (comment.body, comment.is_public, comment.author_id) == ("Here is the log", True, ann.id)
    row = Attachment.get(Attachment.comment == comment.id)
    assert (row.filename, row.size, row.ticket_id) == ("log.txt", 9, ticket_id)
    assert row.sha256 == hashlib.sha256(b"ERROR 42\n").hexdigest()
    assert audit_actions("Comment", comment.id) == ["create"] and audit_actions("Attachment", row.id) == ["create"]

    notes = mails_to(agent.email)[assigned:]
    assert len(notes) == 1 and f"[#{ticket_id}] Customer replied" in notes[0].subject
    assert "Here is the log" in notes[0].body and f"/agent/tickets/{ticket_id}" in notes[0].body

    html = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    assert "Your reply was sent." in html and "Here is the log" in html and "log.txt" in html


def test_close_reopen_and_reply_to_a_closed_ticket(ctx, ann, ann_browser):
    ticket_id = ticket_id_from(submit(ann_browser))

    resp = set_status(ann_browser, ticket_id, "closed")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/my/tickets/{ticket_id}")
    assert Ticket.get_by_id(ticket_id).status == "closed"
    page = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    assert "The ticket is closed." in page and "Reopen ticket" in page

    assert set_status(ann_browser, ticket_id, "open").status_code == 302
    assert Ticket.get_by_id(ticket_id).status == "open"

    for bad in ("on_hold", "deleted", ""):
        assert set_status(ann_browser, ticket_id, bad).status_code == 400
    assert ann_browser.post(f"/my/tickets/{ticket_id}/status", data={"status": "closed"}).status_code == 400
    assert Ticket.get_by_id(ticket_id).status == "open"

    set_status(ann_browser, ticket_id, "closed")
    assert send_reply(ann_browser, ticket_id, "Actually it is broken again").status_code == 302
    assert Ticket.get_by_id(ticket_id).status == "open"

    entries = list(AuditEntry.select().where(AuditEntry.record_type == "Ticket",
                                             AuditEntry.record_id == str(ticket_id),
                                             AuditEntry.action == "update").order_by(AuditEntry.seq))
    statuses = [json.loads(e.changes).get("status") for e in entries]
    assert [s for s in statuses if s] == [["open", "closed"], ["closed", "open"], ["open", "closed"],
                                          ["closed", "open"]]
    assert {e.actor_id for e in entries} == {ann.id}


# --- isolation ----------------------------------------------------------------

def test_another_end_user_gets_404_for_everything_of_mine(ctx, ann, ann_browser):
    ticket_id = ticket_id_from(submit(ann_browser, subject="Ann's private matter",
                                      files=[("ann.txt", b"ann only")]))
    assert send_reply(ann_browser, ticket_id, "reply", files=[("ann2.txt", b"ann too")]).status_code == 302
    ann_files = [a.id for a in Attachment.select()]
    bob = signed_in(ctx, factories.end_user(email="bob@example.com"))

    missing = bob.get("/my/tickets/2147483647")
    assert missing.status_code == 404
    resp = bob.get(f"/my/tickets/{ticket_id}")
    assert resp.status_code == 404
    assert main_of(resp) == main_of(missing)
    assert "Ann" not in resp.get_data(as_text=True)

    assert send_reply(bob, ticket_id, "I'm Bob").status_code == 404
    assert send_reply(bob, ticket_id, "I'm Bob", files=[("bob.txt", b"bob")]).status_code == 404
    assert set_status(bob, ticket_id, "closed").status_code == 404
    for file_id in ann_files:
        assert bob.get(f"/attachments/{file_id}").status_code == 404
        assert bob.get(f"/attachments/{file_id}?inline=1").status_code == 404
    assert listed_ids(bob.get("/my/tickets").get_data(as_text=True)) == []
    assert Comment.select().count() == 1 and Attachment.select().count() == 2
    assert Ticket.get_by_id(ticket_id).status == "open"
    assert len(stored_files(ctx)) == 2

    agent = signed_in(ctx, factories.agent())
    assert agent.get("/tickets/new").status_code == 403

    anonymous = ctx.test_client()
    for path in (f"/my/tickets/{ticket_id}", f"/attachments/{ann_files[0]}", "/my/tickets", "/tickets/new"):
        resp = anonymous.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path
    resp = anonymous.post(f"/my/tickets/{ticket_id}/status", data={"status": "closed"})
    assert resp.status_code in (302, 400)
    assert Ticket.get_by_id(ticket_id).status == "open"


# --- downloads ----------------------------------------------------------------

IMAGES = {
    "pixel.png": (png_bytes(), "image/png"),
    "photo.jpg": (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "image/jpeg"),
    "anim.gif": (b"GIF89a" + b"\x00" * 20, "image/gif"),
    "pic.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, "image/webp"),
}
FAKES = {
    "x.png": b"<html><script>alert(1)</script></html>",
    "fake.jpg": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
    "notes.txt": b"plain text",
}


def test_downloads_are_attachments_and_only_real_images_show_inline(ctx, ann_browser):
    files = [(n, c) for n, (c, _) in IMAGES.items()] + list(FAKES.items())
    ticket_id = ticket_id_from(submit(ann_browser, files=files))
    rows = {a.filename: a for a in Attachment.select().where(Attachment.ticket == ticket_id)}
    assert set(rows) == set(IMAGES) | set(FAKES)

    for name, content in list(FAKES.items()) + [(n, c) for n, (c, _) in IMAGES.items()]:
        resp = ann_browser.get(f"/attachments/{rows[name].id}")
        assert resp.status_code == 200 and resp.data == content, name
        assert resp.headers["Content-Disposition"] == f"attachment; filename={name}", name
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.mimetype == "application/octet-stream"

    for name, (content, mime) in IMAGES.items():
        resp = ann_browser.get(f"/attachments/{rows[name].id}?inline=1")
        assert resp.status_code == 200 and resp.data == content
        assert resp.mimetype == mime, name
        assert resp.headers["Content-Disposition"].startswith("inline"), name
        assert resp.headers["X-Content-Type-Options"] == "nosniff"

    for name, content in FAKES.items():
        resp = ann_browser.get(f"/attachments/{rows[name].id}?inline=1")
        assert resp.status_code == 200 and resp.data == content
        assert resp.mimetype == "application/octet-stream", name
        assert resp.headers["Content-Disposition"].startswith("attachment"), name
        assert resp.headers["X-Content-Type-Options"] == "nosniff"

    page = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    assert f"/attachments/{rows['pixel.png'].id}?inline=1" in page
    assert f"/attachments/{rows['x.png'].id}?inline=1" not in page


# --- notifications ------------------------------------------------------------

def agent_reply(browser, ticket_id, body, visibility):
    return post_form(browser, f"/agent/tickets/{ticket_id}/reply",
                     {"body": body, "visibility": visibility, "attachments": []},
                     form_page=f"/agent/tickets/{ticket_id}", content_type="multipart/form-data")


def test_requester_is_told_of_public_agent_replies_never_of_private_notes(ctx, ann, ann_browser):
    agent = factories.admin()
    desk = signed_in(ctx, agent)
    ticket_id = ticket_id_from(submit(ann_browser, subject="Broken screen"))
    before = len(mails_to(ann.email))

    resp = agent_reply(desk, ticket_id, "Internal: check warranty first", "private")
    assert resp.status_code == 302
    assert len(mails_to(ann.email)) == before
    assert not Comment.get(Comment.body == "Internal: check warranty first").is_public

    resp = agent_reply(desk, ticket_id, "We will send a new screen.", "public")
    assert resp.status_code == 302
    new = mails_to(ann.email)[before:]
    assert len(new) == 1
    assert new[0].subject == f"[#{ticket_id}] New reply: Broken screen"
    assert "We will send a new screen." in new[0].body and "warranty" not in new[0].body

    ticket_service.reply(agent, ticket_id, "Service-level private note", public=False)
    assert len(mails_to(ann.email)) == before + 1
    ticket_service.reply(agent, ticket_id, "Service-level public reply")
    assert len(mails_to(ann.email)) == before + 2
    assert all("private" not in m.body and "warranty" not in m.body for m in mails_to(ann.email))

    html = ann_browser.get(f"/my/tickets/{ticket_id}").get_data(as_text=True)
    assert "We will send a new screen." in html and "Service-level public reply" in html
    assert "warranty" not in html and "Service-level private note" not in html


# --- mail over a real SMTP server ---------------------------------------------

def test_acknowledgement_waits_for_smtp_and_is_delivered_when_it_is_back(make_app):
    port = free_port()
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT=5)
    with app_context(app):
        ann = factories.end_user(name="Ann Example", email="ann@example.com")
        browser = signed_in(app, ann)
        # the welcome mail is not what this test is about: only the acknowledgement is pending
        MailMessage.update(status="sent").where(MailMessage.status == "pending").execute()
        ticket_id = ticket_id_from(submit(browser, subject="Laptop will not boot"))
        assert Ticket.get_by_id(ticket_id).requester_id == ann.id  # saved although SMTP is down

        assert mail.deliver_pending(app.config) == (0, 1)
        ack = mails_to(ann.email, f"[#{ticket_id}]")[0]
        assert ack.status == "pending" and ack.attempts == 1 and ack.last_error
        assert ack.next_attempt_at > utcnow()
        assert mail.deliver_pending(app.config) == (0, 0)  # not due yet: nothing tried

        collector = Collector()
        controller = Controller(collector, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            MailMessage.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).execute()
            sent, failed = mail.deliver_pending(app.config)
        finally:
            controller.stop()
        assert (sent, failed) == (1, 0)
        ack = MailMessage.get_by_id(ack.id)
        assert ack.status == "sent" and ack.attempts == 2 and ack.sent_at is not None

        [message] = collector.messages()
        assert message["Subject"] == f"[#{ticket_id}] We received your request: Laptop will not boot"
        assert message["To"] == "ann@example.com" and message["From"] == "help@desk.test"
        assert f"/my/tickets/{ticket_id}" in message.get_content()
        assert mail.deliver_pending(app.config) == (0, 0)  # nothing sent twice
