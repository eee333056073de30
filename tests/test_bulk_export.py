"""The bulk export of everything, on both databases: the ZIP and its manifest,
the job with progress, the encrypted file, the expiring link, erasure, the
``export`` command, and a real kill in the middle."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from desk.audit import SYSTEM
from desk.audit import Actor
from desk import jobs
from desk.cli import cli
from desk.db import db
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import AuditHead
from desk.models import BulkExport
from desk.models import Comment
from desk.models import MailMessage
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import bulk_export
from desk.services import erasure
from desk.services import leases
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import signed_in

ROOT = Path(__file__).resolve().parent.parent
SECRET_SUBJECT = "Distinctive subject 独特的主题 =1+1"


def upload(name: str, data: bytes) -> files.Upload:
    return files.Upload(filename=name, stream=io.BytesIO(data))


@pytest.fixture
def data(ctx):
    admin = factories.admin(name="Ada Admin")
    customer = factories.end_user(name="Carl Customer", email="carl@example.com")
    ticket = ticket_service.submit(customer, SECRET_SUBJECT, "details\nmore", None,
                                   [upload("报告.txt", "file body 文件\n".encode())])
    ticket_service.reply(admin, ticket.id, "a reply", True, [upload("reply.bin", os.urandom(3000))])
    ticket_service.reply(admin, ticket.id, "a private note", False)
    other = factories.ticket(customer, "Another")
    gone = factories.ticket(customer, "In the recycle bin")
    ticket_service.delete_ticket(admin, gone.id)
    return {"admin": admin, "customer": customer, "ticket": ticket, "other": other}


def zip_bytes(**kwargs) -> bytes:
    out = io.BytesIO()
    bulk_export.write_zip(out, **kwargs)
    return out.getvalue()


def test_the_zip_holds_every_module_and_file_and_its_manifest_verifies(ctx, data, tmp_path):
    path = tmp_path / "all.zip"
    path.write_bytes(zip_bytes())
    ok, message = bulk_export.verify(path)
    assert ok, message
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        for module in bulk_export.MODULES:
            assert {f"{module}.csv", f"{module}.jsonl"} <= names
        live_files = Attachment.select().where(Attachment.deleted_at.is_null()).count()
        attached = sorted(n for n in names if n.startswith("attachments/"))
        assert len(attached) == live_files == 2
        assert f"attachments/{data['ticket'].id}/" in attached[0]
        assert archive.read(next(n for n in attached if n.endswith("报告.txt"))) == "file body 文件\n".encode()
        tickets = list(csv.DictReader(io.StringIO(archive.read("tickets.csv").decode("utf-8-sig"))))
        jsonl = [json.loads(line) for line in archive.read("tickets.jsonl").decode().splitlines()]
    live = Ticket.select().where(Ticket.deleted_at.is_null()).count()
    assert manifest["rows"]["tickets"] == len(tickets) == len(jsonl) == live == 2
    assert manifest["rows"]["comments"] == Comment.select().count() == 2
    assert manifest["rows"]["contacts"] == User.select().where(User.kind == "end_user").count()
    assert manifest["rows"]["audit"] <= AuditHead.get_by_id(1).seq
    assert {t["subject"] for t in tickets} == {"Another", SECRET_SUBJECT}
    assert jsonl[0]["subject"] == SECRET_SUBJECT  # JSON keeps the value as it is
    assert manifest["region"] == ctx.config["REGION"] and manifest["schema_version"] >= 5
    assert set(manifest["files"]) == names - {"manifest.json"}


def test_verify_finds_a_changed_missing_or_extra_file(ctx, data, tmp_path):
    good = zip_bytes(with_files=False)
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}

    def rebuilt(name: str, change) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as out:
            for member, body in change(dict(members)).items():
                out.writestr(member, body)
        return path

    changed = rebuilt("changed.zip", lambda m: {**m, "tickets.csv": m["tickets.csv"] + b"1,x\r\n"})
    missing = rebuilt("missing.zip", lambda m: {k: v for k, v in m.items() if k != "audit.jsonl"})
    extra = rebuilt("extra.zip", lambda m: {**m, "extra.txt": b"x"})
    assert bulk_export.verify(changed) == (False, "tickets.csv does not match its SHA-256")
    assert bulk_export.verify(missing) == (False, "audit.jsonl is missing")
    assert bulk_export.verify(extra) == (False, "extra.txt is not in the manifest")
    (tmp_path / "junk.zip").write_bytes(good[: len(good) // 2])
    assert not bulk_export.verify(tmp_path / "junk.zip")[0]


def test_the_job_shows_progress_stores_encrypted_mails_and_downloads(ctx, data, tmp_path):
    client = signed_in(ctx, data["admin"])
    page = client.get("/agent/settings/bulk-export")
    assert page.status_code == 200
    token = page.get_data(as_text=True).split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    assert client.post("/agent/settings/bulk-export", data={"csrf_token": token}).status_code == 302
    row = BulkExport.get()
    assert row.status == "queued"
    job = next(j for j in jobs.JOBS if j.name == "bulk-exports")  # the scheduler's own job
    assert jobs.run_job(ctx, job, leases.local_holder())
    row = BulkExport.get_by_id(row.id)
    assert row.status == "done" and row.rows_done == row.rows_total > 0 and row.files_done == 2
    stored = Path(ctx.config["DATA_DIR"]) / row.file_name
    raw = stored.read_bytes()
    assert SECRET_SUBJECT.encode() not in raw and b"carl@example.com" not in raw and b"PK\x03\x04" not in raw
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert not list(stored.parent.glob("*.part")) and not list(stored.parent.glob(".*.part"))
    html = client.get("/agent/settings/bulk-export").get_data(as_text=True)
    assert f"{row.rows_total:,} of {row.rows_total:,} rows, 2 of 2 files" in html
    resp = client.get(f"/agent/settings/bulk-export/{row.id}/download")
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    (tmp_path / "dl.zip").write_bytes(resp.get_data())
    assert bulk_export.verify(tmp_path / "dl.zip")[0]
    actions = [e.action for e in AuditEntry.select().where(AuditEntry.record_type == "BulkExport")
               .order_by(AuditEntry.seq)]
    assert actions == ["export", "download"]
    mail = MailMessage.select().where(MailMessage.recipient == data["admin"].email).order_by(MailMessage.id.desc()).get()
    assert "/agent/settings/bulk-export" in mail.body


def test_one_bulk_export_at_a_time_and_admins_only(ctx, data):
    bulk_export.start(data["admin"])
    with pytest.raises(Exception) as err:
        bulk_export.start(data["admin"])
    assert getattr(err.value, "status", None) == 409
    agent = factories.agent()
    assert signed_in(ctx, agent).get("/agent/settings/bulk-export").status_code == 403


def test_an_expired_link_answers_410_and_the_file_is_deleted(ctx, data):
    row = bulk_export.run(bulk_export.start(data["admin"]).id)
    client = signed_in(ctx, data["admin"])
    BulkExport.update(expires_at=dt.datetime.utcnow() - dt.timedelta(minutes=1)).where(
        BulkExport.id == row.id).execute()
    assert client.get(f"/agent/settings/bulk-export/{row.id}/download").status_code == 410
    stored = Path(ctx.config["DATA_DIR"]) / row.file_name
    assert stored.exists()
    assert bulk_export.expire_due() == 1
    assert not stored.exists() and BulkExport.get_by_id(row.id).status == "expired"
    assert client.get(f"/agent/settings/bulk-export/{row.id}/download").status_code == 410
    assert client.get("/agent/settings/bulk-export/999999/download").status_code == 404
    assert AuditEntry.select().where(AuditEntry.record_type == "BulkExport",
                                     AuditEntry.action == "expire").count() == 1


def test_erasing_a_person_deletes_the_bulk_exports_that_hold_them(ctx, data):
    row = bulk_export.run(bulk_export.start(data["admin"]).id)
    stored = Path(ctx.config["DATA_DIR"]) / row.file_name
    assert stored.exists()
    queued = bulk_export.start(data["admin"])
    BulkExport.update(status="running").where(BulkExport.id == queued.id).execute()
    erasure.anonymize_now(Actor(data["admin"].id), data["customer"])
    assert not stored.exists()
    assert BulkExport.get_by_id(row.id).status == "deleted"
    assert BulkExport.get_by_id(queued.id).status == "queued"  # made again, after the erasure
    remade = bulk_export.run(queued.id)
    with zipfile.ZipFile(io.BytesIO(b"".join(bulk_export.download(data["admin"], remade.id)))) as archive:
        everything = b"".join(archive.read(n) for n in archive.namelist())
    assert b"carl@example.com" not in everything and b"Carl Customer" not in everything


def run_cli(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def test_the_command_writes_the_zip_a_module_or_standard_output(ctx, data, tmp_path):
    out = tmp_path / "everything.zip"
    result = run_cli(ctx, "export", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert run_cli(ctx, "export", "--verify", str(out)).output.startswith("OK: ")
    assert not (tmp_path / "everything.zip.part").exists()
    module = tmp_path / "tickets.jsonl"
    assert run_cli(ctx, "export", "--out", str(module), "--module", "tickets", "--format", "jsonl").exit_code == 0
    assert [json.loads(line)["subject"] for line in module.read_text().splitlines()] == [SECRET_SUBJECT, "Another"]
    stdout = run_cli(ctx, "export", "--out", "-", "--module", "contacts")
    assert stdout.exit_code == 0
    assert "carl@example.com" in stdout.stdout and stdout.stdout.startswith("\ufeff")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    bad = run_cli(ctx, "export", "--verify", str(tmp_path / "bad.zip"))
    assert bad.exit_code == 1 and bad.output.startswith("FAILED: ")
    assert run_cli(ctx, "export").exit_code == 2
    assert run_cli(ctx, "export", "--out", str(tmp_path)).exit_code == 2
    assert run_cli(ctx, "export", "--out", str(tmp_path / "no" / "such.zip")).exit_code == 2


def _env(data_dir: Path, database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(DESK_DATA_DIR=str(data_dir), DESK_DATABASE_URL=database_url,
               DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64")
    return env


def _kill_when(proc, path: Path, tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, (tmp_path / "err").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def big(make_app, database_url, backend, tmp_path):
    """An app on its own instance folder, with enough files that writing the
    export takes a while."""
    instance = tmp_path / "instance-big"
    url = f"sqlite:///{instance / 'desk.db'}" if backend == "sqlite" else database_url
    app = make_app(DATA_DIR=str(instance), DATABASE_URL=url)
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin()
        customer = factories.end_user()
        for n in range(12):
            ticket_service.submit(customer, f"ticket {n}", "x", None,
                                  [upload(f"f{n}.bin", os.urandom(1_500_000))])
        db.close()
    return app, instance, url, admin.id


def test_a_killed_command_leaves_no_finished_looking_file_and_a_rerun_is_valid(big, tmp_path):
    app, instance, url, _ = big
    target = tmp_path / "out.zip"
    cmd = [sys.executable, "app.py", "export", "--out", str(target)]
    with (tmp_path / "err").open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(instance, url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        _kill_when(proc, tmp_path / "out.zip.part", tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(instance, url), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert bulk_export.verify(target)[0]
    assert not (tmp_path / "out.zip.part").exists()


JOB_SCRIPT = """
import sys
from desk import create_app
from desk.db import db
from desk.services import bulk_export
app = create_app()
with app.app_context():
    db.connect()
    bulk_export.run(int(sys.argv[1]))
"""


def _kill_job_when(big, tmp_path: Path, waypoint: Callable[[BulkExport], Path]) -> BulkExport:
    """Start a bulk export, run its job in a process of its own and kill -9 it
    once ``waypoint(row)`` exists."""
    app, instance, url, admin_id = big
    with app.app_context():
        db.connect(reuse_if_open=True)
        row = bulk_export.start(User.get_by_id(admin_id))
        db.close()
    with (tmp_path / "err").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", JOB_SCRIPT, str(row.id)], cwd=ROOT,
                                env=_env(instance, url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        _kill_when(proc, waypoint(row), tmp_path)
    return row


def test_a_killed_job_restarts_cleanly(big, tmp_path):
    app, instance, _url, admin_id = big
    row = _kill_job_when(big, tmp_path, lambda r: instance / "exports" / f".bulk-{r.id}.zip.enc.part")
    final = instance / "exports" / f"bulk-{row.id}.zip.enc"
    assert not final.exists()
    with app.app_context():
        db.connect(reuse_if_open=True)
        assert BulkExport.get_by_id(row.id).status == "running"
        assert signed_in(app, User.get_by_id(admin_id)).get(
            f"/agent/settings/bulk-export/{row.id}/download").status_code == 404
        assert bulk_export.run_pending() == 1
        done = BulkExport.get_by_id(row.id)
        assert done.status == "done" and final.exists()
        (tmp_path / "dl.zip").write_bytes(b"".join(bulk_export.download(User.get_by_id(admin_id), row.id)))
        db.close()
    ok, message = bulk_export.verify(tmp_path / "dl.zip")
    assert ok, message
    assert not (instance / "exports" / f".bulk-{row.id}.zip.enc.part").exists()


def _pieces(instance: Path, row: BulkExport) -> Path:
    return instance / "exports" / f".bulk-{row.id}.pieces"


def test_a_killed_job_resumes_from_the_module_files_it_finished(big, tmp_path):
    """The job keeps each finished module file as an encrypted piece: after a
    kill, the next run makes only the missing ones, then a valid ZIP; the
    pieces are private while they exist and gone afterwards."""
    from desk import crypto
    app, instance, _url, admin_id = big
    row = _kill_job_when(big, tmp_path, lambda r: _pieces(instance, r) / bulk_export.CHECKPOINT)
    work = _pieces(instance, row)
    done_before = json.loads((work / bulk_export.CHECKPOINT).read_text())
    assert done_before and set(done_before) <= {f"{m}.{f}" for m in bulk_export.MODULES
                                                for f in bulk_export.FORMATS}
    kept = {name: (work / f"{name}.enc").stat() for name in done_before}
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(s.st_mode) == 0o600 for s in kept.values())
    with app.app_context():
        db.connect(reuse_if_open=True)
        fresh = BulkExport.get_by_id(row.id)
        assert fresh.status == "running" and fresh.wrapped_key
        progress = bulk_export.Progress()
        members = bulk_export._make_pieces(work, crypto.unwrap_export_key(fresh.wrapped_key), progress)
        for name, before in kept.items():  # finished pieces were not made again
            after = (work / f"{name}.enc").stat()
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert [m.name for m in members] == [f"{m}.{f}" for m in bulk_export.MODULES for f in bulk_export.FORMATS]
        assert progress.rows_done == sum(json.loads((work / bulk_export.CHECKPOINT).read_text()).values())
        assert bulk_export.run_pending() == 1
        assert BulkExport.get_by_id(row.id).status == "done"
        (tmp_path / "dl.zip").write_bytes(b"".join(bulk_export.download(User.get_by_id(admin_id), row.id)))
        tickets = Ticket.select().where(Ticket.deleted_at.is_null()).count()
        db.close()
    ok, message = bulk_export.verify(tmp_path / "dl.zip")
    assert ok, message
    with zipfile.ZipFile(tmp_path / "dl.zip") as archive:
        assert json.loads(archive.read("manifest.json"))["rows"]["tickets"] == tickets
        assert len(list(csv.reader(io.StringIO(archive.read("tickets.csv").decode("utf-8-sig"))))) == tickets + 1
    assert not work.exists()


def test_an_erasure_while_the_job_is_killed_removes_its_pieces(big, tmp_path):
    app, instance, _url, _admin_id = big
    row = _kill_job_when(big, tmp_path, lambda r: _pieces(instance, r) / bulk_export.CHECKPOINT)
    work = _pieces(instance, row)
    assert work.exists()
    with app.app_context():
        db.connect(reuse_if_open=True)
        bulk_export.discard_for_erasure(SYSTEM)
        assert not work.exists()
        assert BulkExport.get_by_id(row.id).status == "queued"
        db.close()


def test_the_bulk_export_goes_through_the_file_store(make_app, store_settings, store_kind, request, tmp_path):
    app = make_app(**store_settings)
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin()
        customer = factories.end_user(email="stored@example.com")
        ticket_service.submit(customer, SECRET_SUBJECT, "x", None, [upload("a.txt", b"attached bytes\n")])
        row = bulk_export.run(bulk_export.start(admin).id)
        if store_kind == "s3":
            server = request.getfixturevalue("moto_server")
            bucket = store_settings["STORAGE_URL"].split("/")[2]
            objects = server.raw_objects(bucket)
            stored = [body for key, body in objects.items() if key.endswith(row.file_name)]
            assert len(stored) == 1 and SECRET_SUBJECT.encode() not in stored[0]
        (tmp_path / "s.zip").write_bytes(b"".join(bulk_export.download(admin, row.id)))
        assert bulk_export.verify(tmp_path / "s.zip")[0]
        with zipfile.ZipFile(tmp_path / "s.zip") as archive:
            assert any(archive.read(n) == b"attached bytes\n" for n in archive.namelist()
                       if n.startswith("attachments/"))
        BulkExport.update(expires_at=dt.datetime.utcnow()).where(BulkExport.id == row.id).execute()
        bulk_export.expire_due()
        from desk.services import storage
        assert not storage.of(app.config).exists(row.file_name)
        db.close()
