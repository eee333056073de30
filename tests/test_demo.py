"""``app.py demo``: a sample help center made through the services, in English
and Chinese, that people can sign in to; it refuses an instance with data."""
from __future__ import annotations

import re

from click.testing import CliRunner

from desk import audit
from desk.cli import cli
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import ErasureRequest
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import storage
from tests import factories
from tests.conftest import browser
from tests.conftest import login


def run_demo(app):
    return CliRunner().invoke(cli, ["demo"], obj={"app": app})


def test_demo_fills_an_empty_instance_people_can_use(ctx):
    result = run_demo(ctx)
    assert result.exit_code == 0, result.output
    accounts = re.findall(r"^  (Administrator|Agent|Light Agent|End user)\s+(\S+)\s+(\S+)\s+(.+)$",
                          result.output, re.M)
    roles = {role for role, *_ in accounts}
    assert roles == {"Administrator", "Agent", "Light Agent", "End user"}
    # Every status, threads with public replies and private notes, files on disk.
    live = Ticket.select().where(Ticket.deleted_at.is_null())
    assert {t.status for t in live} == {"open", "on_hold", "closed"}
    assert {t.priority for t in live} >= {"low", "normal", "high", "urgent"}
    comments = Comment.select().where(Comment.deleted_at.is_null())
    assert {c.is_public for c in comments} == {True, False}
    stored = list(Attachment.select())
    assert len(stored) >= 5
    for row in stored:
        assert storage.of(ctx.config).exists(files.key_of(row.stored_name))
    assert any(re.search(r"[\u4e00-\u9fff]", t.subject) for t in live)
    assert any(re.search(r"[\u4e00-\u9fff]", u.name) for u in User.select())
    # The recycle bin holds a ticket, a comment and a contact; one person is erased.
    assert Ticket.select().where(Ticket.deleted_at.is_null(False)).count() == 1
    assert Comment.select().where(Comment.deleted_at.is_null(False)).count() == 1
    assert User.select().where(User.deleted_at.is_null(False), User.anonymized_at.is_null()).count() == 1
    done = ErasureRequest.get(ErasureRequest.status == "done")
    assert User.get_by_id(done.user_id).name.startswith("Deleted user")
    assert AuditEntry.select().count() > 50
    ok, message = audit.verify()
    assert ok, message
    # The printed passwords work, for staff and customers alike.
    by_role = {role: (email, password) for role, email, password, _ in accounts}
    for role, landing in (("Administrator", "/agent/tickets"), ("End user", "/my/tickets")):
        email, password = by_role[role]
        resp = login(browser(ctx), email, password)
        assert resp.status_code == 302 and resp.headers["Location"].endswith(landing), role


def test_demo_refuses_an_instance_with_data(ctx):
    factories.end_user(name="Real Customer", email="real@example.com")
    before = AuditEntry.select().count()
    result = run_demo(ctx)
    assert result.exit_code == 1
    assert "already has data" in result.output
    assert AuditEntry.select().count() == before
    assert User.select().count() == 1
