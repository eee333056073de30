"""Two app servers (two `app.py run` processes on two ports) on one PostgreSQL
database and one bucket (moto's S3 server), each with a data folder of its own:
a file uploaded through one downloads through the other, a purge run beside
one removes the object for both, and the erasure proof holds with the bucket
(the database, the bucket's objects as stored and both servers' logs)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.cookiejar
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from desk import audit
from desk import create_app
from desk import crypto
from desk.db import db
from desk.migrations import migrate
from desk.models import Attachment
from desk.models import Ticket
from tests import factories
from tests.conftest import TEST_CONFIG
from tests.serverproc import DeskServer
from tests.serverproc import csrf_token
from tests.serverproc import make_opener
from tests.serverproc import request

ROOT = Path(__file__).resolve().parent.parent
NAME, EMAIL, PHONE = "Zebulon Quartermaine", "zebulon.q@example.com", "+44 7700 900461"
NEEDLES = (NAME, EMAIL, PHONE)


def found(data: bytes) -> list[str]:
    low = data.lower()
    return [n for n in NEEDLES if n.lower().encode() in low]


def found_in_object(data: bytes) -> list[str]:
    """Needles in an object's bytes, and in the decoded text when it is mail."""
    hits = found(data)
    if data[:200].count(b":") and b"\nSubject:" in data[:2000]:
        message = email.message_from_bytes(data, policy=email.policy.default)
        text = "\n".join([f"{k}: {v}" for k, v in message.items()] +
                         [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"])
        hits += [n for n in found(text.encode()) if n not in hits]
    return hits


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body (as a browser sends a form with files)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def get(opener, url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def sign_in(server: DeskServer, opener, address: str) -> None:
    status, _, page = request(opener, server.base_url + "/login")
    status, headers, _ = request(opener, server.base_url + "/login",
                                 {"email": address, "password": factories.PASSWORD,
                                  "csrf_token": csrf_token(page)})
    assert status == 302 and "/login" not in headers["Location"], status


def upload(server: DeskServer, opener, data: bytes, filename: str) -> None:
    _, _, page = request(opener, server.base_url + "/tickets/new")
    body, content_type = multipart({"subject": "Statement", "description": "attached",
                                    "csrf_token": csrf_token(page)},
                                   {"attachments": (filename, data)})
    req = urllib.request.Request(server.base_url + "/tickets/new", data=body,
                                 headers={"Content-Type": content_type})
    status, _, _ = _send(opener, req)
    assert status == 302, status


def _send(opener, req):
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


@pytest.fixture
def deployment(pg_database, moto_server, tmp_path):
    """One fresh PostgreSQL schema, one bucket, one keyring and secret, and the
    settings every process of the deployment shares."""
    import psycopg2
    conn = psycopg2.connect(pg_database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    conn.close()
    bucket = moto_server.new_bucket()
    shared = {"DATABASE_URL": pg_database, "ENCRYPTION_KEYS": crypto.new_keyring().to_json(),
              "SECRET_KEY": secrets.token_urlsafe(32), **moto_server.settings(bucket)}
    app = create_app(dict(TEST_CONFIG, DATA_DIR=str(tmp_path / "tests-own"), **shared))
    with app.app_context():
        migrate(db.obj)
    env = {f"DESK_{k}": v for k, v in shared.items()}
    env.update(DESK_WORKERS="1", DESK_THREADS="2")
    yield app, env, bucket
    if db.obj is not None and not db.obj.is_closed():
        db.close()


def cli(env: dict, data_dir: Path, *args: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DESK_", "AWS_"))}
    full.update(env, DESK_DATA_DIR=str(data_dir), DESK_ARGON2_TIME_COST="1",
                DESK_ARGON2_MEMORY_COST="64")
    done = subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=full, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode() + done.stderr.decode()


def test_two_servers_share_files_purge_and_the_erasure_proof(deployment, moto_server, tmp_path):
    app, env, bucket = deployment
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin()
        person = factories.end_user(name=NAME, email=EMAIL)
        audit.update(audit.SYSTEM, person, phone=PHONE)
        other = factories.end_user()
        db.close()
    a = DeskServer(tmp_path / "server-a", ["--no-scheduler"], env=env, log_dir=tmp_path / "logs")
    b = DeskServer(tmp_path / "server-b", ["--no-scheduler"], env=env, log_dir=tmp_path / "logs")
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        _share_and_purge(app, a, b, person, other, admin, moto_server, bucket, env, tmp_path)
        _erasure_proof(app, a, b, person, admin, moto_server, bucket, env, tmp_path)
    finally:
        a.stop()
        b.stop()
    logs = [p for p in (tmp_path / "logs").iterdir() if p.is_file()]
    assert logs and {p: found(p.read_bytes()) for p in logs if found(p.read_bytes())} == {}


def _share_and_purge(app, a, b, person, other, admin, moto_server, bucket, env, tmp_path):
    jar = http.cookiejar.CookieJar()
    browser = make_opener(jar)
    sign_in(a, browser, EMAIL)
    statement = f"Statement of {NAME}, reachable on {PHONE}. ".encode() * 3000  # ~200 KB
    upload(a, browser, statement, "statement.txt")
    with app.app_context():
        row = Attachment.select().where(Attachment.uploader == person.id).get()
        db.close()
    # The same session cookie works on either server: they are stateless.
    status, headers, body = get(browser, f"{b.base_url}/attachments/{row.id}")
    assert status == 200 and body == statement
    status, headers, body = get(browser, f"{b.base_url}/attachments/{row.id}",
                                headers={"Range": "bytes=70000-70099"})
    assert status == 206 and body == statement[70000:70100]
    assert headers["Content-Range"] == f"bytes 70000-70099/{len(statement)}"

    # Another person's file, uploaded through B, downloads through A; then purged.
    theirs = make_opener(http.cookiejar.CookieJar())
    sign_in(b, theirs, other.email)
    upload(b, theirs, b"their own file", "own.txt")
    with app.app_context():
        their_row = Attachment.select().where(Attachment.uploader == other.id).get()
        db.close()
    assert get(theirs, f"{a.base_url}/attachments/{their_row.id}")[2] == b"their own file"
    assert get(browser, f"{a.base_url}/attachments/{their_row.id}")[0] == 404  # not theirs
    key = f"files/attachments/{their_row.stored_name[:2]}/{their_row.stored_name}"
    assert key in moto_server.raw_objects(bucket)
    with app.app_context():
        ticket = Ticket.get_by_id(their_row.ticket_id)
        audit.update(audit.SYSTEM, ticket, deleted_at=dt.datetime(2000, 1, 1), deleted_by=admin.id)
        db.close()
    out = cli(env, a.data_dir, "purge")
    assert "purged 1 tickets" in out and "removed 1 files" in out
    assert key not in moto_server.raw_objects(bucket)
    assert get(theirs, f"{b.base_url}/attachments/{their_row.id}")[0] == 404
    assert get(theirs, f"{a.base_url}/attachments/{their_row.id}")[0] == 404
    assert "OK: rows and objects match" in cli(env, b.data_dir, "storage-check")


def _erasure_proof(app, a, b, person, admin, moto_server, bucket, env, tmp_path):
    cli(env, b.data_dir, "send-mail")  # no SMTP host: the mail lands in the bucket's outbox/
    objects = moto_server.raw_objects(bucket)
    assert any(k.startswith("files/outbox/") for k in objects)
    # Control: the search finds them where they are (mail in the bucket, the database).
    assert set(sum((found_in_object(v) for v in objects.values()), [])) >= {NAME, EMAIL}
    assert set(found(_pg_dump(env))) >= set(NEEDLES)
    assert not any(found(v) for k, v in objects.items() if k.startswith("files/attachments/"))

    officer = make_opener(http.cookiejar.CookieJar())
    sign_in(b, officer, admin.email)
    _, _, page = request(officer, f"{b.base_url}/agent/people/{person.id}/erase")
    status, _, body = request(officer, f"{b.base_url}/agent/people/{person.id}/erase",
                              {"mode": "anonymize", "confirmation": f"Deleted user {person.id}",
                               "csrf_token": csrf_token(page)})
    assert status == 302, body[:500]

    objects = moto_server.raw_objects(bucket)
    assert not any(k.startswith("files/attachments/") for k in objects)  # their file went
    assert {k: found_in_object(v) for k, v in objects.items() if found_in_object(v)} == {}
    assert found(_pg_dump(env)) == []
    assert "OK" in cli(env, a.data_dir, "audit-verify")


def _pg_dump(env: dict) -> bytes:
    return subprocess.run(["pg_dump", "--data-only", "--format=plain", env["DESK_DATABASE_URL"]],
                          capture_output=True, check=True, timeout=120).stdout
