"""Hosting regions and the online move between stores (DESIGN promise 1).

A move copies a populated help center (every table, files, audit chain, an
erased person, queued mail) to another store while it keeps serving, verifies
it and switches; these tests check the copy row by row, the switch (the old
store refuses writes, app processes follow), bad input (exit status 2, nothing
changed), kills at every step followed by a rerun, rollback and the wipe.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk import textindex
from desk.cli import cli
from desk import db as database
from desk.db import db
from desk.db import open_database
from desk.models import AuditEntry
from desk.models import RegionState
from desk.models import Ticket
from desk.models import utcnow
from desk.models.search import INDEXED
from desk.models.search import trigram_index
from desk.services import departments
from desk.services import email_change
from desk.services import erasure
from desk.services import region_move
from desk.services import regions
from desk.services import replication
from desk.services import search
from desk.services import settings
from desk.services import tickets as ticket_service
from desk.services.attachments import Upload
from tests import factories
from tests.conftest import PG_URL
from tests.conftest import _pg_admin_connect
from tests.conftest import _with_database
from tests.conftest import signed_in
from tests.serverproc import ROOT
from tests.serverproc import DeskServer
from tests.serverproc import running_server
from tests.serverproc import csrf_token
from tests.serverproc import make_opener
from tests.serverproc import request as http_request


@pytest.fixture
def pg_store(request):
    """Makes fresh, empty PostgreSQL databases for target stores; drops them after."""
    if not PG_URL:
        request.getfixturevalue("pg_database")  # skips or fails like every PostgreSQL test
    made = []

    def make() -> str:
        name = f"desk_region_{uuid.uuid4().hex[:10]}"
        conn = _pg_admin_connect()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        made.append(name)
        return _with_database(PG_URL, name)
    yield make
    conn = _pg_admin_connect()
    with conn.cursor() as cur:
        for name in made:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def target_url(kind: str, tmp_path: Path, pg_store) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'target' / 'desk.db'}"
    return pg_store()


def run_cli(app, *args):
    result = CliRunner().invoke(cli, list(args), obj={"app": app})
    if result.exception and not isinstance(result.exception, SystemExit):
        import traceback
        traceback.print_exception(result.exception)
    return result


def upload(name: str, body: bytes) -> Upload:
    return Upload(name, io.BytesIO(body), "text/plain")


def populate(app) -> dict:
    """A small help center with something in every table that a move copies."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin("Ada Admin")
        agent = factories.agent("Alan Agent")
        dept = factories.department("Billing")
        ann = factories.end_user("Ann Customer", "ann@example.com")
        gone = factories.end_user("Gus Gone", "gus@example.com")
        made = []
        for n in range(12):
            t = ticket_service.submit(ann, f"Order {n} 订单", f"Line one\nline two {n}", None,
                                      [upload(f"note-{n}.txt", f"file {n} 内容".encode())])
            ticket_service.reply(admin, t.id, f"Reply {n} with \"quotes\"")
            made.append(t.id)
        ticket_service.submit(gone, "Please forget me", "call me on 555 0100", None,
                              [upload("gus.txt", b"gus file")])
        erasure.anonymize_now(audit.SYSTEM, gone)
        departments.add_member(admin, dept.id, agent.id)
        email_change.request_change(ann, "ann.new@example.com")
        settings.put(audit.SYSTEM, "retention_days", 45)
        ticket_service.delete_ticket(admin, made[-1])  # something in the recycle bin
        db.close()
    return {"tickets": made, "department": dept.id}


def table_counts(url: str) -> dict[str, int]:
    database = open_database(url)
    try:
        return replication.count_rows(database)
    finally:
        database.close()
        database.close_all()


def files_of(root: Path) -> dict[str, str]:
    found = {}
    for area in replication.FILE_AREAS:
        for path in (root / area).rglob("*"):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def region_config(name: str, url: str, files: Path) -> dict:
    return {"REGIONS": {name: {"database_url": url, "data_dir": str(files)}}}


TRIGRAM_INDEXES = {trigram_index(table, c) for table, columns in INDEXED.items() for c in columns}


def text_indexes(url: str) -> dict[str, tuple[bool, str]]:
    """The trigram indexes of a PostgreSQL store: name -> (valid, definition)."""
    database = open_database(url)
    try:
        return {name: (valid, definition) for name, valid, definition in database.execute_sql(
            "SELECT c.relname, x.indisvalid, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname LIKE '%%trgm'")}
    finally:
        database.close()
        database.close_all()


def assert_text_index_built(url: str) -> None:
    found = text_indexes(url)
    assert set(found) == TRIGRAM_INDEXES, found
    assert all(valid and "gin_trgm_ops" in definition for valid, definition in found.values()), found


def plant_invalid_index(url: str, name: str) -> None:
    """What a build killed inside PostgreSQL leaves: an INVALID index of that
    name (here a unique one over a constant, which fails on the second row)."""
    table = next(t for t, columns in INDEXED.items() if name in {trigram_index(t, c) for c in columns})
    database = open_database(url)
    try:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
        with pytest.raises(Exception, match="could not create unique index"):
            database.execute_sql(f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON "{table}" ((1))')
    finally:
        database.close()
        database.close_all()
    assert text_indexes(url)[name][0] is False


SEARCHES = ("订单", "line two 3", 'with "quotes"', "Order 1")


def search_results() -> dict[str, set[int]]:
    return {q: search.matching_ticket_ids(q) for q in SEARCHES}


@pytest.mark.parametrize("target_kind", ["sqlite", "postgres"])
def test_a_move_copies_every_row_and_file_then_switches(make_app, backend, target_kind, tmp_path,
                                                         pg_store):
    url = target_url(target_kind, tmp_path, pg_store)
    files = tmp_path / "eu-files"
    app = make_app(**region_config("eu", url, files))
    populate(app)
    source_url = app.config["DATABASE_URL"]
    source_files = files_of(Path(app.config["FILES_DIR"]))
    before = table_counts(source_url)
    core = ("department", "role", "user", "agent_department", "ticket", "comment", "attachment",
            "audit_entry", "audit_head", "setting", "subject_key", "mail_message",
            "email_change_request", "record_key", "erasure_request")
    assert all(before[name] > 0 for name in core), {k: before[k] for k in core if not before[k]}
    with app.app_context():
        found_before = search_results()
    assert all(found_before.values()), found_before

    result = run_cli(app, "region-migrate", "--to", "eu")
    assert result.exit_code == 0, result.output
    assert "moved from" in result.output
    if target_kind == "postgres":  # the trigram indexes come after the switch, and are there
        assert "text index (after the switch)" in result.output
        assert_text_index_built(url)

    # every row and every file is there, the same (plus the move's own two audit entries)
    after = table_counts(url)
    assert after.pop("audit_entry") == before.pop("audit_entry") + 2
    assert after == before
    assert files_of(files) == source_files
    # the process that moved follows the new store, and so does the next start
    assert app.config["DATABASE_URL"] == url
    pointer = json.loads((Path(app.config["DATA_DIR"]) / "region.json").read_text())
    assert pointer["name"] == "eu" and pointer["database_url"] == url
    assert oct((Path(app.config["DATA_DIR"]) / "region.json").stat().st_mode)[-3:] == "600"
    with app.app_context():
        ok, message = audit.verify()
        assert ok, message
        moved = AuditEntry.select().where(AuditEntry.action == "region.moved").get()
        assert json.loads(moved.changes)["to"] == "eu"
        assert RegionState.get_by_id(1).status == "active"
        # the text index of the new store knows every copied row
        textindex.check()
        assert search_results() == found_before
        assert RegionState.get_by_id(1).phase == "done"
        # the new store takes writes
        ann = factories.end_user("Newcomer")
        assert Ticket.select().count() > 0 and ann.id
    # the old store says where the help center went, and refuses writes
    old = open_database(source_url)
    assert old.execute_sql("SELECT status FROM region_state").fetchone()[0] == "moved"
    with pytest.raises(Exception, match="moved to another region"):
        with old.atomic():
            old.execute_sql("UPDATE ticket SET subject = 'split brain'")
    old.close()
    old.close_all()


def test_the_checksums_agree_across_engines_and_see_any_change(make_app, backend, tmp_path, pg_store):
    """The checksum of every column is computed by each database from a
    canonical text: equal data gives equal sums on SQLite and PostgreSQL
    (times with and without microseconds, NULLs, booleans, text with commas,
    colons, quotes, newlines, tabs, backslashes, Chinese, empty text), and
    any changed value changes it."""
    app = make_app()
    source_url = app.config["DATABASE_URL"]
    target = target_url("postgres" if backend == "sqlite" else "sqlite", tmp_path, pg_store)
    (tmp_path / "target").mkdir()
    src, dst = open_database(source_url), open_database(target)
    try:
        from desk.migrations import migrate
        migrate(dst)
        p = "?" if backend == "sqlite" else "%s"
        insert = ("INSERT INTO custom_field (module, key, label, label_zh, type, required, public, "
                  "position, choices, encrypted, encrypting, created_at, updated_at, deleted_at, deleted_by) "
                  f"VALUES ({', '.join([p] * 15)})")
        whole = dt.datetime(2024, 1, 2, 3, 4, 5)
        micro = dt.datetime(2024, 1, 2, 3, 4, 5, 60)
        rows = [
            ("tickets", "a", 'a,b:c "d"\nnew\tline \\ 订单', "", "text", True, False, 0, "[]",
             False, True, whole, micro, None, None),
            ("tickets", "b", "", "标签", "choice", False, True, -3, '["x,y"]', True, False,
             micro, whole, whole, 0),
            ("contacts", "c", "~", "3:abc", "number", False, False, 2 ** 31 - 1, "", False, False,
             micro, micro, micro, 7),
        ]
        with src.atomic():
            for row in rows:
                src.execute_sql(insert, row)
            if backend == "sqlite":  # ISO text with a T, as some tools write it
                src.execute_sql("UPDATE custom_field SET updated_at = '2024-01-02T03:04:05' WHERE key = 'c'")
        replication.copy_tables(src, dst, lambda n: None)
        replication.AfterCopy(dst).wait()
        for t in replication.tables():
            assert replication._digest(src, t) == replication._digest(dst, t), t.name
        assert replication.verify_final(src, dst, replication.verify_all(src, dst), {}) == []

        field = next(t for t in replication.tables() if t.name == "custom_field")
        q = "?" if target.startswith("sqlite") else "%s"
        changes = [
            (f"UPDATE custom_field SET created_at = {q} WHERE key = 'a'", [micro]),  # a microsecond
            (f"UPDATE custom_field SET deleted_at = {q} WHERE key = 'a'", [whole]),  # NULL to a time
            (f"UPDATE custom_field SET deleted_by = {q} WHERE key = 'a'", [0]),  # NULL to 0
            (f"UPDATE custom_field SET required = {q} WHERE key = 'b'", [True]),  # a boolean
            (f"UPDATE custom_field SET label = {q} WHERE key = 'c'", [""]),  # text to empty text
            (f"UPDATE custom_field SET label_zh = {q} WHERE key = 'b'", ["标签 "]),  # a space
            (f"UPDATE custom_field SET choices = {q} WHERE key = 'b'", ['["x","y"]']),  # a comma moved
        ]
        for sql, params in changes:
            before = replication._digest(dst, field)
            with dst.atomic() as tx:
                dst.execute_sql(sql, params)
                assert replication._digest(dst, field) != before, sql
                tx.rollback()
            assert replication._digest(dst, field) == before
        dst.execute_sql(*changes[0])  # committed: the verification names the table
        problems = replication.verify_final(src, dst, replication.verify_all(src, dst), {})
        assert problems and all(p.startswith("custom_field") for p in problems), problems
    finally:
        for database in (src, dst):
            database.close()
            database.close_all()


def test_an_app_bound_to_the_old_store_follows_the_move(make_app, backend, tmp_path, pg_store):
    url = target_url("postgres", tmp_path, pg_store)
    app = make_app(**region_config("eu", url, tmp_path / "eu-files"))
    ids = populate(app)
    # a second app process of the same instance, started before the move
    other = make_app()
    other_client = other.test_client()
    result = run_cli(app, "region-migrate", "--to", "eu")
    assert result.exit_code == 0, result.output
    with other.app_context():
        database.bind(other.config["DATABASE_URL"])  # the other process still holds the old store
    agent = None
    with other.app_context():
        from desk.models import User
        agent = User.get(User.name == "Alan Agent")
    browser = signed_in(other, agent)
    page = browser.get(f"/agent/tickets/{ids['tickets'][0]}")
    assert page.status_code == 200
    assert other.config["DATABASE_URL"] == url
    assert other_client is not None


def test_bad_input_is_refused_with_status_2_and_changes_nothing(make_app, backend, tmp_path, pg_store):
    full = pg_store()
    app = make_app(REGIONS={"full": {"database_url": full, "data_dir": str(tmp_path / "f")},
                            "nowhere": {"database_url": "postgresql://desk@127.0.0.1:1/none",
                                        "data_dir": str(tmp_path / "n")}})
    populate(app)
    # a target that already holds a help center
    other = make_app(DATABASE_URL=full, DATA_DIR=str(tmp_path / "other"))
    with other.app_context():
        factories.end_user("Someone Else")
    database.bind(app.config["DATABASE_URL"])
    before = table_counts(app.config["DATABASE_URL"])

    for args, says in ((["--to", "mars"], "No region named mars"),
                       (["--to", "nowhere"], "Cannot reach the target"),
                       (["--to", "full"], "already holds data"),
                       ([], "give one of"),
                       (["--database-url", full], "give one of")):
        result = run_cli(app, "region-migrate", *args)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output, (args, result.output)

    with app.app_context():
        db.connect(reuse_if_open=True)
        state = RegionState.get_by_id(1)
        assert state.status == "active" and state.phase == ""
        # a move already running elsewhere
        elsewhere = open_database(app.config["DATABASE_URL"])
        with region_move._move_lock(elsewhere, regions.active(app.config)) as held:
            assert held
            fresh = pg_store()
            result = CliRunner().invoke(cli, ["region-migrate", "--database-url", fresh,
                                              "--data-dir", str(tmp_path / "x")], obj={"app": app})
        elsewhere.close()
        elsewhere.close_all()
        assert result.exit_code == 2 and "already running" in result.output, result.output
    assert table_counts(app.config["DATABASE_URL"]) == before
    assert not (Path(app.config["DATA_DIR"]) / "region.json").exists()


def test_rollback_moves_back_with_what_was_written_since(make_app, backend, tmp_path, pg_store):
    url = target_url("postgres", tmp_path, pg_store)
    app = make_app(**region_config("eu", url, tmp_path / "eu-files"))
    populate(app)
    home = app.config["DATABASE_URL"]
    assert run_cli(app, "region-migrate", "--to", "eu").exit_code == 0
    with app.app_context():
        factories.end_user("Written In EU", "eu@example.com")
    with app.app_context():
        # a key rotation re-seals the old store's address that the rollback needs
        from desk.models import KeyRotation
        from desk.services import keys
        old_key = crypto.key_id_of(RegionState.get_by_id(1).peer_url)
        keys.rotate(audit.SYSTEM, grace=0)
        assert crypto.key_id_of(RegionState.get_by_id(1).peer_url) != old_key
        assert KeyRotation.select().count() == 1
    result = run_cli(app, "region-migrate", "--rollback")
    assert result.exit_code == 0, result.output
    assert app.config["DATABASE_URL"] == home
    with app.app_context():
        from desk.models import User
        assert User.get_or_none(User.email == "eu@example.com") is not None
        ok, message = audit.verify()
        assert ok, message
    here, there = table_counts(home), table_counts(url)
    assert here.pop("audit_entry") == there.pop("audit_entry") + 1  # "moved", written after the switch
    assert here == there
    # the copy back set the old store's trigram indexes aside; it built them after the switch
    assert_text_index_built(url)
    if home.startswith("postgresql"):
        assert_text_index_built(home)
    with app.app_context():
        assert RegionState.get_by_id(1).phase == "done"
        assert all(search_results().values())


def test_the_old_store_is_wiped_after_the_rollback_window(make_app, backend, tmp_path, pg_store):
    url = target_url("postgres", tmp_path, pg_store)
    app = make_app(**region_config("eu", url, tmp_path / "eu-files"))
    populate(app)
    home, home_files = app.config["DATABASE_URL"], Path(app.config["FILES_DIR"])
    assert files_of(home_files)
    assert run_cli(app, "region-migrate", "--to", "eu").exit_code == 0
    with app.app_context():
        assert region_move.wipe_expired(app) is None  # the window is still open
        later = utcnow() + dt.timedelta(days=app.config["REGION_ROLLBACK_DAYS"], hours=1)
        assert region_move.wipe_expired(app, now=later) == "default"
        assert AuditEntry.select().where(AuditEntry.action == "region.wiped").count() == 1
        assert run_cli(app, "region-migrate", "--rollback").exit_code == 2
    assert files_of(home_files) == {}
    if home.startswith("sqlite"):
        assert not Path(home.split(":///", 1)[1]).exists()
    else:
        old = open_database(home)
        names = {r[0] for r in old.execute_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        old.close()
        old.close_all()
        assert names == {"region_state"}


KILL_POINTS = ("after-triggers", "mid-copy", "in-pause", "after-switch", "mid-text-index")


def _cli_env(data_dir: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(DESK_DATA_DIR=str(data_dir), DESK_DATABASE_URL=url,
               DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64")
    return env


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_move_killed_at_any_step_finishes_when_run_again(make_app, backend, tmp_path, pg_store, point):
    url = pg_store()
    data_dir = tmp_path / "instance"
    app = make_app(DATA_DIR=str(data_dir))
    populate(app)
    source = app.config["DATABASE_URL"]
    before = table_counts(source)
    base = ["--database-url", url, "--data-dir", str(tmp_path / "eu-files")]
    env = _cli_env(data_dir, source)
    killed = subprocess.run([sys.executable, "app.py", "region-migrate", *base], cwd=ROOT,
                            env=dict(env, DESK_REGION_MOVE_KILL_AT=point), capture_output=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    if point == "mid-text-index":
        # killed after the switch, between two index builds: the new store
        # takes writes and says what is left; a build killed inside
        # PostgreSQL would also have left an INVALID index
        target = open_database(url)
        assert target.execute_sql("SELECT status, phase FROM region_state").fetchone() == \
            ("active", region_move.TEXT_INDEX)
        target.close()
        target.close_all()
        assert sum(valid for valid, _d in text_indexes(url).values()) == 1
        plant_invalid_index(url, trigram_index("comment", "body"))
    late = None
    if point == "after-switch":
        late = plant_late_upload(Path(app.config["FILES_DIR"]), url)
        before["attachment"] += 1
    again = [sys.executable, "app.py", "region-migrate", *base]
    if point in ("mid-copy", "in-pause"):
        refused = subprocess.run(again, cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert refused.returncode == 2 and b"--resume" in refused.stderr, refused.stderr
        again.append("--resume")
    # PostgreSQL may take a moment to notice the dead session's lock
    for _ in range(20):
        done = subprocess.run(again, cwd=ROOT, env=env, capture_output=True, timeout=120)
        if b"already running" not in done.stderr:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = table_counts(url)
    assert {k: v for k, v in after.items() if k != "audit_entry"} == \
           {k: v for k, v in before.items() if k != "audit_entry"}
    assert after["audit_entry"] >= before["audit_entry"] + 2  # move started, moved
    check = subprocess.run([sys.executable, "app.py", "audit-verify"], cwd=ROOT, env=env,
                           capture_output=True, timeout=60)
    assert check.returncode == 0 and b"OK" in check.stdout, check.stdout + check.stderr
    pointer = json.loads((data_dir / "region.json").read_text())
    assert pointer["database_url"] == url
    assert_text_index_built(url)
    state = open_database(url)
    assert state.execute_sql("SELECT phase FROM region_state").fetchone()[0] == "done"
    state.close()
    state.close_all()
    if late is not None:  # the upload in flight at the switch kept its file
        key, content = late
        assert (tmp_path / "eu-files" / key).read_bytes() == content


def plant_late_upload(old_files: Path, new_url: str) -> tuple[str, bytes]:
    """What an upload in flight at the switch leaves when the move is killed
    right after it: its file in the old store (stored before its row waited
    at the gate), its row in the new store."""
    from desk.services import attachments
    name, content = uuid.uuid4().hex, b"uploaded while the store switched"
    key = attachments.key_of(name)
    (old_files / key).parent.mkdir(parents=True, exist_ok=True)
    (old_files / key).write_bytes(content)
    new = open_database(new_url)
    ticket, requester = new.execute_sql("SELECT id, requester_id FROM ticket ORDER BY id LIMIT 1").fetchone()
    new.execute_sql(
        "INSERT INTO attachment (ticket_id, uploader_id, filename, stored_name, content_type, size, "
        "sha256, created_at) VALUES (%s, %s, 'late.txt', %s, 'text/plain', %s, %s, now())",
        (ticket, requester, name, len(content), hashlib.sha256(content).hexdigest()))
    new.close()
    new.close_all()
    return key, content


class Customer(threading.Thread):
    """A customer who keeps opening tickets, replying and reading pages on a
    running server; remembers every write the server acknowledged."""

    def __init__(self, server: DeskServer, email: str):
        super().__init__(daemon=True)
        self.server, self.email = server, email
        self.opener = server.opener()
        self.stop = threading.Event()
        self.acknowledged: list[str] = []
        self.statuses: dict[int, int] = {}
        self.longest_write = 0.0
        self.errors: list[str] = []

    def call(self, path: str, data: dict | None = None):
        started = time.monotonic()
        status, headers, body = http_request(self.opener, self.server.base_url + path, data, timeout=30)
        if data is not None:
            self.longest_write = max(self.longest_write, time.monotonic() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            self.errors.append(f"{status} on {path}: {body[:300]!r}")
        return status, headers, body

    def run(self) -> None:
        _s, _h, page = self.call("/login")
        status, _h, _b = self.call("/login", {"email": self.email, "password": factories.PASSWORD,
                                              "csrf_token": csrf_token(page)})
        assert status == 302
        n = 0
        while not self.stop.is_set():
            n += 1
            _s, _h, page = self.call("/tickets/new")
            subject = f"live ticket {n}"
            status, headers, _b = self.call("/tickets/new", {
                "subject": subject, "description": "written during the move",
                "csrf_token": csrf_token(page)})
            if status == 302:
                self.acknowledged.append(subject)
                ticket = headers["Location"].rstrip("/").rsplit("/", 1)[-1]
                _s, _h, page = self.call(f"/my/tickets/{ticket}")
                status, _h, _b = self.call(f"/my/tickets/{ticket}", {
                    "body": f"reply to {subject}", "csrf_token": csrf_token(page)})
                if status == 302:
                    self.acknowledged.append(f"reply to {subject}")
            self.call("/my/tickets")


def test_a_live_help_center_moves_while_a_customer_keeps_writing(make_app, backend, tmp_path, pg_store):
    data_dir = tmp_path / "instance"
    app = make_app(DATA_DIR=str(data_dir))
    populate(app)
    source = app.config["DATABASE_URL"]
    target = pg_store()
    db.close()
    env = {"DESK_DATABASE_URL": source}
    with running_server(data_dir, env=env) as server:
        customer = Customer(server, "ann@example.com")
        customer.start()
        time.sleep(1.5)
        move = subprocess.run(
            [sys.executable, "app.py", "region-migrate", "--database-url", target,
             "--data-dir", str(tmp_path / "eu-files")],
            cwd=ROOT, env=_cli_env(data_dir, source), capture_output=True, timeout=300)
        assert move.returncode == 0, move.stderr.decode()[-3000:]
        moved_at = len(customer.acknowledged)
        time.sleep(2.0)  # the server's processes follow; the customer goes on
        customer.stop.set()
        customer.join(60)
        assert not customer.is_alive()
    assert customer.errors == [], customer.errors
    assert moved_at > 0 and len(customer.acknowledged) > moved_at, customer.statuses
    written = open_database(target)
    subjects = {r[0] for r in written.execute_sql("SELECT subject FROM ticket")}
    bodies = {r[0] for r in written.execute_sql("SELECT body FROM comment")}
    written.close()
    written.close_all()
    missing = [w for w in customer.acknowledged if w not in subjects and w not in bodies]
    assert missing == [], missing
    check = subprocess.run([sys.executable, "app.py", "audit-verify"], cwd=ROOT,
                           env=_cli_env(data_dir, source), capture_output=True, timeout=60)
    assert check.returncode == 0 and b"OK" in check.stdout, check.stdout + check.stderr
    print(f"\n{len(customer.acknowledged)} writes acknowledged, statuses {customer.statuses}, "
          f"longest write {customer.longest_write * 1000:.0f} ms; {move.stdout.decode().strip()}")


def test_an_admin_sees_the_region_and_starts_a_move_the_scheduler_runs(make_app, backend, tmp_path,
                                                                       pg_store):
    url = pg_store()
    app = make_app(**region_config("eu", url, tmp_path / "eu-files"))
    populate(app)
    with app.app_context():
        from desk.models import User
        admin = User.get(User.name == "Ada Admin")
        agent = User.get(User.name == "Alan Agent")
    page = signed_in(app, admin)
    html = page.get("/agent/settings/region").get_data(as_text=True)
    assert "default" in html and "eu" in html
    assert ("SQLite" if backend == "sqlite" else "PostgreSQL · <code>127.0.0.1:5432/") in html
    assert "postgresql://" not in html  # no credentials, no URL
    # an agent without settings:manage may not see or start it
    assert signed_in(app, agent).get("/agent/settings/region").status_code == 403

    from tests.conftest import csrf_token as page_token
    token = page_token(page, "/agent/settings/region")
    wrong = page.post("/agent/settings/region", data={"region": "eu", "confirmation": "EU!",
                                                       "csrf_token": token})
    assert wrong.status_code == 400 and "exactly" in wrong.get_data(as_text=True)
    unknown = page.post("/agent/settings/region", data={"region": "mars", "confirmation": "mars",
                                                         "csrf_token": token})
    assert unknown.status_code == 400
    ok = page.post("/agent/settings/region", data={"region": "eu", "confirmation": "eu",
                                                    "csrf_token": token})
    assert ok.status_code == 302
    with app.app_context():
        assert RegionState.get_by_id(1).phase == region_move.REQUESTED
        assert AuditEntry.select().where(AuditEntry.action == "region.move_requested",
                                         AuditEntry.actor_id == admin.id).count() == 1
        assert "in progress" in page.get("/agent/settings/region").get_data(as_text=True)
        report = region_move.run_requested(app)
    assert report is not None and report.target == "eu"
    assert app.config["DATABASE_URL"] == url
    with app.app_context():
        assert region_move.run_requested(app) is None  # nothing more to do


def test_a_text_index_left_unfinished_after_the_switch_is_finished_by_the_scheduler(
        make_app, backend, tmp_path, pg_store):
    """A move to PostgreSQL builds the trigram indexes after the switch, while
    the new store takes writes. When the process dies during the build, the
    settings page and --status say so, searches still find the same tickets
    (by reading the rows), a rollback waits, and the scheduler (or a rerun)
    builds what is missing: an INVALID leftover is dropped and built again."""
    import zlib
    from desk.models import User
    url = pg_store()
    app = make_app(**region_config("eu", url, tmp_path / "eu-files"))
    populate(app)
    with app.app_context():
        found_before = search_results()
    assert run_cli(app, "region-migrate", "--to", "eu").exit_code == 0
    assert_text_index_built(url)
    # as a move killed during the build leaves it: one index not built, one INVALID
    target = open_database(url)
    target.execute_sql(f'DROP INDEX "{trigram_index("ticket", "description")}"')
    target.close()
    target.close_all()
    plant_invalid_index(url, trigram_index("comment", "body"))
    with app.app_context():
        RegionState.update(phase=region_move.TEXT_INDEX, progress='{"done": 1, "total": 2}').where(
            RegionState.id == 1).execute()
        assert search_results() == found_before
        assert factories.end_user("Written Meanwhile").id  # the new store takes writes
        admin = User.get(User.name == "Ada Admin")
    html = signed_in(app, admin).get("/agent/settings/region").get_data(as_text=True)
    assert "Building the search index" in html and "50% built" in html
    assert "phase: text index" in run_cli(app, "region-migrate", "--status").output
    refused = run_cli(app, "region-migrate", "--rollback")
    assert refused.exit_code == 2 and "already running" in refused.output

    with app.app_context():
        # another process building it: the scheduler leaves it alone
        holder = open_database(url)
        key = zlib.crc32(region_move.TEXT_INDEX_LOCK.encode())
        holder.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        assert region_move.run_requested(app) is None
        holder.close()
        holder.close_all()
        assert RegionState.get_by_id(1).phase == region_move.TEXT_INDEX
        report = region_move.run_requested(app)
        assert report is not None and "text index (after the switch)" in report.phases
        assert RegionState.get_by_id(1).phase == "done"
        assert region_move.run_requested(app) is None
        assert search_results() == found_before
    assert_text_index_built(url)


def test_a_file_removed_from_the_source_while_the_move_copies_is_skipped(tmp_path):
    """The app removes files while a move runs (a sealed attachment's clear
    file, a purged one): one listed and gone before its copy is not copied,
    and the move goes on."""
    from desk.services import storage

    class StaleListing(storage.LocalStore):
        """A folder whose listing still names a file that was just removed."""

        def list(self, prefix=""):
            yield from super().list(prefix)
            if prefix == "attachments/":
                yield storage.ObjectInfo("attachments/zz/gone", 4, utcnow())

    source, target = StaleListing(tmp_path / "src"), storage.LocalStore(tmp_path / "dst")
    source.put_bytes("attachments/ab/kept", b"kept bytes")
    files = replication.FileSync(source, target)
    assert files.sync() == 1
    assert target.read_bytes("attachments/ab/kept") == b"kept bytes"
    assert not target.exists("attachments/zz/gone")
    files.sync(delete=True)
    assert files.differences() == []
