"""The purge: what has waited in the recycle bin past the retention period is
removed for good, rows and files, in small batches so the site stays
responsive, once across every process, resumable after a crash."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Callable, Iterable, Iterator

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.db import is_in
from desk.db import roomy_cache
from desk.models import Attachment
from desk.models import Comment
from desk.models import FileRemoval
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import attachments as files
from desk.services import custom_fields
from desk.services import leases
from desk.services import retention

LOCK = "purge"
BATCH = 1000  # files and orphans per round
RECORDS = 2500  # recycled records per transaction (a few tenths of a second of writing)
CACHE_MB = 64  # the purge's page cache on SQLite (see db.roomy_cache)


@dataclass
class Report:
    tickets: int = 0
    comments: int = 0
    people: int = 0
    files: int = 0
    orphans: int = 0
    fields: int = 0  # custom fields (with their values)
    skipped: bool = False
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.tickets + self.comments + self.people


def cutoff() -> dt.datetime:
    return utcnow() - dt.timedelta(days=retention.days())


def due() -> dict[str, int]:
    """How much is waiting past the retention period (for --dry-run and the page)."""
    limit = cutoff()
    return {
        "tickets": Ticket.select().where(Ticket.deleted_at < limit).count(),
        "comments": Comment.select().where(Comment.deleted_at < limit).count(),
        "people": User.select().where(User.deleted_at < limit, User.anonymized_at.is_null()).count(),
    }


def remove_pending_files(config: dict) -> int:
    """Remove objects whose rows are already gone (noted in FileRemoval)."""
    return files.remove_noted(config, BATCH)


def _note_files(query) -> list[str]:
    names = [a.stored_name for a in query]
    if names:
        FileRemoval.insert_many([{"stored_name": n} for n in names]).on_conflict_ignore().execute()
    return names


ATTACHMENTS_OF = {
    "Ticket": lambda ids: is_in(Attachment.ticket, ids),
    "Comment": lambda ids: is_in(Attachment.comment, ids),
}


def purge_records(actor: Actor, model, ids: list[int], config: dict) -> tuple[int, int]:
    """Remove rows for good with their comments and files, and shred the
    history of their text. Rows and the notes of their files go in one
    transaction; the files right after. Returns (rows, files)."""
    with audit.transaction():
        files_gone = list(Attachment.select(Attachment.id, Attachment.stored_name)
                          .where(ATTACHMENTS_OF[model.__name__](ids)))
        _note_files(files_gone)
        crypto.destroy_record_keys(model.__name__, ids)
        crypto.destroy_record_keys("Attachment", [a.id for a in files_gone])
        if model is Ticket:
            crypto.destroy_record_keys("Comment", [c for (c,) in Comment.select(Comment.id)
                                                   .where(is_in(Comment.ticket, ids)).tuples()])
        count = audit.purge(actor, model, ids)
    return count, remove_pending_files(config)


def purge_expired(config: dict, dry_run: bool = False, batch: int = RECORDS,
                  progress: Callable[[str, int], None] | None = None,
                  pause: float = 0.0) -> Report:
    """Purge everything past retention. Safe to run twice or at once from
    several processes (one works, the others report skipped)."""
    report = Report(dry_run=dry_run)
    if dry_run:
        counts = due()
        report.tickets, report.comments, report.people = counts["tickets"], counts["comments"], counts["people"]
        return report
    holder = leases.local_holder()
    with leases.exclusive(LOCK, holder, dt.timedelta(minutes=5)) as renew:
        if renew is None:
            report.skipped = True
            return report
        with roomy_cache(CACHE_MB):
            _purge_due(config, report, batch, renew, progress, pause)
    return report


def _purge_due(config: dict, report: Report, batch: int, renew, progress, pause: float) -> None:
    """Every due record in batches, then people, custom fields and stray files."""
    report.files += remove_pending_files(config)
    limit = cutoff()
    for name, model in (("tickets", Ticket), ("comments", Comment)):
        while True:
            # Oldest deletion first, read from the index of recycled rows.
            ids = [i for (i,) in model.select(model.id).where(model.deleted_at < limit)
                   .order_by(model.deleted_at, model.id).limit(batch).tuples()]
            if not ids:
                break
            count, removed = purge_records(audit.SYSTEM, model, ids, config)
            setattr(report, name, getattr(report, name) + count)
            report.files += removed
            renew()
            if progress:
                progress(name, count)
            if pause:
                time.sleep(pause)
    report.people += _anonymize_expired_people(limit, progress, renew)
    report.fields += custom_fields.purge_deleted(audit.SYSTEM, limit)
    report.orphans += sweep_orphans(config)


def _anonymize_expired_people(limit, progress, renew) -> int:
    """People past retention are anonymized (their rows stay, pseudonymized,
    so the tickets they touched keep their shape)."""
    from desk.services import erasure
    done = 0
    due_people = list(User.select().where(User.deleted_at < limit, User.anonymized_at.is_null()))
    for person in due_people:
        erasure.anonymize_now(audit.SYSTEM, person, rebuild=False)
        done += 1
        renew()
        if progress:
            progress("people", 1)
    if done:
        erasure.compact_pending()  # one rebuild of the database files for all of them
    return done


def sweep_orphans(config: dict) -> int:
    """Remove attachment objects that no row names (left by a crash during an
    upload), once they are old enough not to belong to an upload in progress."""
    old = dt.datetime.now(dt.timezone.utc) - files.ORPHAN_AGE
    removed = 0
    for batch in _batches(files.stored_objects(config), BATCH):
        names = {files.name_of(o.key): o for o in batch}
        names.pop(None, None)
        known = {a.stored_name for a in Attachment.select(Attachment.stored_name)
                 .where(Attachment.stored_name.in_(list(names)))}
        for name, info in names.items():
            if name not in known and info.modified < old:
                files.remove_file(config, name)
                removed += 1
    return removed


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
