"""The purge: what waited in the recycle bin past the retention period goes for
good (rows, attachment rows and files), people past it are anonymized, in
batches of a bounded size, audited, once across processes (a lease on SQLite,
an advisory lock on PostgreSQL), by hand with ``python app.py purge``, and
whole after a real kill -9 in the middle."""
from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk.cli import cli
from desk.db import db
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import FileRemoval
from desk.models import Lease
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import attachments as files
from desk.services import leases
from desk.services import purge
from desk.services import storage
from desk.services import tickets as ticket_service
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
RETENTION = 60  # days, the default


# -- helpers -----------------------------------------------------------------

def upload(name: str, data: bytes = b"file body\n") -> files.Upload:
    return files.Upload(filename=name, stream=io.BytesIO(data))


def days_ago(n: float) -> dt.datetime:
    return utcnow() - dt.timedelta(days=n)


def deleted(row, when: dt.datetime, by=None):
    """Move a row to the recycle bin as of ``when`` (through the audit, as the app does)."""
    audit.update(audit.SYSTEM, row, deleted_at=when, deleted_by=getattr(by, "id", None))
    return row


def path_of(app, stored_name: str) -> Path:
    return storage.of(app.config).path(files.key_of(stored_name))


def stored_names(**where) -> list[str]:
    query = Attachment.select(Attachment.stored_name)
    for name, value in where.items():
        query = query.where(getattr(Attachment, name) == value)
    return [a.stored_name for a in query]


def files_on_disk(app) -> set[str]:
    root = Path(app.config["DATA_DIR"]) / "attachments"
    if not root.is_dir():
        return set()
    return {p.name for p in root.glob("*/*") if p.is_file()}


def purge_entries(record_type: str, record_id) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.record_type == record_type,
                                          AuditEntry.record_id == str(record_id),
                                          AuditEntry.action == "purge"))


def run_cli(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def in_thread(app, func, *args, **kwargs):
    """Run ``func`` in a thread of its own, with its own app context and DB connection."""
    out = {}

    def target():
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                out["value"] = func(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed back to the test
                out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


def expired_ticket(requester, subject: str, agent, when=None, comments: int = 1):
    """A ticket with a file, ``comments`` replies with a file each, deleted at ``when``."""
    ticket = ticket_service.submit(requester, subject, "Description of " + subject, None,
                                   [upload(f"{subject}.txt")])
    for n in range(comments):
        ticket_service.reply(agent, ticket.id, f"Reply {n} on {subject}", True, [upload(f"{subject}-{n}.txt")])
    return deleted(ticket, when or days_ago(RETENTION + 1), agent)


@pytest.fixture
def people(ctx):
    return SimpleNamespace(admin=factories.admin(name="Ada Admin"),
                           ann=factories.end_user(name="Ann Customer", email="ann@example.com"))


# -- what goes and what stays ---------------------------------------------------------

@pytest.fixture
def bin_contents(ctx, people):
    """Old and young deleted tickets, comments and people, and live ones."""
    admin, ann = people.admin, people.ann
    old_ticket = expired_ticket(ann, "old ticket", admin, comments=2)
    young_ticket = expired_ticket(ann, "young ticket", admin, when=days_ago(RETENTION - 1))
    live = ticket_service.submit(ann, "live ticket", "still here", None, [upload("live.txt")])
    old_comment = ticket_service.reply(admin, live.id, "old comment", True, [upload("old-comment.txt")])
    young_comment = ticket_service.reply(admin, live.id, "young comment", True, [upload("young-comment.txt")])
    live_comment = ticket_service.reply(admin, live.id, "live comment", True, [upload("live-comment.txt")])
    deleted(old_comment, days_ago(RETENTION + 5), admin)
    deleted(young_comment, days_ago(RETENTION - 5), admin)
    old_person = deleted(factories.end_user(name="Olga Oldleaver", email="olga@example.com"),
                         days_ago(RETENTION + 2), admin)
    young_person = deleted(factories.end_user(name="Yuri Youngleaver", email="yuri@example.com"),
                           days_ago(RETENTION - 20), admin)
    return SimpleNamespace(
        old_ticket=old_ticket, young_ticket=young_ticket, live=live, old_comment=old_comment,
        young_comment=young_comment, live_comment=live_comment, old_person=old_person,
        young_person=young_person,
        old_ticket_files=stored_names(ticket=old_ticket.id),
        old_ticket_comments=[c.id for c in Comment.select().where(Comment.ticket == old_ticket.id)],
        old_comment_files=stored_names(comment=old_comment.id))


def test_purge_removes_what_is_past_retention_with_its_files_and_leaves_the_rest(ctx, bin_contents):
    b = bin_contents
    assert len(b.old_ticket_files) == 3 and len(b.old_ticket_comments) == 2
    assert all(path_of(ctx, n).is_file() for n in b.old_ticket_files + b.old_comment_files)
    keep_files = (stored_names(ticket=b.young_ticket.id) + stored_names(ticket=b.live.id))
    keep_files = [n for n in keep_files if n not in b.old_comment_files]
    assert len(keep_files) == 2 + 3  # young ticket (ticket + reply), live (ticket + 2 live comments)
    assert purge.due() == {"tickets": 1, "comments": 1, "people": 1}

    report = purge.purge_expired(ctx.config)

    assert (report.tickets, report.comments, report.people, report.skipped) == (1, 1, 1, False)
    # the old ticket, its comments, its attachment rows and files: gone
    assert Ticket.get_or_none(Ticket.id == b.old_ticket.id) is None
    assert Comment.select().where(Comment.id.in_(b.old_ticket_comments)).count() == 0
    assert Comment.get_or_none(Comment.id == b.old_comment.id) is None
    gone = b.old_ticket_files + b.old_comment_files
    assert Attachment.select().where(Attachment.stored_name.in_(gone)).count() == 0
    for name in gone:
        assert not path_of(ctx, name).exists(), name
    assert FileRemoval.select().count() == 0
    # the young ones and the live ones: untouched, files and all
    assert Ticket.get_by_id(b.young_ticket.id).deleted_at is not None
    assert Comment.get_by_id(b.young_comment.id).deleted_at is not None
    assert Ticket.get_by_id(b.live.id).deleted_at is None
    assert Comment.get_by_id(b.live_comment.id).deleted_at is None
    for name in keep_files:
        assert path_of(ctx, name).is_file(), name
    assert Attachment.select().where(Attachment.stored_name.in_(keep_files)).count() == len(keep_files)
    # people past retention are anonymized (the row stays, pseudonymized); younger ones wait
    old_person = User.get_by_id(b.old_person.id)
    assert old_person.name == f"Deleted user {old_person.id}" and old_person.anonymized_at is not None
    assert "olga" not in old_person.email
    young_person = User.get_by_id(b.young_person.id)
    assert (young_person.name, young_person.anonymized_at) == ("Yuri Youngleaver", None)
    # one "purge" entry per purged ticket and comment, no values; the chain holds
    for record_type, record_id in (("Ticket", b.old_ticket.id), ("Comment", b.old_comment.id)):
        entries = purge_entries(record_type, record_id)
        assert len(entries) == 1 and entries[0].actor_id is None and entries[0].changes == "{}"
    assert not purge_entries("Ticket", b.young_ticket.id) and not purge_entries("Comment", b.young_comment.id)
    ok, message = audit.verify()
    assert ok, message

    # a second run finds nothing to do
    again = purge.purge_expired(ctx.config)
    assert (again.tickets, again.comments, again.people, again.files, again.orphans) == (0, 0, 0, 0, 0)
    assert purge.due() == {"tickets": 0, "comments": 0, "people": 0}


def test_a_shorter_retention_setting_makes_more_due(ctx, bin_contents):
    from desk.services import settings
    settings.put(audit.SYSTEM, "retention_days", RETENTION - 10)
    assert purge.due() == {"tickets": 2, "comments": 2, "people": 1}
    report = purge.purge_expired(ctx.config)
    assert (report.tickets, report.comments, report.people) == (2, 2, 1)
    assert Ticket.select().where(Ticket.deleted_at.is_null(False)).count() == 0
    assert Comment.select().where(Comment.deleted_at.is_null(False)).count() == 0
    assert User.get_by_id(bin_contents.young_person.id).anonymized_at is None  # 40 days: not yet




def test_several_people_past_retention_are_all_anonymized(ctx, people, backend, request):
    leavers = [deleted(factories.end_user(name=f"Leaver {n}"), days_ago(RETENTION + 1 + n), people.admin)
               for n in range(3)]
    report = purge.purge_expired(ctx.config)
    assert report.people == 3
    for person in leavers:
        fresh = User.get_by_id(person.id)
        assert fresh.name == f"Deleted user {person.id}" and fresh.anonymized_at is not None
        assert not fresh.is_active
    assert User.get_by_id(people.ann.id).name == "Ann Customer"
    assert audit.verify()[0]




def test_the_audit_history_of_everything_purged_becomes_unreadable(ctx, bin_contents):
    b = bin_contents
    comment_ids = b.old_ticket_comments + [b.old_comment.id]
    attachment_ids = [a.id for a in Attachment.select().where(
        Attachment.stored_name.in_(b.old_ticket_files + b.old_comment_files))]
    live_ids = [a.id for a in Attachment.select().where(
        Attachment.ticket == b.live.id,
        Attachment.comment.is_null() | (Attachment.comment != b.old_comment.id))]

    def created(record_type, record_id) -> dict:
        entry = (AuditEntry.select().where(AuditEntry.record_type == record_type,
                                           AuditEntry.record_id == str(record_id),
                                           AuditEntry.action == "create").get())
        return audit.read_changes(entry)

    assert created("Ticket", b.old_ticket.id)["subject"] == [None, "old ticket"]
    purge.purge_expired(ctx.config)
    assert created("Ticket", b.old_ticket.id)["subject"] == [None, crypto.ERASED]
    assert created("Ticket", b.old_ticket.id)["description"] == [None, crypto.ERASED]
    # what lives on keeps its history
    assert created("Ticket", b.live.id)["subject"] == [None, "live ticket"]
    assert all(created("Attachment", i)["filename"][1] != crypto.ERASED for i in live_ids)
    # what went with the ticket (or with the comment) goes from the history too
    for comment_id in comment_ids:
        assert created("Comment", comment_id)["body"] == [None, crypto.ERASED], comment_id
    for attachment_id in attachment_ids:
        assert created("Attachment", attachment_id)["filename"] == [None, crypto.ERASED], attachment_id


def test_purge_works_in_batches_of_a_bounded_size(ctx, people):
    tickets = [expired_ticket(people.ann, f"t{n}", people.admin, comments=0) for n in range(8)]
    live = ticket_service.submit(people.ann, "live", "x")
    comments = []
    for n in range(4):
        comments.append(deleted(ticket_service.reply(people.admin, live.id, f"c{n}", True),
                                days_ago(RETENTION + 1)))
    calls = []
    report = purge.purge_expired(ctx.config, batch=3, progress=lambda name, n: calls.append((name, n)))
    assert (report.tickets, report.comments) == (8, 4)
    assert [c for c in calls if c[0] == "tickets"] == [("tickets", 3), ("tickets", 3), ("tickets", 2)]
    assert [c for c in calls if c[0] == "comments"] == [("comments", 3), ("comments", 1)]
    assert all(n <= 3 for _, n in calls)
    assert Ticket.select().where(Ticket.id.in_([t.id for t in tickets])).count() == 0
    assert all(len(purge_entries("Ticket", t.id)) == 1 for t in tickets)
    assert all(len(purge_entries("Comment", c.id)) == 1 for c in comments)
    assert audit.verify()[0]


# -- files whose rows are gone, and orphans ------------------------------------------

def test_noted_removals_are_finished_and_old_orphans_swept_but_fresh_ones_kept(ctx, people):
    live = ticket_service.submit(people.ann, "live", "x", None, [upload("live.txt")])
    live_file = stored_names(ticket=live.id)[0]
    # a file whose row went in a run that died before unlinking it
    noted = files.store(ctx.config, upload("noted.txt"), people.ann.id).stored_name
    FileRemoval.create(stored_name=noted)
    # a note whose file was already unlinked (the run died before deleting the note)
    already_gone = files.store(ctx.config, upload("gone.txt"), people.ann.id).stored_name
    FileRemoval.create(stored_name=already_gone)
    files.remove_file(ctx.config, already_gone)
    # files no row names: one from a crash long ago, one of an upload in progress
    old_orphan = files.store(ctx.config, upload("old-orphan.txt"), people.ann.id).stored_name
    fresh_orphan = files.store(ctx.config, upload("fresh-orphan.txt"), people.ann.id).stored_name
    two_hours_ago = time.time() - 2 * 3600
    for name in (old_orphan, live_file, noted):
        os.utime(path_of(ctx, name), (two_hours_ago, two_hours_ago))

    report = purge.purge_expired(ctx.config)

    assert report.files == 2 and report.orphans == 1
    assert not path_of(ctx, noted).exists()
    assert FileRemoval.select().count() == 0
    assert not path_of(ctx, old_orphan).exists()
    assert path_of(ctx, fresh_orphan).is_file()
    assert path_of(ctx, live_file).is_file()  # old, but its row names it
    assert files_on_disk(ctx) == {live_file, fresh_orphan}


# -- the command ----------------------------------------------------------------------

def test_purge_command_dry_run_counts_and_removes_nothing_then_purges(ctx, bin_contents):
    b = bin_contents
    before = files_on_disk(ctx)
    tickets_before, audit_before = Ticket.select().count(), AuditEntry.select().count()
    result = run_cli(ctx, "purge", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "past retention: 1 tickets, 1 comments, 1 people" in result.output
    assert "dry run: nothing removed" in result.output
    assert files_on_disk(ctx) == before
    assert Ticket.select().count() == tickets_before and AuditEntry.select().count() == audit_before
    assert User.get_by_id(b.old_person.id).anonymized_at is None

    result = run_cli(ctx, "purge", "--batch", "1")
    assert result.exit_code == 0, result.output
    assert "purged 1 tickets, 1 comments, anonymized 1 people" in result.output
    assert Ticket.get_or_none(Ticket.id == b.old_ticket.id) is None
    assert files_on_disk(ctx) == before - set(b.old_ticket_files) - set(b.old_comment_files)
    assert User.get_by_id(b.old_person.id).anonymized_at is not None
    result = run_cli(ctx, "purge")
    assert result.exit_code == 0 and "purged 0 tickets, 0 comments, anonymized 0 people" in result.output




def test_purge_command_reports_the_files_it_removed(ctx, bin_contents):
    b = bin_contents
    result = run_cli(ctx, "purge")
    assert result.exit_code == 0, result.output
    removed = len(b.old_ticket_files) + len(b.old_comment_files)
    assert f"removed {removed} files" in result.output, result.output


# -- once, across processes --------------------------------------------------------------

def test_two_purges_at_the_same_moment_purge_each_item_once(ctx, people):
    tickets = [expired_ticket(people.ann, f"t{n}", people.admin, comments=1) for n in range(6)]
    names = [n for t in tickets for n in stored_names(ticket=t.id)]
    barrier = threading.Barrier(2)
    reports = []

    def worker():
        barrier.wait(10)
        return purge.purge_expired(ctx.config, batch=2, pause=0.05)

    threads = [threading.Thread(target=lambda: reports.append(_capture(ctx, worker))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2
    for r in reports:
        if isinstance(r, BaseException):
            raise r
    worked = [r for r in reports if r.tickets]
    others = [r for r in reports if not r.tickets]
    assert len(worked) == 1 and worked[0].tickets == 6 and not worked[0].skipped
    assert len(others) == 1 and (others[0].skipped or others[0].total == 0)
    assert Ticket.select().where(Ticket.id.in_([t.id for t in tickets])).count() == 0
    for t in tickets:
        assert len(purge_entries("Ticket", t.id)) == 1, t.id
    assert not any(path_of(ctx, n).exists() for n in names)
    assert audit.verify()[0]
    assert Lease.select().where(Lease.name == purge.LOCK).count() == 0


def _capture(app, func):
    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            return func()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            return exc


def test_a_held_lock_or_a_busy_purge_makes_another_purge_skip(ctx, people):
    tickets = [expired_ticket(people.ann, f"t{n}", people.admin, comments=0) for n in range(3)]
    with leases.exclusive(purge.LOCK, "another-process", dt.timedelta(minutes=5)) as renew:
        assert renew is not None
        report = in_thread(ctx, purge.purge_expired, ctx.config)
        assert report.skipped and report.total == 0
        result = in_thread(ctx, run_cli, ctx, "purge")
        assert result.exit_code == 3 and "another purge is running" in result.output, result.output
        assert Ticket.select().where(Ticket.id.in_([t.id for t in tickets])).count() == 3
    # a purge busy in the middle of its batches makes another skip too
    busy, go_on, results = threading.Event(), threading.Event(), []

    def slow(name, n):
        busy.set()
        assert go_on.wait(30)

    first = threading.Thread(target=lambda: results.append(
        _capture(ctx, lambda: purge.purge_expired(ctx.config, batch=1, progress=slow))))
    first.start()
    try:
        assert busy.wait(30)
        second = in_thread(ctx, purge.purge_expired, ctx.config)
    finally:
        go_on.set()
        first.join(60)
    assert second.skipped and second.total == 0
    (report,) = results
    assert not isinstance(report, BaseException), report
    assert not report.skipped and report.tickets == 3
    assert all(len(purge_entries("Ticket", t.id)) == 1 for t in tickets)


# -- a real kill in the middle ---------------------------------------------------------------

class RerunRefused(AssertionError):
    """The run right after the kill did nothing (another purge seemed to hold the lock)."""




def _subprocess_env(data_dir: Path, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(DESK_DATA_DIR=str(data_dir), DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64")
    if database_url:
        env["DESK_DATABASE_URL"] = database_url
    return env


def _check_rows_and_files(app) -> None:
    """No attachment row without its file; no file without a row or a removal note."""
    on_disk = files_on_disk(app)
    rows = {a.stored_name for a in Attachment.select(Attachment.stored_name)}
    noted = {f.stored_name for f in FileRemoval.select(FileRemoval.stored_name)}
    assert rows <= on_disk, f"rows without files: {sorted(rows - on_disk)}"
    assert on_disk <= rows | noted, f"files without rows: {sorted(on_disk - rows - noted)}"


def test_a_killed_purge_leaves_rows_and_files_whole_and_a_second_run_finishes_it(
        make_app, backend, database_url, tmp_path, request):
    instance = tmp_path / "killed-instance"
    url = f"sqlite:///{instance / 'desk.db'}" if backend == "sqlite" else database_url
    app = make_app(DATA_DIR=str(instance), DATABASE_URL=url)
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin, ann = factories.admin(), factories.end_user()
        tickets = []
        for n in range(40):
            ticket = ticket_service.submit(ann, f"expired {n}", "x", None, [upload(f"e{n}.txt")])
            tickets.append(deleted(ticket, days_ago(RETENTION + 30), admin).id)
        live = ticket_service.submit(ann, "live", "x", None, [upload("live.txt")])
        doomed = set(stored_names()) - set(stored_names(ticket=live.id))
        assert len(doomed) == 40 and files_on_disk(app) >= doomed
        db.close()

    def remaining() -> int:
        with app.app_context():
            db.connect(reuse_if_open=True)
            return Ticket.select().where(Ticket.id.in_(tickets)).count()

    out, err = (tmp_path / "purge.out").open("wb"), (tmp_path / "purge.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "purge", "--batch", "5", "--pause", "0.3"], cwd=ROOT,
        env=_subprocess_env(instance, None if backend == "sqlite" else url),
        stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while remaining() > 40 - 2 * 5:  # wait for the first batches to go
            assert proc.poll() is None, (tmp_path / "purge.err").read_text()
            assert time.monotonic() < deadline, "the purge made no progress"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.close()
        err.close()
    assert proc.returncode == -signal.SIGKILL
    assert "purged" not in (tmp_path / "purge.out").read_text()  # it did not finish

    with app.app_context():
        db.connect(reuse_if_open=True)
        left = Ticket.select().where(Ticket.id.in_(tickets)).count()
        assert 0 < left <= 30
        _check_rows_and_files(app)
        for ticket_id in tickets:
            assert len(purge_entries("Ticket", ticket_id)) <= 1
        ok, message = audit.verify()
        assert ok, message

        # run it again, as an operator would, right away (PostgreSQL may need a
        # moment to notice the dead session and drop its advisory lock; a lease
        # row on SQLite is not going anywhere, so no waiting there)
        refused = False
        deadline = time.monotonic() + (5 if backend == "postgres" else 0)
        report = purge.purge_expired(app.config)
        while report.skipped and time.monotonic() < deadline:
            time.sleep(0.2)
            report = purge.purge_expired(app.config)
        if report.skipped:
            refused = True
            # the dead holder's lease runs out in the end: let it, and finish
            Lease.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
                Lease.name == purge.LOCK).execute()
            report = purge.purge_expired(app.config)
        assert not report.skipped
        assert report.tickets == left
        assert Ticket.select().where(Ticket.id.in_(tickets)).count() == 0
        assert Attachment.select().where(Attachment.stored_name.in_(list(doomed))).count() == 0
        assert not (files_on_disk(app) & doomed)
        assert FileRemoval.select().count() == 0
        _check_rows_and_files(app)
        assert Ticket.get_by_id(live.id).deleted_at is None
        assert path_of(app, stored_names(ticket=live.id)[0]).is_file()
        for ticket_id in tickets:
            assert len(purge_entries("Ticket", ticket_id)) == 1, ticket_id
        ok, message = audit.verify()
        assert ok, message
        if refused:
            raise RerunRefused("a purge run right after the kill was skipped: the dead "
                               "process's lease still held the lock")
