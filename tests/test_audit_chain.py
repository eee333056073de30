"""The audit chain is tamper-proof against anyone who can write to the
database: each link is an HMAC under a key outside it, and signed checkpoints
in the witness file (outside it too) catch removed newest entries and a chain
re-hashed as a whole. Each forgery is made the way an attacker would, with SQL
on the real database, and ``audit-verify`` must name the check and the entry."""
from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk import migrations
from desk.cli import cli
from desk.db import db
from desk.models import AuditEntry
from desk.models import AuditHead
from desk.models import Department
from desk.models import MailMessage
from desk.services import audit_chain
from desk.services import keys
from tests import factories


def run_cli(app, *args):
    return CliRunner().invoke(cli, list(args), obj={"app": app})


def entries(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        audit.create(audit.SYSTEM, Department, name=f"Department {i}")


def checkpoint(app):
    return audit_chain.checkpoint(dict(app.config), force=True)


def sql(statement: str, params=()) -> None:
    """Write to the database behind desk's back, as an attacker with the file would."""
    with db.atomic():
        db.execute_sql(statement.replace("?", db.param), params)


def rows() -> list[AuditEntry]:
    return list(AuditEntry.select().order_by(AuditEntry.seq))


def rehash_from(seq: int, keyed: bool = True) -> None:
    """Recompute every hash from entry ``seq`` on with plain SHA-256 (all an
    attacker without the key can do) and point the chain head at the result."""
    prev = AuditEntry.get(AuditEntry.seq == seq - 1).hash if seq > 1 else audit.GENESIS
    for entry in AuditEntry.select().where(AuditEntry.seq >= seq).order_by(AuditEntry.seq):
        new = crypto.chain_hash(prev, audit._payload(entry))
        sql("UPDATE audit_entry SET prev_hash = ?, hash = ?, key_id = ? WHERE id = ?",
            (prev, new, entry.key_id if keyed else "", entry.id))
        prev = new
    sql("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def broken(app, check: str, from_entry: int) -> str:
    result = audit.verify()
    assert not result.ok and result.failed_check == check, result
    assert result.from_entry == from_entry, result
    out = run_cli(app, "audit-verify")
    assert out.exit_code == 1
    assert f"BROKEN ({check} check failed, from entry #{from_entry})" in out.output, out.output
    return result.message


def test_an_honest_instance_verifies_with_its_checkpoints(ctx, caplog):
    entries(5)
    with caplog.at_level(logging.INFO, logger="desk.audit"):
        first = checkpoint(ctx)
    assert first.seq == AuditHead.get_by_id(1).seq
    entries(3, 5)
    second = checkpoint(ctx)
    assert second.seq == first.seq + 3
    path = Path(ctx.config["DATA_DIR"]) / "audit-witness.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["seq"] == first.seq
    assert lines[0] in caplog.text  # the same line went to the log
    result = audit.verify()
    assert result.ok and not result.failed_check and result.checkpoints == 2, result
    assert result.last_checkpoint == second.seq and result.entries == second.seq
    ok, message = result  # older callers unpack (ok, message)
    assert ok and "chain intact" in message and "2 checkpoints agree" in message
    out = run_cli(ctx, "audit-verify")
    assert out.exit_code == 0 and out.output.startswith("OK: ")
    # Every entry is keyed: it names the key of its HMAC.
    assert {e.key_id for e in rows()} == {crypto.active_key_id()}


def test_removing_the_newest_entries_and_moving_the_head_back_is_caught(ctx):
    entries(6)
    cp = checkpoint(ctx)
    keep = cp.seq - 3
    last = AuditEntry.get(AuditEntry.seq == keep)
    sql("DELETE FROM audit_entry WHERE seq > ?", (keep,))
    sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (keep, last.hash))
    message = broken(ctx, audit.TRUNCATED, keep + 1)
    assert f"names entry #{cp.seq}" in message


def test_removing_the_newest_entries_without_moving_the_head_is_caught(ctx):
    entries(4)
    head = AuditHead.get_by_id(1)
    sql("DELETE FROM audit_entry WHERE seq = ?", (head.seq,))
    broken(ctx, audit.HEAD, head.seq)


def test_a_rewritten_entry_is_caught(ctx):
    entries(5)
    checkpoint(ctx)
    target = rows()[-3]
    sql("UPDATE audit_entry SET changes = ? WHERE id = ?",
        (target.changes.replace("Department", "Departmenx"), target.id))
    message = broken(ctx, audit.REWRITTEN, target.seq)
    assert f"entry #{target.seq}" in message and "altered" in message


def test_a_rewritten_entry_with_the_chain_rehashed_is_caught(ctx):
    entries(5)
    checkpoint(ctx)
    target = rows()[-4]
    sql("UPDATE audit_entry SET changes = ? WHERE id = ?",
        (target.changes.replace("Department", "Departmenx"), target.id))
    rehash_from(target.seq)
    message = broken(ctx, audit.REHASHED, target.seq)
    assert "without the audit key" in message


def test_a_chain_rehashed_as_unkeyed_is_caught(ctx):
    entries(5)
    target = rows()[-2]
    sql("UPDATE audit_entry SET action = 'login' WHERE id = ?", (target.id,))
    rehash_from(target.seq, keyed=False)
    message = broken(ctx, audit.REHASHED, target.seq)
    assert "unkeyed" in message


def test_a_whole_chain_rehashed_before_the_cut_over_is_caught_by_the_witness(ctx):
    """Moving the cut-over past the end (so every entry may be unkeyed) and
    re-hashing everything passes every link check; the checkpoint does not."""
    entries(4)
    checkpoint(ctx)
    sql("UPDATE audit_entry SET changes = ? WHERE seq = 2", ('{"name": [null, "Forged"]}',))
    rehash_from(1, keyed=False)
    sql("UPDATE audit_head SET keyed_from = seq + 1 WHERE id = 1")
    message = broken(ctx, audit.CUTOVER, 1)
    assert "keyed chain starts" in message


def test_an_old_database_keeps_its_unkeyed_entries_and_the_witness_guards_them(ctx):
    """Upgrading: entries made before the chain was keyed (plain SHA-256)
    still verify; new ones are keyed from the cut-over on."""
    migrations.rollback(db.obj, 20)  # the schema before the keyed chain
    prev = audit.GENESIS
    for seq in range(1, 5):
        entry = AuditEntry(seq=seq, created_at=audit.utcnow(), actor_id=None, action="record",
                           record_type="Department", record_id=str(seq), subject_id=None,
                           changes="{}", ip="")
        digest = crypto.chain_hash(prev, audit._payload(entry))
        sql("INSERT INTO audit_entry (seq, created_at, actor_id, action, record_type, record_id, "
            "subject_id, changes, ip, prev_hash, hash) VALUES (?, ?, NULL, 'record', 'Department', "
            "?, NULL, '{}', '', ?, ?)", (seq, entry.created_at.isoformat(sep=" "), str(seq), prev, digest))
        prev = digest
    sql("UPDATE audit_head SET seq = 4, hash = ? WHERE id = 1", (prev,))
    migrations.migrate(db.obj)
    assert AuditHead.get_by_id(1).keyed_from == 5
    assert audit.verify().ok
    checkpoint(ctx)  # the witness now holds the unkeyed part too
    entries(2)
    assert [e.key_id != "" for e in rows()] == [False] * 4 + [True] * 2
    assert audit.verify().ok
    assert run_cli(ctx, "audit-verify").exit_code == 0

    # Rewriting an unkeyed entry and re-hashing what follows it as unkeyed
    # would break the first keyed entry...
    sql("UPDATE audit_entry SET record_id = 'x' WHERE seq = 2")
    rehash_from(2, keyed=False)
    sql("UPDATE audit_entry SET key_id = ? WHERE seq > 4", (crypto.active_key_id(),))
    # ...and, before that, the checkpoint made while they were the whole chain.
    message = broken(ctx, audit.CHECKPOINT, 1)
    assert "entry #4" in message


def test_unkeyed_entries_rewritten_before_any_keyed_one_are_caught_by_the_checkpoint(ctx):
    migrations.rollback(db.obj, 20)
    prev = audit.GENESIS
    for seq in range(1, 4):
        entry = AuditEntry(seq=seq, created_at=audit.utcnow(), action="record", record_type="Department",
                           record_id=str(seq), changes="{}", ip="")
        digest = crypto.chain_hash(prev, audit._payload(entry))
        sql("INSERT INTO audit_entry (seq, created_at, action, record_type, record_id, changes, ip, "
            "prev_hash, hash) VALUES (?, ?, 'record', 'Department', ?, '{}', '', ?, ?)",
            (seq, entry.created_at.isoformat(sep=" "), str(seq), prev, digest))
        prev = digest
    sql("UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1", (prev,))
    migrations.migrate(db.obj)
    checkpoint(ctx)
    sql("UPDATE audit_entry SET record_id = 'forged' WHERE seq = 2")
    rehash_from(2, keyed=False)  # all plain SHA-256, as before the cut-over
    message = broken(ctx, audit.CHECKPOINT, 1)
    assert "differ from the signed checkpoint" in message


def test_a_forged_witness_line_is_caught(ctx):
    entries(3)
    cp = checkpoint(ctx)
    path = audit.witness_path()
    forged = json.loads(path.read_text().splitlines()[0])
    forged.update(seq=cp.seq + 5, mac="0" * 64)
    with path.open("a") as fh:
        fh.write(json.dumps(forged) + "\n")
    message = broken(ctx, audit.WITNESS, cp.seq + 5)
    assert "line 2 of the witness file" in message and "not signed" in message


def test_checkpoints_come_every_n_entries_or_m_minutes(ctx):
    entries(2)
    assert audit.checkpoint(every_entries=5, every_minutes=60) is not None  # the first one
    entries(4, 2)
    assert audit.checkpoint(every_entries=5, every_minutes=60) is None  # 4 new: not yet
    entries(1, 6)
    assert audit.checkpoint(every_entries=5, every_minutes=60).seq == AuditHead.get_by_id(1).seq
    assert audit.checkpoint(every_entries=5, every_minutes=0) is None  # nothing new
    entries(1, 7)
    assert audit.checkpoint(every_entries=5, every_minutes=0) is not None  # minutes passed
    assert len(audit.checkpoints()) == 3


def test_old_entries_stay_verifiable_after_keys_rotate_retires_their_key(ctx):
    factories.admin()
    entries(3)
    old = crypto.active_key_id()
    checkpoint(ctx)
    report = keys.rotate(audit.SYSTEM, grace=0)
    assert old in report.retired and old not in crypto.key_ids()
    ring = json.loads((Path(ctx.config["DATA_DIR"]) / "keys.json").read_text())
    assert old not in ring["keys"] and old in ring["audit_keys"]
    entries(2, 3)
    assert {e.key_id for e in rows()} == {old, crypto.active_key_id()}
    checkpoint(ctx)
    result = audit.verify()
    assert result.ok and result.checkpoints == 2, result


def test_the_checkpoint_is_mailed_to_administrators_when_mail_is_configured(make_app):
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=2)  # queued only; nobody delivers here
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin(email="ada@example.com")
        factories.agent(email="not.admin@example.com")
        assert audit_chain.mail_checkpoint(dict(app.config)) == 1
        mail = MailMessage.get(MailMessage.subject == "desk audit checkpoint")
        line = audit.witness_path().read_text().splitlines()[-1]
        assert mail.recipient == admin.email and line in mail.body
    outbox = make_app()  # no SMTP host: mail would only go to the outbox folder
    with outbox.app_context():
        assert audit_chain.mail_checkpoint(dict(outbox.config)) == 0
