"""Outgoing mail: queued in the database with the action that causes it, then
delivered by a job over SMTP, or into the outbox (``outbox/`` in the file
store) when no SMTP host is set."""
from __future__ import annotations

import base64
import datetime as dt
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import make_msgid
from typing import Iterator

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.db import write_transaction
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import MailMessage
from desk.models import User
from desk.models import utcnow
from desk.services import storage
from desk.services import mail_settings

MAX_ATTEMPTS = 20
OUTBOX = "outbox/"


def queue(recipient: str, subject: str, body: str, subject_id: int | None = None) -> MailMessage:
    """Queue a message (inside the caller's transaction, if any)."""
    with write_transaction():
        return MailMessage.create(recipient=recipient, subject=subject[:255], body=body,
                                  subject_id=subject_id)


def _message(config: dict, row: MailMessage) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = config["MAIL_FROM"]
    msg["To"] = row.recipient
    msg["Subject"] = " ".join(row.subject.split())  # one line, whatever was queued
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=config["MAIL_FROM"].rpartition("@")[2] or "desk")
    msg.set_content(row.body)
    return msg


def _write_outbox(config: dict, row: MailMessage, msg: EmailMessage) -> None:
    key = f"{OUTBOX}{row.created_at:%Y%m%d-%H%M%S}-{row.id}.eml"
    storage.of(config).put_bytes(key, bytes(msg))


def outbox_messages(config: dict) -> Iterator[tuple[str, bytes]]:
    """(key, raw message) of every mail in the outbox, oldest first."""
    store = storage.of(config)
    for info in store.list(OUTBOX):
        if info.key.endswith(".eml"):
            try:
                yield info.key, store.read_bytes(info.key)
            except FileNotFoundError:
                continue


def remove_from_outbox(config: dict, key: str) -> None:
    if not key.startswith(OUTBOX):
        raise ValueError("not an outbox key")
    storage.of(config).delete(key)


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """Log in; AUTH PLAIN in UTF-8 when the credentials are not ASCII
    (smtplib only encodes ASCII; RFC 4616 allows UTF-8)."""
    if (user + password).isascii():
        smtp.login(user, password)
        return
    smtp.ehlo_or_helo_if_needed()
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, reply = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _send_smtp(config: dict, msg: EmailMessage) -> None:
    with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"]) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["SMTP_USER"]:
            _login(smtp, config["SMTP_USER"], config["SMTP_PASSWORD"])
        smtp.send_message(msg)


def deliver_pending(config: dict, limit: int = 50) -> tuple[int, int]:
    """Send due messages; failures are retried later with growing delays.
    Returns (sent, failed) for this run."""
    config = mail_settings.effective(config)
    now = utcnow()
    due = list(MailMessage.select()
               .where(MailMessage.status == "pending", MailMessage.next_attempt_at <= now)
               .order_by(MailMessage.id).limit(limit))
    sent = failed = 0
    for row in due:
        try:
            msg = _message(config, row)
        except Exception as exc:  # noqa: BLE001 - a message that cannot be built never will be
            failed += 1
            _failed(row, exc, permanent=True)
            continue
        try:
            if config["SMTP_HOST"]:
                _send_smtp(config, msg)
            else:
                _write_outbox(config, row, msg)
        except (smtplib.SMTPException, UnicodeError) as exc:
            failed += 1
            _failed(row, exc)
            continue
        except OSError as exc:
            # The server or the folder is unreachable: try the rest next run
            # rather than wait out a timeout for every message now.
            failed += 1
            _failed(row, exc)
            break
        sent += 1
        with write_transaction():
            (MailMessage.update(status="sent", sent_at=utcnow(), attempts=row.attempts + 1)
             .where(MailMessage.id == row.id).execute())
    return sent, failed


def _failed(row: MailMessage, exc: Exception, permanent: bool = False) -> None:
    attempts = row.attempts + 1
    delay = dt.timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))
    status = "failed" if permanent or attempts >= MAX_ATTEMPTS else "pending"
    with write_transaction():
        (MailMessage.update(attempts=attempts, next_attempt_at=utcnow() + delay,
                            last_error=str(exc)[:500], status=status)
         .where(MailMessage.id == row.id).execute())


def send_test(admin: User, config: dict, recipient: str, ip: str = "") -> str:
    """Send a test message now with the effective settings (not queued). Returns
    where it went: "smtp" or "outbox". InvalidInput says what the server said."""
    policy.require(admin, "settings:manage")
    recipient = (recipient or "").strip()
    if not mail_settings.ADDRESS.fullmatch(recipient):
        raise InvalidInput(_l("Enter a valid email address."))
    config = mail_settings.effective(config)
    row = MailMessage(recipient=recipient, subject=str(_l("desk test mail")),
                      body=str(_l("This is a test mail from desk. Mail reaches you.")),
                      created_at=utcnow(), id=0)
    msg = _message(config, row)
    try:
        if config["SMTP_HOST"]:
            _send_smtp(config, msg)
        else:
            _write_outbox(config, row, msg)
    except (smtplib.SMTPException, OSError, UnicodeError) as exc:
        raise InvalidInput(_l("The test mail was not sent: %(error)s", error=str(exc)[:300])) from None
    where = "smtp" if config["SMTP_HOST"] else "outbox"
    audit.record(Actor.of(admin, ip), "test_mail", "Setting", mail_settings.KEY,
                 details={"via": where})
    return where
