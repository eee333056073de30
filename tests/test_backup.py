"""``app.py backup`` and ``app.py restore``: a demo instance is backed up (the
database with SQLite's backup API or pg_dump, the files, a manifest of SHA-256
sums, the keys apart), restored into a new empty instance by the command as a
user runs it, and the restored instance reads the same: same rows, same files
byte for byte, sealed audit values open, and the audit chain verifies. Damaged
backups, missing keys and non-empty instances are refused with clear messages."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from desk import audit
from desk import create_app
from desk.cli import cli
from desk.db import db
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Comment
from desk.models import Ticket
from desk.models import User
from desk.services import attachments as files
from desk.services import demo
from desk.services import storage
from tests.conftest import TEST_CONFIG
from tests.serverproc import ROOT


def invoke(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def command(env: dict, *args) -> subprocess.CompletedProcess:
    """``python app.py ...`` as a user runs it, with only these DESK_ settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    base.update(DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64", **env)
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=300)


def snapshot(config) -> dict:
    """What the instance holds, in a comparable form."""
    sealed = [e for e in AuditEntry.select().order_by(AuditEntry.seq) if "sealed:v1:" in e.changes]
    return {
        "users": sorted((u.id, u.name, u.email, u.deleted_at is None) for u in User.select()),
        "tickets": sorted((t.id, t.subject, t.status) for t in Ticket.select()),
        "comments": Comment.select().count(),
        "audit": AuditEntry.select().count(),
        "opened": [audit.read_changes(e) for e in sealed],
        "files": {a.stored_name: storage.of(config).read_bytes(files.key_of(a.stored_name))
                  for a in Attachment.select()},
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def empty_database(backend: str, database_url: str, tmp_path: Path) -> str:
    """A new, empty database for the restored instance."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'desk.db'}"
    import psycopg2
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()
    db.obj.close_all()
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    conn.close()
    return database_url


def test_backup_then_restore_into_a_new_instance_reads_the_same(ctx, backend, database_url, tmp_path):
    demo.fill()
    before = snapshot(ctx.config)
    assert before["files"] and before["opened"]
    assert any("Ann Customer" in json.dumps(c, ensure_ascii=False) for c in before["opened"])

    out, keys = tmp_path / "backups" / "monday", tmp_path / "keys-elsewhere"
    result = invoke(ctx, "backup", "--out", str(out), "--keys-out", str(keys))
    assert result.exit_code == 0, result.output
    assert "different places" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["database"] == ("sqlite" if backend == "sqlite" else "postgresql")
    listed = set(manifest["files"])
    assert {f"attachments/{n[:2]}/{n}" for n in before["files"]} <= listed
    assert manifest["database_file"] in listed
    assert mode(out) == 0o700 and mode(out / manifest["database_file"]) == 0o600
    assert not (out / "keys.json").exists() and not (out / "secret_key").exists()
    assert mode(keys / "keys.json") == 0o600 and mode(keys / "secret_key") == 0o600
    assert set(json.loads((keys / "keys.json").read_text())["keys"]) == set(manifest["key_ids"])

    restored_dir = tmp_path / "restored"
    env = {"DESK_DATA_DIR": str(restored_dir),
           "DESK_DATABASE_URL": empty_database(backend, database_url, tmp_path)}
    done = command(env, "restore", str(out), "--keys", str(keys))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain OK" in done.stdout
    verified = command(env, "audit-verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stdout
    assert (restored_dir / "keys.json").read_text() == (keys / "keys.json").read_text()

    restored = create_app(dict(TEST_CONFIG, DATA_DIR=str(restored_dir),
                               DATABASE_URL=env["DESK_DATABASE_URL"],
                               SECRET_KEY=(keys / "secret_key").read_text()))
    with restored.app_context():
        assert snapshot(restored.config) == before


def test_restore_refuses_damage_missing_keys_and_a_used_instance(ctx, tmp_path):
    demo.fill()
    out, keys = tmp_path / "backup", tmp_path / "keys"
    assert invoke(ctx, "backup", "--out", str(out), "--keys-out", str(keys)).exit_code == 0
    fresh = {"DESK_DATA_DIR": str(tmp_path / "fresh")}

    # Without the keys the restored data could not be read: refused before anything is written.
    done = command(fresh, "restore", str(out))
    assert done.returncode == 1 and "sealed with keys" in done.stderr
    assert not (tmp_path / "fresh" / "attachments").exists()

    # Into an instance with data: refused.
    used = invoke(ctx, "restore", str(out), "--keys", str(keys))
    assert used.exit_code == 1 and "not empty" in used.output

    # A damaged file: refused, naming it.
    victim = next(p for p in (out / "attachments").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"!")
    done = command(fresh, "restore", str(out), "--keys", str(keys))
    assert done.returncode == 1 and "damaged" in done.stderr
    assert victim.name in done.stderr
    assert not (tmp_path / "fresh" / "attachments").exists()

    # Not a backup at all.
    done = command(fresh, "restore", str(tmp_path))
    assert done.returncode == 1 and "not a desk backup" in done.stderr


def test_backup_refuses_a_used_folder_and_keys_inside_the_backup(ctx, tmp_path):
    demo.fill()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("mine")
    result = invoke(ctx, "backup", "--out", str(taken))
    assert result.exit_code == 1 and "not empty" in result.output
    assert (taken / "something").read_text() == "mine"
    result = invoke(ctx, "backup", "--out", str(tmp_path / "b"), "--keys-out", str(tmp_path / "b" / "k"))
    assert result.exit_code == 1 and "apart" in result.output
    assert not (tmp_path / "b").exists()
    result = invoke(ctx, "backup", "--out", str(Path(ctx.config["DATA_DIR"]) / "b"))
    assert result.exit_code == 1 and "outside the data folder" in result.output
    # Without --keys-out the command says the keys are not in the backup.
    result = invoke(ctx, "backup", "--out", str(tmp_path / "plain"))
    assert result.exit_code == 0 and "keys are NOT in the backup" in result.output
    assert not list((tmp_path / "plain").glob("keys*"))


def test_scheduled_backups_follow_the_setting_and_keep_the_newest(make_app, tmp_path):
    import datetime as dt
    from desk.services import backup
    folder = tmp_path / "nightly"
    app = make_app(BACKUP_DIR=str(folder), BACKUP_EVERY_HOURS=24, BACKUP_KEEP=2)
    with app.app_context():
        demo.fill()
        assert backup.scheduled_backup(dict(app.config, BACKUP_DIR="")) is None  # off
        start = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.timezone.utc)
        first = backup.scheduled_backup(app.config, now=start)
        assert first.name == "desk-backup-20260301T020000Z"
        assert backup.read_manifest(first)["files"]
        assert backup.scheduled_backup(app.config, now=start + dt.timedelta(hours=23)) is None
        made = [backup.scheduled_backup(app.config, now=start + dt.timedelta(days=d)) for d in (1, 2)]
        assert all(made)
        assert sorted(p.name for p in folder.iterdir()) == [p.name for p in made]
        assert not list(folder.glob("*/keys.json"))
