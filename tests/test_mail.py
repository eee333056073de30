"""Outgoing mail: the queue, the outbox folder and real SMTP delivery.

SMTP is a real aiosmtpd server on 127.0.0.1; nothing is mocked.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult
from aiosmtpd.smtp import LoginPassword

from desk.db import db
from desk.models import MailMessage
from desk.models import utcnow
from desk.services import mail
from tests.smtp import Collector
from tests.smtp import free_port
from tests.smtp import smtp_server

# aiosmtpd warns (rightly) when a test server takes AUTH without TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SUBJECT = "工单 #12 已更新 — ticket updated"
BODY = "您好，Ann！\n\n您的工单已有新的回复。\nYour ticket has a new reply.\n"


# --- a real SMTP server -------------------------------------------------------

@contextlib.contextmanager
def app_with(make_app, **overrides):
    """An app context on this test's database with the given settings."""
    app = make_app(**overrides)
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            yield app
        finally:
            if not db.is_closed():
                db.close()


def smtp_settings(port: int, **extra) -> dict:
    return dict(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT=5, **extra)


def make_due(row_id: int) -> None:
    MailMessage.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(
        MailMessage.id == row_id).execute()


def pending_count() -> int:
    return MailMessage.select().where(MailMessage.status == "pending").count()


# --- queueing -----------------------------------------------------------------

def test_queue_stores_a_pending_message_due_now(ctx):
    row = mail.queue("ann@example.com", SUBJECT, BODY, subject_id=7)
    stored = MailMessage.get_by_id(row.id)
    assert stored.status == "pending"
    assert stored.attempts == 0
    assert stored.subject == SUBJECT and stored.body == BODY
    assert stored.subject_id == 7
    assert stored.next_attempt_at <= utcnow()
    assert stored.sent_at is None


def test_queue_truncates_a_long_subject(ctx):
    row = mail.queue("ann@example.com", "长" * 300, BODY)
    assert MailMessage.get_by_id(row.id).subject == "长" * 255


def test_queued_mail_rolls_back_with_the_action(ctx):
    """Queued in the caller's transaction: if the action fails, no mail goes out."""
    with pytest.raises(RuntimeError):
        with db.atomic():
            mail.queue("ann@example.com", SUBJECT, BODY)
            raise RuntimeError("the action failed")
    assert MailMessage.select().count() == 0


# --- outbox folder (no SMTP host) -----------------------------------------------

def test_without_smtp_host_mail_goes_to_the_outbox_once(ctx, tmp_path):
    assert not ctx.config["SMTP_HOST"]
    first = mail.queue("ann@example.com", SUBJECT, BODY)
    second = mail.queue("bob@example.com", "Second message", "Plain ASCII body.\n")

    assert mail.deliver_pending(ctx.config) == (2, 0)

    outbox = tmp_path / "instance" / "outbox"
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    assert not list(outbox.glob("*.tmp"))
    by_to = {}
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        by_to[str(msg["To"])] = (path, msg)
    assert set(by_to) == {"ann@example.com", "bob@example.com"}

    path, msg = by_to["ann@example.com"]
    assert path.name.endswith(f"-{first.id}.eml")
    assert str(msg["Subject"]) == SUBJECT
    assert str(msg["From"]) == "help@desk.test"
    assert msg["Date"] and msg["Message-ID"]
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content() == BODY
    # Headers in the file itself are RFC 2047-encoded ASCII, readable anywhere.
    raw_headers = path.read_bytes().split(b"\n\n", 1)[0]
    raw_headers.decode("ascii")

    path, msg = by_to["bob@example.com"]
    assert path.name.endswith(f"-{second.id}.eml")
    assert str(msg["Subject"]) == "Second message"
    assert msg.get_content() == "Plain ASCII body.\n"

    for row in MailMessage.select():
        assert row.status == "sent"
        assert row.attempts == 1
        assert row.sent_at is not None
        assert row.last_error == ""

    # Running again sends nothing twice.
    assert mail.deliver_pending(ctx.config) == (0, 0)
    assert len(list(outbox.glob("*.eml"))) == 2


def test_deliver_pending_respects_the_limit_and_order(ctx, tmp_path):
    rows = [mail.queue(f"user{i}@example.com", f"Message {i}", "body\n") for i in range(5)]
    assert mail.deliver_pending(ctx.config, limit=2) == (2, 0)
    sent = [r.id for r in MailMessage.select().where(MailMessage.status == "sent")]
    assert sorted(sent) == [rows[0].id, rows[1].id]
    assert mail.deliver_pending(ctx.config, limit=2) == (2, 0)
    assert mail.deliver_pending(ctx.config, limit=2) == (1, 0)
    assert pending_count() == 0
    assert len(list((tmp_path / "instance" / "outbox").glob("*.eml"))) == 5


def test_messages_not_yet_due_wait(ctx, tmp_path):
    row = mail.queue("ann@example.com", SUBJECT, BODY)
    MailMessage.update(next_attempt_at=utcnow() + dt.timedelta(minutes=5)).where(
        MailMessage.id == row.id).execute()
    assert mail.deliver_pending(ctx.config) == (0, 0)
    assert MailMessage.get_by_id(row.id).status == "pending"
    make_due(row.id)
    assert mail.deliver_pending(ctx.config) == (1, 0)


def test_unwritable_outbox_is_a_failure_that_is_retried(ctx, tmp_path):
    """An outbox that cannot be written (a file where the folder should be) keeps the mail."""
    outbox = tmp_path / "instance" / "outbox"
    outbox.write_text("not a folder")
    row = mail.queue("ann@example.com", SUBJECT, BODY)
    assert mail.deliver_pending(ctx.config) == (0, 1)
    stored = MailMessage.get_by_id(row.id)
    assert stored.status == "pending" and stored.attempts == 1 and stored.last_error

    outbox.unlink()
    make_due(row.id)
    assert mail.deliver_pending(ctx.config) == (1, 0)
    assert len(list(outbox.glob("*.eml"))) == 1


# --- SMTP -----------------------------------------------------------------------

def test_smtp_delivery(make_app):
    handler = Collector()
    with smtp_server(handler) as server, app_with(make_app, **smtp_settings(server.port)) as app:
        row = mail.queue("ann@example.com", SUBJECT, BODY)
        assert mail.deliver_pending(app.config) == (1, 0)

        assert len(handler.envelopes) == 1
        envelope = handler.envelopes[0]
        assert envelope.mail_from == "help@desk.test"
        assert envelope.rcpt_tos == ["ann@example.com"]
        msg = handler.messages()[0]
        assert str(msg["From"]) == "help@desk.test"
        assert str(msg["To"]) == "ann@example.com"
        assert str(msg["Subject"]) == SUBJECT
        assert msg.get_content_charset() == "utf-8"
        assert msg.get_content().replace("\r\n", "\n") == BODY  # CRLF on the wire

        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "sent" and stored.attempts == 1 and stored.sent_at
        # Nothing is written to the outbox when SMTP is configured.
        assert not list((Path(app.config["DATA_DIR"]) / "outbox").glob("*"))

        assert mail.deliver_pending(app.config) == (0, 0)
        assert len(handler.envelopes) == 1


def test_unreachable_smtp_server_never_loses_mail(make_app):
    port = free_port()  # nothing listens here (yet)
    with app_with(make_app, **smtp_settings(port)) as app:
        row = mail.queue("ann@example.com", SUBJECT, BODY)
        before = utcnow()
        assert mail.deliver_pending(app.config) == (0, 1)

        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "pending"
        assert stored.attempts == 1
        assert stored.last_error  # e.g. "[Errno 111] Connection refused"
        assert stored.sent_at is None
        first_delay = stored.next_attempt_at - before
        assert dt.timedelta(seconds=25) <= first_delay <= dt.timedelta(seconds=40)

        # Not due yet: the next run leaves it alone.
        assert mail.deliver_pending(app.config) == (0, 0)
        assert MailMessage.get_by_id(row.id).attempts == 1

        # Still down when due: the delay grows.
        make_due(row.id)
        before = utcnow()
        assert mail.deliver_pending(app.config) == (0, 1)
        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "pending" and stored.attempts == 2
        assert stored.next_attempt_at - before > first_delay

        # The server comes up on that same port; once due, the mail is delivered.
        handler = Collector()
        with smtp_server(handler, port=port):
            assert mail.deliver_pending(app.config) == (0, 0)  # not due yet
            assert handler.envelopes == []
            make_due(row.id)
            assert mail.deliver_pending(app.config) == (1, 0)

        assert [e.rcpt_tos for e in handler.envelopes] == [["ann@example.com"]]
        assert str(handler.messages()[0]["Subject"]) == SUBJECT
        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "sent" and stored.attempts == 3
        assert pending_count() == 0


@pytest.mark.parametrize("where, reply", [
    ("rcpt", "451 4.3.0 try later"),
    ("rcpt", "550 5.1.1 no such mailbox"),
    ("data", "451 4.3.0 try later"),
    ("data", "554 5.6.0 rejected"),
])
def test_smtp_error_replies_are_failures_that_are_retried(make_app, where, reply):
    handler = Collector(**{f"{where}_reply": reply})
    with smtp_server(handler) as server, app_with(make_app, **smtp_settings(server.port)) as app:
        row = mail.queue("ann@example.com", SUBJECT, BODY)
        assert mail.deliver_pending(app.config) == (0, 1)
        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "pending"
        assert stored.attempts == 1
        assert reply.split()[0] in stored.last_error
        assert stored.next_attempt_at > utcnow()
        assert handler.envelopes == []

        # The server recovers: the message goes out on the next due run.
        handler.rcpt_reply = handler.data_reply = None
        make_due(row.id)
        assert mail.deliver_pending(app.config) == (1, 0)
        assert [e.rcpt_tos for e in handler.envelopes] == [["ann@example.com"]]
        assert MailMessage.get_by_id(row.id).status == "sent"


def test_one_failing_message_does_not_hold_up_the_others(make_app):
    class RejectOne(Collector):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("bounce"):
                return "451 try later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    handler = RejectOne()
    with smtp_server(handler) as server, app_with(make_app, **smtp_settings(server.port)) as app:
        mail.queue("ann@example.com", "one", "1\n")
        bounce = mail.queue("bounce@example.com", "two", "2\n")
        mail.queue("bob@example.com", "three", "3\n")
        assert mail.deliver_pending(app.config) == (2, 1)
        assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == ["ann@example.com",
                                                                     "bob@example.com"]
        assert [r.id for r in MailMessage.select().where(MailMessage.status == "pending")] == [
            bounce.id]


def test_gives_up_only_after_max_attempts_and_keeps_the_row(make_app):
    with app_with(make_app, **smtp_settings(free_port())) as app:
        row = mail.queue("ann@example.com", SUBJECT, BODY)
        MailMessage.update(attempts=mail.MAX_ATTEMPTS - 2).where(MailMessage.id == row.id).execute()
        assert mail.deliver_pending(app.config) == (0, 1)
        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "pending" and stored.attempts == mail.MAX_ATTEMPTS - 1
        # Back-off is capped at an hour.
        assert stored.next_attempt_at - utcnow() <= dt.timedelta(hours=1)

        make_due(row.id)
        assert mail.deliver_pending(app.config) == (0, 1)
        stored = MailMessage.get_by_id(row.id)
        assert stored.status == "failed" and stored.attempts == mail.MAX_ATTEMPTS
        assert stored.last_error and stored.body == BODY  # kept for an admin to see

        make_due(row.id)
        assert mail.deliver_pending(app.config) == (0, 0)


# --- authentication and STARTTLS ------------------------------------------------------

class Authenticator:
    def __init__(self, user: str, password: str):
        self.user, self.password = user.encode(), password.encode()
        self.attempts = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.attempts.append((mechanism, auth_data.login))
        ok = auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


def test_smtp_login(make_app):
    handler = Collector()
    auth = Authenticator("desk", "s3cret password")
    with smtp_server(handler, authenticator=auth, auth_required=True,
                     auth_require_tls=False) as server:
        with app_with(make_app, **smtp_settings(server.port, SMTP_USER="desk",
                                                SMTP_PASSWORD="s3cret password")) as app:
            mail.queue("ann@example.com", SUBJECT, BODY)
            assert mail.deliver_pending(app.config) == (1, 0)
    assert auth.attempts and auth.attempts[-1][1] == b"desk"
    assert [e.rcpt_tos for e in handler.envelopes] == [["ann@example.com"]]


def test_non_ascii_smtp_password_does_not_crash_delivery(make_app):
    handler = Collector()
    auth = Authenticator("desk", "pässword")
    with smtp_server(handler, authenticator=auth, auth_required=True,
                     auth_require_tls=False) as server:
        with app_with(make_app, **smtp_settings(server.port, SMTP_USER="desk",
                                                SMTP_PASSWORD="pässword")) as app:
            row = mail.queue("ann@example.com", SUBJECT, BODY)
            sent, failed = mail.deliver_pending(app.config)
            stored = MailMessage.get_by_id(row.id)
            assert (sent, failed) == (1, 0) and stored.status == "sent"
    assert [e.rcpt_tos for e in handler.envelopes] == [["ann@example.com"]]


def test_smtp_wrong_password_is_a_failure_that_is_retried(make_app):
    handler = Collector()
    auth = Authenticator("desk", "right")
    with smtp_server(handler, authenticator=auth, auth_required=True,
                     auth_require_tls=False) as server:
        with app_with(make_app, **smtp_settings(server.port, SMTP_USER="desk",
                                                SMTP_PASSWORD="wrong")) as app:
            row = mail.queue("ann@example.com", SUBJECT, BODY)
            assert mail.deliver_pending(app.config) == (0, 1)
            stored = MailMessage.get_by_id(row.id)
            assert stored.status == "pending" and stored.attempts == 1
            assert "535" in stored.last_error
    assert auth.attempts
    assert handler.envelopes == []


def test_smtp_without_login_is_refused_by_a_server_that_requires_it(make_app):
    handler = Collector()
    auth = Authenticator("desk", "right")
    with smtp_server(handler, authenticator=auth, auth_required=True,
                     auth_require_tls=False) as server:
        with app_with(make_app, **smtp_settings(server.port)) as app:
            row = mail.queue("ann@example.com", SUBJECT, BODY)
            assert mail.deliver_pending(app.config) == (0, 1)
            assert MailMessage.get_by_id(row.id).status == "pending"
    assert handler.envelopes == []


def test_starttls_required_but_not_offered_does_not_send_in_clear(make_app):
    """SMTP_STARTTLS on and a server without STARTTLS: the mail is held back, not sent in clear."""
    handler = Collector()
    with smtp_server(handler) as server:
        with app_with(make_app, **smtp_settings(server.port, SMTP_STARTTLS=True)) as app:
            row = mail.queue("ann@example.com", SUBJECT, BODY)
            assert mail.deliver_pending(app.config) == (0, 1)
            stored = MailMessage.get_by_id(row.id)
            assert stored.status == "pending" and "STARTTLS" in stored.last_error
    assert handler.envelopes == []


# --- a message that cannot be built -----------------------------------------------------

def test_a_message_that_cannot_be_built_does_not_block_the_queue(ctx, tmp_path):
    bad = mail.queue("ann@example.com\r\nBcc: everyone@example.com", SUBJECT, BODY)
    good = mail.queue("bob@example.com", SUBJECT, BODY)
    sent, failed = mail.deliver_pending(ctx.config)
    assert (sent, failed) == (1, 1)
    assert MailMessage.get_by_id(good.id).status == "sent"
    stored = MailMessage.get_by_id(bad.id)
    assert stored.status == "failed" and stored.last_error


def test_a_multi_line_subject_is_sent_on_one_line(ctx):
    row = mail.queue("ann@example.com", "Printer\r\nBcc: everyone@example.com", BODY)
    assert mail.deliver_pending(ctx.config) == (1, 0)
    outbox = list((Path(ctx.config["DATA_DIR"]) / "outbox").glob("*.eml"))
    message = email.message_from_bytes(outbox[0].read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Printer Bcc: everyone@example.com" and message["Bcc"] is None
    assert MailMessage.get_by_id(row.id).status == "sent"
