"""Keys and rotation (issue 12): the keyring outside the database with key
ids, wrapped data keys, and ``keys-rotate``: online, batched, resumable after
a real kill, retiring old keys only when nothing refers to them."""
from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk.cli import cli
from desk.db import db
from desk.models import AuditEntry
from desk.models import ContactFieldValue
from desk.models import KeyRotation
from desk.models import RecordKey
from desk.models import StoredSecret
from desk.models import SubjectKey
from desk.models import TicketFieldValue
from desk.services import custom_fields
from desk.services import keys
from desk.services import settings
from tests import factories
from tests.conftest import signed_in

ROOT = Path(__file__).resolve().parent.parent
CARDS = ["4111111111111111", "4539578763621486", "5555555555554444", "378282246310005"]


def run_cli(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def key_file(app) -> dict:
    return json.loads((Path(app.config["DATA_DIR"]) / "keys.json").read_text())


def populate(admin, people: int = 4) -> dict:
    """Encrypted values on tickets and contacts, subject and record keys (from
    audit), and a stored secret; returns what each should open to."""
    custom_fields.create(admin, "tickets", {"key": "card", "label": "Card", "type": "card",
                                            "encrypted": True})
    custom_fields.create(admin, "contacts", {"key": "passport", "label": "Passport", "type": "text",
                                             "encrypted": True})
    expected = {}
    for n in range(people):
        person = factories.end_user(name=f"Person {n}")
        ticket = factories.ticket(person, f"Ticket {n}", description=f"text {n}")
        card = CARDS[n % len(CARDS)]
        custom_fields.set_values(admin, "tickets", ticket, {"cf_card": card})
        custom_fields.set_values(admin, "contacts", person, {"cf_passport": f"PP-{n:04d}"})
        expected[("tickets", ticket.id)] = {"card": card}
        expected[("contacts", person.id)] = {"passport": f"PP-{n:04d}"}
    settings.put_secret(audit.SYSTEM, "smtp_password", "s3cret-for-rotation")
    settings.add(audit.SYSTEM, "setup_token", crypto.seal_secret("setup_token", "tok-rotating"))
    settings.put(audit.SYSTEM, "smtp", {"host": "mail.example.com", "port": 587,
                                        "password": crypto.seal_secret("smtp_password", "smtp-rotating")})
    return expected


def assert_everything_opens(admin, expected) -> None:
    from desk.models import Ticket
    from desk.models import User
    for (module, record_id), values in expected.items():
        record = (Ticket if module == "tickets" else User).get_by_id(record_id)
        assert custom_fields.export_values(admin, module, record, may_reveal=True) == values
    assert settings.get_secret("smtp_password") == "s3cret-for-rotation"
    assert crypto.open_secret("setup_token", settings.get("setup_token")) == "tok-rotating"
    assert crypto.open_secret("smtp_password", settings.get("smtp")["password"]) == "smtp-rotating"
    for entry in AuditEntry.select():
        assert crypto.ERASED not in json.dumps(audit.read_changes(entry), ensure_ascii=False), entry.seq


def key_ids_in_use() -> set[str]:
    return set(keys.usage())


def test_the_key_file_is_private_and_values_name_their_key(ctx):
    path = Path(ctx.config["DATA_DIR"]) / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = key_file(ctx)
    assert ring["active"] in ring["keys"] and len(base64.b64decode(ring["keys"][ring["active"]])) == 32
    admin = factories.admin()
    populate(admin, people=1)
    assert key_ids_in_use() == {ring["active"]}
    row = TicketFieldValue.get()
    assert row.key_id == ring["active"] and row.sealed.startswith(ring["active"] + ":")
    # Nothing of the keys is in the database.
    raw = base64.b64decode(ring["keys"][ring["active"]])
    for model in (SubjectKey, RecordKey, TicketFieldValue, ContactFieldValue, StoredSecret):
        for r in model.select():
            assert ring["keys"][ring["active"]] not in json.dumps(r.__data__, default=str)
    assert raw not in b"".join(str(r.__data__).encode() for r in SubjectKey.select())


def test_master_key_from_the_environment(make_app, tmp_path):
    one = base64.b64encode(os.urandom(32)).decode()
    app = make_app(MASTER_KEY=one, DATA_DIR=str(tmp_path / "env-instance"))
    assert not (tmp_path / "env-instance" / "keys.json").exists()
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin()
        populate(admin, people=1)
        kid = crypto.active_key_id()
        assert kid.startswith("e") and key_ids_in_use() == {kid}
        # Everything already on the active key: the command says what to do.
        result = run_cli(app, "keys-rotate")
        assert result.exit_code != 0 and "--generate" in result.output
        generated = run_cli(app, "keys-rotate", "--generate")
        assert generated.exit_code == 0
        ring = json.loads(generated.output)
        assert ring["active"] != kid and set(ring["keys"]) == {kid, ring["active"]}
    # The operator sets the printed keyring on every server and rotates.
    app2 = make_app(MASTER_KEY=json.dumps(ring), DATA_DIR=str(tmp_path / "env-instance"))
    with app2.app_context():
        db.connect(reuse_if_open=True)
        result = run_cli(app2, "keys-rotate", "--batch", "2")
        assert result.exit_code == 0, result.output
        assert key_ids_in_use() == {ring["active"]}
        assert f"no longer used: {kid}" in result.output


def test_rotation_rewraps_reseals_and_retires_the_old_key(ctx):
    admin = factories.admin()
    expected = populate(admin)
    old = crypto.active_key_id()
    before = {"subject": SubjectKey.select().where(SubjectKey.key_id == old).count()}
    assert before["subject"] >= 4
    result = run_cli(ctx, "keys-rotate", "--batch", "3")
    assert result.exit_code == 0, result.output
    new = crypto.active_key_id()
    assert new != old and key_file(ctx)["active"] == new
    assert old not in key_file(ctx)["keys"]  # retired: nothing refers to it
    assert key_ids_in_use() == {new}
    assert_everything_opens(admin, expected)
    assert "retired" in result.output and old in result.output
    rotation = KeyRotation.get()
    assert rotation.status == "done" and rotation.done > 0
    actions = [e.action for e in AuditEntry.select().order_by(AuditEntry.seq)]
    assert actions.count("keys-rotate-start") == 1 and actions[-1] == "keys-rotate-done"
    assert "rekey" in actions
    ok, message = audit.verify()
    assert ok, message
    status = run_cli(ctx, "keys-rotate", "--status")
    assert status.exit_code == 0 and f"active key: {new}" in status.output
    assert "done" in status.output


def test_pages_keep_working_while_the_key_changes(ctx):
    """New writes use the new key at once; values under the old key still open
    (and show) until the rotation re-seals them."""
    admin = factories.admin()
    expected = populate(admin, people=2)
    old = crypto.active_key_id()
    rotation = keys.start(audit.SYSTEM, grace=0)
    new = rotation.to_key
    assert crypto.active_key_id() == new
    ticket_id = next(i for (m, i) in expected if m == "tickets")
    client = signed_in(ctx, admin)
    resp = client.get(f"/agent/tickets/{ticket_id}")
    assert resp.status_code == 200 and "cannot be decrypted" not in resp.get_data(as_text=True)
    person = factories.end_user()
    custom_fields.set_values(admin, "contacts", person, {"cf_passport": "NEW-1"})
    assert ContactFieldValue.get(ContactFieldValue.user == person.id).key_id == new
    assert SubjectKey.get(SubjectKey.subject_id == person.id).key_id == new
    assert old in key_ids_in_use()
    keys.rotate(audit.SYSTEM, batch=50)
    assert key_ids_in_use() == {new}
    assert_everything_opens(admin, expected)


def _subprocess_env(data_dir: Path, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(DESK_DATA_DIR=str(data_dir), DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64")
    if database_url:
        env["DESK_DATABASE_URL"] = database_url
    return env


def test_a_killed_rotation_resumes_and_finishes(make_app, backend, database_url, tmp_path):
    instance = tmp_path / "rotating"
    url = f"sqlite:///{instance / 'desk.db'}" if backend == "sqlite" else database_url
    app = make_app(DATA_DIR=str(instance), DATABASE_URL=url)
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin()
        expected = populate(admin, people=12)
        old = crypto.active_key_id()
        total = sum(keys.remaining(active="none").values())
        assert total > 40
        db.close()

    def progress() -> int:
        with app.app_context():
            db.connect(reuse_if_open=True)
            row = KeyRotation.select().first()
            return row.done if row else 0

    out, err = (tmp_path / "rotate.out").open("wb"), (tmp_path / "rotate.err").open("wb")
    proc = subprocess.Popen([sys.executable, "app.py", "keys-rotate", "--batch", "3", "--pause", "0.3"],
                            cwd=ROOT, env=_subprocess_env(instance, None if backend == "sqlite" else url),
                            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while progress() < 6:
            assert proc.poll() is None, (tmp_path / "rotate.err").read_text()
            assert time.monotonic() < deadline, "the rotation made no progress"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.close()
        err.close()
    assert proc.returncode == -signal.SIGKILL

    with app.app_context():
        db.connect(reuse_if_open=True)
        time.sleep(crypto.RELOAD_SECONDS)  # this process notices the new key file
        new = crypto.active_key_id()
        ring = key_file(app)
        assert new != old and ring["active"] == new and old in ring["keys"]  # not retired yet
        used = keys.usage()
        assert used.get(old) and used.get(new)  # half way
        assert_everything_opens(admin, expected)  # nothing unreadable in the middle
        status = run_cli(app, "keys-rotate", "--status")
        assert "running" in status.output and "left on old keys" in status.output

        result = run_cli(app, "keys-rotate", "--batch", "7")
        assert result.exit_code == 0, result.output
        assert "resuming" in result.output
        assert KeyRotation.select().count() == 1 and KeyRotation.get().status == "done"
        assert crypto.active_key_id() == new
        assert old not in key_file(app)["keys"]
        assert key_ids_in_use() == {new}
        assert_everything_opens(admin, expected)
        ok, message = audit.verify()
        assert ok, message


def test_erased_people_keep_no_key_and_rotation_skips_them(ctx):
    from desk.services import erasure
    admin = factories.admin()
    populate(admin, people=2)
    person = factories.end_user(name="Gone Soon")
    erasure.start(admin, person.id, "anonymize", erasure.placeholder(person))
    row = SubjectKey.get(SubjectKey.subject_id == person.id)
    assert row.wrapped_key is None and row.key_id is None
    assert run_cli(ctx, "keys-rotate").exit_code == 0
    row = SubjectKey.get(SubjectKey.subject_id == person.id)
    assert row.wrapped_key is None and row.key_id is None


def test_a_rotation_keeps_the_key_of_live_api_tokens(ctx):
    """Tokens are kept only as keyed hashes: the key they were made under stays
    until they expire or are revoked, so a rotation never turns them away."""
    from desk.services import keys
    from desk.services import tokens
    person = factories.end_user()
    row, raw = tokens.create(person, "laptop")
    before = row.key_id
    report = keys.rotate(audit.SYSTEM, grace=0)
    assert before in report.referenced and before not in report.retired
    assert tokens.authenticate(raw, "127.0.0.1") is not None
    tokens.revoke(person, row.id)
    report = keys.rotate(audit.SYSTEM, grace=0)
    assert before in report.retired
