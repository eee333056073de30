"""A form sent twice (two quick clicks, a reload) makes one ticket or one
reply: the new-ticket and reply forms carry a one-time key, and the second
send answers with what the first one made, also when both arrive at once."""
from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import pytest

from desk.db import db
from desk.models import Attachment
from desk.models import Comment
from desk.models import MailMessage
from desk.models import SubmittedForm
from desk.models import Ticket
from tests import factories
from tests.conftest import CSRF_RE
from tests.conftest import signed_in

FORM_KEY_RE = re.compile(r'name="form_key" type="hidden" value="([^"]+)"')


def form_fields(client, path: str) -> dict:
    """The hidden fields of the form on ``path``, as the browser sends them."""
    html = client.get(path).get_data(as_text=True)
    return {"csrf_token": CSRF_RE.search(html).group(1), "form_key": FORM_KEY_RE.search(html).group(1)}


def send(client, path: str, hidden: dict, **fields):
    data = {**hidden, **fields, "attachments": [(io.BytesIO(b"photo bytes"), "photo.png")]}
    return client.post(path, data=data, content_type="multipart/form-data")


def stored_files(app) -> list[Path]:
    root = Path(app.config["DATA_DIR"]) / "attachments"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def ann(ctx):
    return factories.end_user(name="Ann Example", email="ann@example.com")


def test_a_new_ticket_form_sent_twice_makes_one_ticket(ctx, ann):
    client = signed_in(ctx, ann)
    hidden = form_fields(client, "/tickets/new")
    first = send(client, "/tickets/new", hidden, subject="Printer", description="It smokes.")
    second = send(client, "/tickets/new", hidden, subject="Printer", description="It smokes.")
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert Ticket.select().count() == 1 and Attachment.select().count() == 1
    assert len(stored_files(ctx)) == 1
    acks = MailMessage.select().where(MailMessage.recipient == "ann@example.com",
                                      MailMessage.subject.contains("Printer"))
    assert acks.count() == 1
    # A new form (a new key) is a new ticket.
    again = send(client, "/tickets/new", form_fields(client, "/tickets/new"), subject="Printer",
                 description="It smokes again.")
    assert again.status_code == 302 and Ticket.select().count() == 2
    assert SubmittedForm.select().count() == 2


def test_a_form_with_a_refused_send_can_be_corrected_and_sent(ctx, ann):
    client = signed_in(ctx, ann)
    hidden = form_fields(client, "/tickets/new")
    assert send(client, "/tickets/new", hidden, subject="", description="x").status_code == 400
    assert send(client, "/tickets/new", hidden, subject="Fixed", description="x").status_code == 302
    assert Ticket.select().count() == 1


def test_a_reply_sent_twice_is_one_reply_from_either_side(ctx, ann):
    ticket = factories.ticket(ann, "Printer")
    client = signed_in(ctx, ann)
    path = f"/my/tickets/{ticket.id}"
    hidden = form_fields(client, path)
    for _ in range(2):
        assert send(client, path, hidden, body="Any news?").status_code == 302
    assert Comment.select().where(Comment.ticket == ticket.id).count() == 1

    agent = factories.admin(name="Ada Admin", email="ada@example.com")
    desk = signed_in(ctx, agent)
    hidden = form_fields(desk, f"/agent/tickets/{ticket.id}")
    for _ in range(2):
        resp = send(desk, f"/agent/tickets/{ticket.id}/reply", hidden, body="On it.",
                    visibility="public")
        assert resp.status_code == 302
    assert Comment.select().where(Comment.ticket == ticket.id).count() == 2
    told = MailMessage.select().where(MailMessage.recipient == "ann@example.com",
                                      MailMessage.body.contains("On it."))
    assert told.count() == 1


def test_two_sends_at_the_same_moment_make_one_ticket(ctx, ann):
    clients = [signed_in(ctx, ann) for _ in range(2)]
    hidden = form_fields(clients[0], "/tickets/new")
    hidden["csrf_token"] = form_fields(clients[1], "/tickets/new")["csrf_token"]  # per browser
    start = threading.Barrier(2)
    answers = []

    def double_click(client, token):
        start.wait()
        with ctx.app_context():
            answers.append(send(client, "/tickets/new", {**hidden, "csrf_token": token},
                                subject="Printer", description="It smokes."))
            if not db.is_closed():
                db.close()

    tokens = [form_fields(c, "/tickets/new")["csrf_token"] for c in clients]
    threads = [threading.Thread(target=double_click, args=(c, t)) for c, t in zip(clients, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [302, 302]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    assert Ticket.select().count() == 1 and Attachment.select().count() == 1
