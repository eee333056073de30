"""The only writer of audit entries, and the only way to write audited models.

``create``, ``update`` and ``delete`` perform the write and append the entry in
one transaction; ``record`` appends an event (login, export, ...). Entries form
a keyed hash chain (an HMAC under a key outside the database) anchored in
AuditHead and, outside the database, in signed checkpoints appended to a
witness file (``checkpoint``); ``verify`` walks the chain against both.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

from flask import current_app
from peewee import Model

from desk import crypto
from desk import textindex
from desk.db import is_in
from desk.db import is_postgres
from desk.db import write_transaction
from desk.models import AuditEntry
from desk.models import AuditHead
from desk.models import BaseModel
from desk.models import utcnow
from desk.models.base import _audited_write

log = logging.getLogger("desk.audit")

GENESIS = "0" * 64
WITNESS_FILE = "audit-witness.jsonl"
VIA = "_via"

# How the acting user reached desk when not through its pages (an API token):
# every entry written meanwhile says so under "_via".
_channel: contextvars.ContextVar[str] = contextvars.ContextVar("desk_audit_channel", default="")
SECRET = "[secret]"


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a signed-in user, or the system (CLI, jobs)."""

    user_id: int | None = None
    ip: str = ""

    @classmethod
    def of(cls, user, ip: str | None = "") -> "Actor":
        return cls(getattr(user, "id", None) if user is not None else None, ip or "")


SYSTEM = Actor()


@contextlib.contextmanager
def _audited() -> Iterator[None]:
    token = _audited_write.set(True)
    try:
        with write_transaction():
            yield
    finally:
        _audited_write.reset(token)


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return value._pk
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _record_type(instance: BaseModel) -> str:
    """The model's name, also when ``instance`` is a proxy to it (current_user)."""
    return instance._meta.model.__name__


def _record_id(instance: BaseModel) -> str:
    pk = instance._pk
    if isinstance(pk, tuple):
        return ":".join(str(_plain(p)) for p in pk)
    return str(_plain(pk))


def _present(instance: BaseModel, field: str, value: Any, subject_id: int | None) -> Any:
    if value is None:
        return None
    if field in instance.secret_fields:
        return SECRET
    if field in instance.personal_fields and subject_id is not None:
        return crypto.seal_for_subject(subject_id, _plain(value))
    if field in instance.text_fields:
        return crypto.seal_for_record(_record_type(instance), _record_id(instance), subject_id,
                                      _plain(value))
    return _plain(value)


def _diff(instance: BaseModel, old: dict, new: dict) -> dict[str, list]:
    subject = instance.audit_subject_id()
    changes = {}
    for field in sorted(set(old) | set(new)):
        before, after = _plain(old.get(field)), _plain(new.get(field))
        if before != after:
            changes[field] = [_present(instance, field, before, subject),
                              _present(instance, field, after, subject)]
    return changes


def _head() -> AuditHead:
    """The chain head, locked for this transaction on PostgreSQL (on SQLite the
    write transaction already holds the database's only write lock)."""
    head_query = AuditHead.select().where(AuditHead.id == 1)
    if is_postgres():
        head_query = head_query.for_update()
    return head_query.get()


def _entry(head_seq: int, prev_hash: str, actor: Actor, action: str, record_type: str,
           record_id: str | None, subject_id: int | None, changes: dict,
           created_at: dt.datetime) -> AuditEntry:
    if _channel.get():
        changes = {**changes, VIA: _channel.get()}
    ip = _sealed_ip(actor)
    entry = AuditEntry(seq=head_seq + 1, created_at=created_at, actor_id=actor.user_id,
                       action=action, record_type=record_type, record_id=record_id,
                       subject_id=subject_id, changes=json.dumps(changes, sort_keys=True),
                       ip=ip, prev_hash=prev_hash, key_id=crypto.audit_key_id())
    entry.hash = crypto.chain_mac(entry.key_id, prev_hash, _payload(entry))
    return entry


def _sealed_ip(actor: Actor) -> str | None:
    """The actor's address as the log keeps it: sealed for the person, so their
    erasure makes it unreadable."""
    if actor.ip and actor.user_id is not None:
        return crypto.seal_for_subject(actor.user_id, actor.ip)
    return actor.ip


def _append(actor: Actor, action: str, record_type: str, record_id: str | None,
            subject_id: int | None, changes: dict) -> AuditEntry:
    head = _head()
    entry = _entry(head.seq, head.hash, actor, action, record_type, record_id, subject_id,
                   changes, utcnow())
    entry.save(force_insert=True)
    AuditHead.update(seq=entry.seq, hash=entry.hash).where(AuditHead.id == 1).execute()
    return entry


# The columns a bulk append writes, in this order (``_append_many``).
_COLUMNS = ("seq", "created_at", "actor_id", "action", "record_type", "record_id", "subject_id",
            "changes", "ip", "prev_hash", "hash", "key_id")


def _append_many(actor: Actor, action: str, record_type: str, record_ids: list[str],
                 details: list[tuple[int | None, dict]] | None = None) -> None:
    """One entry per record, chained as ``_append`` would chain them, written
    with one prepared INSERT run for every row and one update of the head.
    What is the same for every entry (time, actor, key, the HMAC's key
    schedule) is worked out once: no model object or statement per entry
    (they would cost more than the purge itself). ``details``: per record,
    its (subject id, changes); none by default."""
    head = _head()
    seq, prev, now = head.seq, head.hash, utcnow()
    kid = crypto.audit_key_id()
    mac = crypto.chain_macs(kid)
    via = _channel.get()
    ip = _sealed_ip(actor)
    actor_id = actor.user_id
    created = now.isoformat()  # as _payload reads it back
    created_db = AuditEntry.created_at.db_value(now)
    no_changes = json.dumps({VIA: via} if via else {}, sort_keys=True)
    dumps = json.dumps
    rows = []
    for i, record_id in enumerate(record_ids):
        subject_id, changes = details[i] if details else (None, None)
        if changes:
            text = dumps({**changes, VIA: via} if via else changes, sort_keys=True)
        else:
            text = no_changes
        seq += 1
        link = mac(prev, _payload_of(seq, created, actor_id, action, record_type, record_id, subject_id,
                                     text, ip))
        rows.append((seq, created_db, actor_id, action, record_type, record_id, subject_id, text, ip,
                     prev, link, kid))
        prev = link
    database = AuditEntry._meta.database
    marks = ", ".join([database.param] * len(_COLUMNS))
    columns = ", ".join(f'"{AuditEntry._meta.fields[name].column_name}"' for name in _COLUMNS)
    database.cursor().executemany(
        f'INSERT INTO "{AuditEntry._meta.table_name}" ({columns}) VALUES ({marks})', rows)  # nosec B608
    AuditHead.update(seq=seq, hash=prev).where(AuditHead.id == 1).execute()


def _payload(entry: AuditEntry) -> str:
    return _payload_of(entry.seq, entry.created_at.isoformat(), entry.actor_id, entry.action,
                       entry.record_type, entry.record_id, entry.subject_id, entry.changes, entry.ip)


def _payload_of(*values) -> str:
    """What an entry's link signs: its values in column order, times in ISO 8601."""
    return json.dumps(values, ensure_ascii=False)


def _fields(instance: BaseModel) -> dict:
    return {name: instance.__data__.get(name) for name in instance._meta.fields}


def create(actor: Actor, model: type[BaseModel], **values) -> BaseModel:
    """Insert a row and record who created it with every value."""
    with _audited():
        instance = model.create(**values)
        textindex.added(model._meta.table_name, [instance._pk])
        changes = _diff(instance, {}, _fields(instance))
        _append(actor, "create", model.__name__, _record_id(instance),
                instance.audit_subject_id(), changes)
    return instance


SCRUBBED = "[scrubbed]"


def update(actor: Actor, instance: BaseModel, action: str = "update", redact: bool = False,
           **values) -> dict:
    """Change fields of a row and record old and new values; returns the changes
    (empty, and nothing written, when no value differs). With ``redact`` the
    entry names the fields that changed but records no value (scrubbing)."""
    old = _fields(instance)
    new = dict(old)
    new.update({k: _plain(v) for k, v in values.items()})
    if all(_plain(old.get(k)) == new[k] for k in values):
        return {}
    with _audited():
        changes = _diff(instance, old, new) if not redact else {
            k: [SCRUBBED, SCRUBBED] for k in values if _plain(old.get(k)) != new[k]}
        table = instance._meta.table_name
        reindex = bool(set(values) & set(textindex.indexed_columns(table)))
        if reindex:
            textindex.removing(table, [instance._pk])
        for name, value in values.items():
            setattr(instance, name, value)
        dirty = [instance._meta.fields[name] for name in values]
        if "updated_at" in instance._meta.fields and "updated_at" not in values:
            instance.updated_at = utcnow()
            dirty.append(instance._meta.fields["updated_at"])
        instance.save(only=dirty)
        if reindex:
            textindex.added(table, [instance._pk])
        _append(actor, action, _record_type(instance), _record_id(instance),
                instance.audit_subject_id(), changes)
    return changes


def delete(actor: Actor, instance: BaseModel) -> None:
    """Delete a row for good and record the values it had."""
    with _audited():
        changes = _diff(instance, _fields(instance), {})
        if not isinstance(instance._pk, tuple):
            textindex.removing(instance._meta.table_name, [instance._pk], deleting=True)
        instance.delete_instance()
        _append(actor, "delete", _record_type(instance), _record_id(instance),
                instance.audit_subject_id(), changes)


def purge(actor: Actor, model: type[BaseModel], ids: list[int]) -> int:
    """Delete rows for good (children go by ON DELETE CASCADE), one "purge"
    entry per row, no values: what they held is gone with them."""
    if not ids:
        return 0
    with _audited():
        textindex.removing(model._meta.table_name, ids, deleting=True)
        count = model.delete().where(is_in(model._meta.primary_key, ids)).execute()
        _append_many(actor, "purge", model.__name__, [str(record_id) for record_id in ids])
    return count


def scrub_many(actor: Actor, model: type[BaseModel], rows: list[tuple[BaseModel, dict]]) -> int:
    """Replace text in many rows of one model at once (the erasure's scrub):
    one "scrub" entry per row naming the fields that changed, never their
    values, written in bulk; the text index follows in the same transaction.
    The rows' last-activity times stay as they were (no one acted on them)."""
    rows = [(instance, values) for instance, values in rows if values]
    if not rows:
        return 0
    table = model._meta.table_name
    ids = [instance._pk for instance, _ in rows]
    database = model._meta.database
    by_fields: dict[tuple[str, ...], list[list]] = {}
    for instance, values in rows:
        names = tuple(sorted(values))
        by_fields.setdefault(names, []).append([values[n] for n in names] + [instance._pk])
    with _audited():
        textindex.removing(table, ids)
        for names, params in by_fields.items():
            sets = ", ".join(f'"{model._meta.fields[n].column_name}" = {database.param}' for n in names)
            database.cursor().executemany(
                f'UPDATE "{table}" SET {sets} WHERE "{model._meta.primary_key.column_name}" = '  # nosec B608
                f"{database.param}", params)
        textindex.added(table, ids)
        _append_many(actor, "scrub", model.__name__, [str(i) for i in ids],
                     [(instance.audit_subject_id(), {n: [SCRUBBED, SCRUBBED] for n in sorted(values)})
                      for instance, values in rows])
    for instance, values in rows:
        for name, value in values.items():
            setattr(instance, name, value)
    return len(rows)


def record(actor: Actor, action: str, record_type: str, record_id: Any = None,
           subject_id: int | None = None, details: dict | None = None) -> AuditEntry:
    """Record an event that changes no row (login, failed login, export...).
    ``details`` values are sealed under ``subject_id`` when one is given."""
    sealed = {}
    for key, value in (details or {}).items():
        sealed[key] = crypto.seal_for_subject(subject_id, value) if subject_id else value
    with _audited():
        return _append(actor, action, record_type,
                       None if record_id is None else str(record_id), subject_id, sealed)


@contextlib.contextmanager
def via(channel: str) -> Iterator[None]:
    """Mark every entry written inside as made through ``channel``
    (e.g. "API token desk_1a2b3c4d")."""
    token = _channel.set(channel)
    try:
        yield
    finally:
        _channel.reset(token)


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Group several audited writes into one transaction (all or nothing)."""
    with _audited():
        yield


WITHHELD = "[withheld]"


def read_changes(entry: AuditEntry, only_subject: int | None = None) -> dict[str, list]:
    """The entry's changes with sealed values opened (or "[erased]"). With
    ``only_subject``, values sealed for anyone else read "[withheld]"."""
    changes = json.loads(entry.changes)

    def reveal(value: Any) -> Any:
        if not crypto.is_sealed(value):
            return value
        if only_subject is not None and crypto.sealed_owner(value) != only_subject:
            return WITHHELD
        return crypto.open_sealed(value)

    return {k: [reveal(v) for v in pair] if isinstance(pair, list) else reveal(pair)
            for k, pair in changes.items()}


def rekey(actor: Actor, model: type[BaseModel], changes: list[tuple[Any, dict, dict]]) -> int:
    """Key rotation's writes: rows re-encrypted under another key (their
    content unchanged). Each (id, expected, values) is written only if the row
    still holds the ``expected`` values it was read with (a concurrent change
    wins); one "rekey" entry per batch records how many rows, no values."""
    with _audited():
        count = 0
        pk = model._meta.primary_key
        for record_id, expected, values in changes:
            unchanged = [getattr(model, name) == value for name, value in expected.items()]
            count += model.update(**values).where(pk == record_id, *unchanged).execute()
        _append(actor, "rekey", model.__name__, None, None, {"rows": count})
    return count


# -- the witness: signed checkpoints of the chain head, outside the database -------

@dataclass(frozen=True)
class Checkpoint:
    """One line of the witness file: the chain head at a moment, signed."""

    seq: int
    hash: str
    keyed_from: int
    at: str  # ISO 8601 UTC
    key: str
    line: int = 0

    def signed_text(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "keyed_from": self.keyed_from,
                           "at": self.at, "key": self.key}, sort_keys=True, separators=(",", ":"))

    def to_line(self) -> str:
        fields = json.loads(self.signed_text())
        fields["mac"] = crypto.witness_mac(self.key, self.signed_text())
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


class WitnessError(ValueError):
    """A witness line that is unreadable or not signed by this instance."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


def witness_path() -> Path:
    """The witness file: in the data folder, beside the keyring (0600)."""
    return Path(current_app.config["DATA_DIR"]) / WITNESS_FILE


def _parse_checkpoint(text: str, number: int) -> Checkpoint:
    try:
        fields = json.loads(text)
        cp = Checkpoint(int(fields["seq"]), str(fields["hash"]), int(fields["keyed_from"]),
                        str(fields["at"]), str(fields["key"]), number)
        mac = str(fields["mac"])
    except (ValueError, KeyError, TypeError):
        raise WitnessError(f"line {number} of the witness file is not a checkpoint") from None
    try:
        good = crypto.tokens_equal(crypto.witness_mac(cp.key, cp.signed_text()), mac)
    except crypto.CannotDecrypt:
        raise WitnessError(f"line {number} of the witness file is signed with key {cp.key}, "
                           "which is not in the keyring", cp.seq) from None
    if not good:
        raise WitnessError(f"line {number} of the witness file (entry #{cp.seq}) is not signed "
                           "by this instance's key: it was forged or changed", cp.seq)
    return cp


def checkpoints() -> list[Checkpoint]:
    """Every checkpoint of the witness file, checked (WitnessError if one is not)."""
    path = witness_path()
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_parse_checkpoint(text, n) for n, text in enumerate(lines, 1) if text.strip()]


def _last_checkpoint() -> Checkpoint | None:
    """The newest checkpoint (read from the end of the file), if any readable one."""
    path = witness_path()
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4096))
        tail = fh.read().decode("utf-8", "replace").splitlines()
    for text in reversed(tail):
        try:
            return _parse_checkpoint(text, 0)
        except WitnessError:
            continue
    return None


def checkpoint(every_entries: int, every_minutes: int, force: bool = False) -> Checkpoint | None:
    """Append a signed checkpoint of the chain head (entry, hash, time) to the
    witness file and the log when ``every_entries`` entries or
    ``every_minutes`` minutes passed since the last one (``force``: whenever
    there is something new); returns it, or None when none was due."""
    head = AuditHead.get_by_id(1)
    last = _last_checkpoint()
    if head.seq == 0 or (last is not None and head.seq <= last.seq):
        return None
    now = utcnow()
    due = (force or last is None or head.seq - last.seq >= every_entries
           or now - dt.datetime.fromisoformat(last.at) >= dt.timedelta(minutes=every_minutes))
    if not due:
        return None
    cp = Checkpoint(head.seq, head.hash, head.keyed_from, now.isoformat(timespec="seconds"),
                    crypto.audit_key_id())
    line = cp.to_line()
    crypto.append_private_line(witness_path(), line)
    log.info("audit checkpoint %s", line)
    return cp


def last_checkpoint_line() -> str | None:
    """The newest checkpoint as its signed witness line (for mailing it away)."""
    cp = _last_checkpoint()
    return cp.to_line() if cp else None


# -- verification --------------------------------------------------------------

WITNESS = "witness"  # a witness line is unreadable, forged or under an unknown key
CUTOVER = "cutover"  # where the keyed chain starts was moved
MISSING = "missing"  # an entry in the middle is gone
REWRITTEN = "rewritten"  # an entry does not match its hash, or its predecessor
REHASHED = "rehashed"  # an entry carries a hash made without the audit key
KEY = "key"  # an entry names a key that is not in the keyring
CHECKPOINT = "checkpoint"  # the chain differs from a signed checkpoint
TRUNCATED = "truncated"  # entries a checkpoint names are gone
HEAD = "head"  # the chain head names entries that are gone


@dataclass(frozen=True)
class ChainCheck:
    """What ``verify`` found. ``failed_check`` names the check that failed
    ("" when ok) and ``from_entry`` the sequence number (#) of the first entry
    concerned. Unpacks as ``(ok, message)``."""

    ok: bool
    message: str
    failed_check: str = ""
    from_entry: int | None = None
    entries: int = 0
    checkpoints: int = 0
    last_checkpoint: int | None = None
    checked_at: dt.datetime = dataclass_field(default_factory=utcnow)

    def __iter__(self):
        return iter((self.ok, self.message))

    def __getitem__(self, index):
        return (self.ok, self.message)[index]


def _link_problem(entry: AuditEntry, prev: str, keyed_from: int) -> tuple[str, str] | None:
    """(check, message) when ``entry`` does not follow ``prev`` as made, else None."""
    payload, seq = _payload(entry), entry.seq
    if not entry.key_id:
        if seq >= keyed_from:
            return REHASHED, (f"entry #{seq} carries an unkeyed hash although the chain is keyed "
                              f"from #{keyed_from}: it was rewritten and re-hashed without the key")
        made = crypto.chain_hash(prev, payload)
    else:
        try:
            made = crypto.chain_mac(entry.key_id, prev, payload)
        except crypto.CannotDecrypt:
            return KEY, (f"entry #{seq} was made with key {entry.key_id}, which is not in the "
                         "keyring: it cannot be checked")
    if entry.prev_hash != prev:
        return REWRITTEN, (f"entry #{seq} does not follow entry #{seq - 1}: "
                           "an entry before it was changed or removed")
    if not crypto.tokens_equal(made, entry.hash):
        if entry.key_id and crypto.tokens_equal(crypto.chain_hash(prev, payload), entry.hash):
            return REHASHED, (f"entry #{seq} (id {entry.id}) was rewritten and re-hashed "
                              "without the audit key")
        return REWRITTEN, f"entry #{seq} (id {entry.id}) was altered: it does not match its hash"
    return None


def verify(batch: int = 1000) -> ChainCheck:
    """Walk the chain: every link under its key, the chain head, and the
    signed checkpoints of the witness file (which catch removed newest
    entries and a chain re-hashed as a whole)."""
    head = AuditHead.get_by_id(1)
    try:
        marks = checkpoints()
    except WitnessError as err:
        return ChainCheck(False, str(err), WITNESS, err.seq)
    last_mark = marks[-1] if marks else None
    summary = dict(checkpoints=len(marks), last_checkpoint=last_mark.seq if last_mark else None)
    for cp in marks:
        if cp.keyed_from != head.keyed_from:
            first = min(cp.keyed_from, head.keyed_from)
            return ChainCheck(False, f"the chain head says the keyed chain starts at #{head.keyed_from}, "
                              f"the checkpoint of {cp.at} says #{cp.keyed_from}: entries were "
                              "re-hashed without the key", CUTOVER, first, **summary)
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in marks:
        by_seq.setdefault(cp.seq, []).append(cp)
    prev, expected, matched = GENESIS, 1, 0
    while True:
        rows = list(AuditEntry.select().where(AuditEntry.seq >= expected)
                    .order_by(AuditEntry.seq).limit(batch))
        for entry in rows:
            if entry.seq != expected:
                return ChainCheck(False, f"entry #{expected} is missing (next is #{entry.seq})",
                                  MISSING, expected, expected - 1, **summary)
            problem = _link_problem(entry, prev, head.keyed_from)
            if problem:
                return ChainCheck(False, problem[1], problem[0], entry.seq, expected - 1, **summary)
            for cp in by_seq.get(entry.seq, ()):
                if cp.hash != entry.hash:
                    return ChainCheck(
                        False, f"entries #{matched + 1} to #{entry.seq} differ from the signed "
                        f"checkpoint of {cp.at} (entry #{cp.seq}): they were rewritten and the "
                        "chain re-hashed", CHECKPOINT, matched + 1, expected - 1, **summary)
                matched = entry.seq
            prev, expected = entry.hash, expected + 1
        if len(rows) < batch:
            break
    count = expected - 1
    if head.seq != count or head.hash != prev:
        return ChainCheck(False, f"entries after #{count} were removed (the chain head names "
                          f"#{head.seq})", HEAD, count + 1, count, **summary)
    if last_mark and max(cp.seq for cp in marks) > count:
        newest = max(marks, key=lambda cp: cp.seq)
        return ChainCheck(False, f"entries after #{count} were removed: the signed checkpoint of "
                          f"{newest.at} names entry #{newest.seq}", TRUNCATED, count + 1, count,
                          **summary)
    if last_mark:
        note = f"; {len(marks)} checkpoints agree, the last at #{last_mark.seq} ({last_mark.at})"
    else:
        note = "; no checkpoint in the witness file yet"
    return ChainCheck(True, f"{count} entries, chain intact{note}", "", None, count, **summary)
