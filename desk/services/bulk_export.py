"""The bulk export of everything: one ZIP with every module as CSV and JSON
Lines, every attachment under its ticket, and ``manifest.json`` (versions,
region, time, row counts, the SHA-256 of every file).

The same ``write_zip`` serves the background job (an admin starts it at
/agent/settings/bulk-export; the file is stored encrypted in the data folder,
downloadable until it expires) and the ``export`` command. Files are written
under a temporary name and renamed when complete, so a kill never leaves a
file that looks finished. The command reads one snapshot of the database in
one pass; the job keeps each finished module file as an encrypted piece, so a
run after a kill resumes from the pieces it has.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from flask import current_app
from peewee import SQL
from peewee import fn

from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
import desk
from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.db import db
from desk.db import is_postgres
from desk.errors import Conflict
from desk.errors import Gone
from desk.errors import NotFound
from desk.migrations import applied
from desk.models import Attachment
from desk.models import BulkExport
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.services import attachments as files
from desk.services import mail
from desk.services import module_export
from desk.services import storage

MODULES = module_export.MODULES
FORMATS = ("csv", "jsonl")
QUEUED, RUNNING, DONE, FAILED, EXPIRED, DELETED = "queued", "running", "done", "failed", "expired", "deleted"
PROGRESS_EVERY = 2000  # rows between progress updates
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024


# -- the ZIP -------------------------------------------------------------------

@dataclass
class Progress:
    """Rows and files done of their totals; ``report`` is called as they grow."""

    rows_total: int = 0
    files_total: int = 0
    rows_done: int = 0
    files_done: int = 0
    report: Callable[["Progress"], None] | None = None

    def add(self, rows: int = 0, files_: int = 0) -> None:
        self.rows_done += rows
        self.files_done += files_
        if self.report:
            self.report(self)


def _attachments():
    """Every live file on a live ticket (and live comment), by ticket."""
    from desk.models import Comment
    # A correlated EXISTS (a primary-key lookup a row), not ``IN (every live
    # comment)``: inside an OR, PostgreSQL evaluates an IN list too large for
    # its work memory again for every row (13 minutes and more at 1M tickets).
    live_comment = Comment.select(SQL("1")).where(Comment.id == Attachment.comment, Comment.deleted_at.is_null())
    return (Attachment.select()
            .where(Attachment.deleted_at.is_null(),
                   Attachment.ticket.in_(Ticket.select(Ticket.id).where(Ticket.deleted_at.is_null())),
                   Attachment.comment.is_null() | fn.EXISTS(live_comment))
            .order_by(Attachment.ticket, Attachment.id))


def totals(modules: Iterable[str] = MODULES, formats: Iterable[str] = FORMATS,
           with_files: bool = True) -> tuple[int, int]:
    """(rows, files) a bulk export will write: for the progress figures."""
    rows = sum(module_export.full_export(m).rows for m in modules) * len(tuple(formats))
    return rows, _attachments().count() if with_files else 0


def _counted(rows: Iterator[tuple], progress: Progress | None, tally: list[int]) -> Iterator[tuple]:
    pending = 0
    for row in rows:
        tally[0] += 1
        pending += 1
        if pending >= PROGRESS_EVERY and progress:
            progress.add(rows=pending)
            pending = 0
        yield row
    if progress and pending:
        progress.add(rows=pending)


def _copied(chunks: Iterator[bytes], rows: int, progress: Progress | None) -> Iterator[bytes]:
    """A CSV the database writes itself (``Export.copies``): its rows are the
    export's count, read in the same snapshot. Progress goes by line ends (a
    value holding one counts twice, so the figure is capped at the count)."""
    lines = reported = 0
    for chunk in chunks:
        if progress:
            lines += chunk.count(b"\n")
            now = min(max(lines - 1, 0), rows)  # the header is a line too
            if now - reported >= PROGRESS_EVERY:
                progress.add(rows=now - reported)
                reported = now
        yield chunk
    if progress and reported < rows:
        progress.add(rows=rows - reported)


@contextlib.contextmanager
def one_snapshot() -> Iterator[None]:
    """Every module of the ZIP read from one snapshot of the database, so the
    manifest's counts, the files and the attachments agree even while people
    keep working: a deferred read transaction on SQLite (WAL), a repeatable
    read one on PostgreSQL. Inside a caller's transaction, that one."""
    if db.in_transaction():
        yield
        return
    with db.atomic():
        if is_postgres():
            db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


@dataclass
class Member:
    """One module file of the ZIP: its name, its bytes (consumed once) and,
    once they are consumed, how many rows it held."""

    name: str
    chunks: Iterable[bytes]
    rows: Callable[[], int]


def module_file(export: module_export.Export, fmt: str, progress: Progress | None) -> Member:
    """A module's file in ``fmt`` (csv or jsonl), counting its rows as it goes."""
    name = f"{export.module}.{fmt}"
    if fmt == "csv" and export.copies():
        return Member(name, _copied(export.csv(keys=True), export.rows, progress), lambda: export.rows)
    tally = [0]
    rows = _counted(export.tuples(), progress, tally)
    chunks = export.csv(keys=True, rows=rows) if fmt == "csv" else export.jsonl(rows=rows)
    return Member(name, chunks, lambda: tally[0])


def _live_members(modules: Iterable[str], formats: Iterable[str], progress: Progress | None) -> Iterator[Member]:
    formats = tuple(formats)
    for module in modules:
        export = module_export.full_export(module)
        for fmt in formats:
            yield module_file(export, fmt, progress)


def write_zip(out: BinaryIO, modules: Iterable[str] = MODULES, formats: Iterable[str] = FORMATS,
              with_files: bool = True, progress: Progress | None = None,
              members: Iterable[Member] | None = None) -> dict:
    """Write the ZIP of everything to ``out`` (any writable binary stream, also
    one that cannot seek); returns the manifest, which is its last member.
    The module files are read from the database in one snapshot, or taken
    from ``members`` (the job's saved pieces)."""
    config = current_app.config
    manifest = {"desk_version": desk.__version__, "schema_version": max(applied(db.obj), default=0),
                "region": config["REGION"],
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "rows": {}, "files": {}}
    with one_snapshot(), zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        def add(name: str, chunks: Iterable[bytes]) -> None:
            digest, size = hashlib.sha256(), 0
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in chunks:
                    member.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            manifest["files"][name] = {"sha256": digest.hexdigest(), "size": size}

        for member in members if members is not None else _live_members(modules, formats, progress):
            add(member.name, member.chunks)
            manifest["rows"][member.name.rsplit(".", 1)[0]] = member.rows()
        if with_files:
            for row in _attachments().iterator():
                try:
                    source = files.open_file(config, row)
                except FileNotFoundError:
                    continue
                with source:
                    add(f"attachments/{row.ticket_id}/{row.id}-{row.filename}",
                        iter(lambda: source.read(CHUNK), b""))
                if progress:
                    progress.add(files_=1)
        body = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        archive.writestr(MANIFEST, body)
    return manifest


def verify(path: str | os.PathLike) -> tuple[bool, str]:
    """Check a bulk export ZIP against its manifest: every listed file present
    with its SHA-256 and size, nothing unlisted. (ok, summary or first problem)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if MANIFEST not in names:
                return False, "manifest.json is missing"
            manifest = json.loads(archive.read(MANIFEST))
            listed = manifest.get("files", {})
            extra = sorted(names - set(listed) - {MANIFEST})
            if extra:
                return False, f"{extra[0]} is not in the manifest"
            for name, meta in sorted(listed.items()):
                if name not in names:
                    return False, f"{name} is missing"
                digest, size = hashlib.sha256(), 0
                with archive.open(name) as member:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                if digest.hexdigest() != meta.get("sha256") or size != meta.get("size"):
                    return False, f"{name} does not match its SHA-256"
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        return False, f"not a readable bulk export ZIP ({err.__class__.__name__})"
    rows = ", ".join(f"{n} {m}" for m, n in manifest.get("rows", {}).items())
    return True, f"{len(listed)} files match the manifest ({rows})"


# -- files: the store (desk.services.storage) and a local temporary file -------------

def folder(config: dict) -> Path:
    """Where exports are written before they go to the store (owner-only)."""
    path = Path(config["DATA_DIR"]) / "exports"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def key_of(row: BulkExport) -> str:
    return f"exports/bulk-{row.id}.zip.enc"


def part_of(config: dict, row: BulkExport) -> Path:
    """The export's file while it is written (a dot name: no store lists it)."""
    return folder(config) / f".bulk-{row.id}.zip.enc.part"


def private_file(path: Path) -> BinaryIO:
    """A new file only the owner may read (0600), replacing a stale one."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _remove(config: dict, row: BulkExport) -> None:
    storage.of(config).delete(key_of(row))
    _unlink(part_of(config, row))
    _remove_pieces(config, row)


# -- the job ----------------------------------------------------------------------

def _require_admin(user: User) -> None:
    if not policy.is_admin(user):
        from desk.errors import PermissionDenied
        raise PermissionDenied("bulk export: administrators only")


def start(admin: User, ip: str = "") -> BulkExport:
    """Queue a bulk export (one at a time); the scheduler runs it. Audited."""
    _require_admin(admin)
    with audit.transaction():
        if BulkExport.select().where(BulkExport.status.in_((QUEUED, RUNNING))).exists():
            raise Conflict(_l("A bulk export is already running."))
        row = BulkExport.create(requested_by=admin.id, status=QUEUED)
        audit.record(Actor.of(admin, ip), "export", "BulkExport", row.id,
                     details={"kind": "bulk", "modules": list(MODULES)})
    return row


def recent(admin: User, limit: int = 10) -> list[BulkExport]:
    """The latest bulk exports, newest first."""
    _require_admin(admin)
    return list(BulkExport.select().order_by(BulkExport.id.desc()).limit(limit))


def run_pending() -> int:
    """Run every queued bulk export, and restart any left running by a killed
    process (the scheduler runs one job at a time, so none is really running)."""
    done = 0
    for row in BulkExport.select().where(BulkExport.status.in_((QUEUED, RUNNING))).order_by(BulkExport.id):
        run(row.id)
        done += 1
    return done


def run(export_id: int) -> BulkExport:
    """Make the export's encrypted ZIP, progress in its row. Resumable: each
    module file is saved as an encrypted piece in the export's work folder
    (``pieces_of``) as it is finished, so a run after a kill makes only the
    pieces still missing, then puts the ZIP together (under a temporary name
    until complete). Mails the admin who asked."""
    config = current_app.config
    row = BulkExport.get_by_id(export_id)
    work = pieces_of(config, row)
    resuming = row.status == RUNNING and row.wrapped_key and (work / CHECKPOINT).exists()
    if not resuming:
        _remove_pieces(config, row)
        key, wrapped = crypto.new_export_key()
    else:
        key, wrapped = crypto.unwrap_export_key(row.wrapped_key), row.wrapped_key
    started = row.started_at if resuming else utcnow()
    rows_total, files_total = totals()
    BulkExport.update(status=RUNNING, started_at=started, rows_done=0, files_done=0, error="",
                      rows_total=rows_total, files_total=files_total, wrapped_key=wrapped).where(
        BulkExport.id == row.id).execute()
    part = part_of(config, row)

    def report(p: Progress) -> None:
        _beside(lambda: BulkExport.update(rows_done=p.rows_done, files_done=p.files_done).where(
            BulkExport.id == row.id).execute())

    progress = Progress(rows_total, files_total, report=report)
    try:
        members = _make_pieces(work, key, progress)
        with private_file(part) as fh:
            writer = crypto.ExportWriter(fh, key)
            write_zip(writer, progress=progress, members=members)
            writer.close()
        with open(part, "rb") as fh:
            size = storage.of(config).put(key_of(row), fh)
        _unlink(part)
    except Exception as err:
        _remove(config, row)
        failed = BulkExport.update(status=FAILED, error=err.__class__.__name__, finished_at=utcnow()).where(
            BulkExport.id == row.id, BulkExport.status == RUNNING, BulkExport.started_at == started).execute()
        if failed:
            raise
        return BulkExport.get_by_id(row.id)  # an erasure removed its pieces and queued it again
    days = int(config.get("BULK_EXPORT_DAYS", 7))
    finished = BulkExport.update(
        status=DONE, file_name=key_of(row), size=size, wrapped_key=wrapped,
        finished_at=utcnow(), expires_at=utcnow() + dt.timedelta(days=days),
        rows_done=rows_total, files_done=files_total,
    ).where(BulkExport.id == row.id, BulkExport.status == RUNNING, BulkExport.started_at == started).execute()
    _remove_pieces(config, row)
    if not finished:  # an erasure asked for it to be made again meanwhile
        _remove(config, row)
        return BulkExport.get_by_id(row.id)
    _tell(BulkExport.get_by_id(row.id), config)
    return BulkExport.get_by_id(row.id)


CHECKPOINT = "pieces.json"


def pieces_of(config: dict, row: BulkExport) -> Path:
    """The job's work folder: one encrypted piece per finished module file and
    ``pieces.json`` naming them with their row counts (a dot name: no store
    lists it; owner-only like the rest of the data folder)."""
    return folder(config) / f".bulk-{row.id}.pieces"


def _make_pieces(work: Path, key: bytes, progress: Progress) -> list[Member]:
    """Every module file as an encrypted piece in ``work``, skipping those a
    killed run already finished; each is written under a temporary name and
    recorded in the checkpoint only once complete and on disk."""
    work.mkdir(mode=0o700, exist_ok=True)
    checkpoint = work / CHECKPOINT
    done: dict[str, int] = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
    for module in MODULES:
        for fmt in FORMATS:
            name = f"{module}.{fmt}"
            piece = work / f"{name}.enc"
            if name in done and piece.exists():
                progress.add(rows=done[name])
                continue
            partial = work / f"{name}.enc.part"
            with one_snapshot(), private_file(partial) as fh:
                writer = crypto.ExportWriter(fh, key)
                member = module_file(module_export.full_export(module), fmt, progress)
                for chunk in member.chunks:
                    writer.write(chunk)
                writer.close()
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, piece)
            done[name] = member.rows()
            _write_private(checkpoint, json.dumps(done).encode())
    return [Member(name, _decrypted(work / f"{name}.enc", key), lambda n=rows: n) for name, rows in
            ((f"{m}.{f}", done[f"{m}.{f}"]) for m in MODULES for f in FORMATS)]


def _decrypted(path: Path, key: bytes) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from crypto.decrypt_export(fh, key)


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a temporary file, renamed)."""
    temporary = path.with_name(path.name + ".tmp")
    with private_file(temporary) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def _remove_pieces(config: dict, row: BulkExport) -> None:
    work = pieces_of(config, row)
    if work.exists():
        for path in work.iterdir():
            _unlink(path)
        with contextlib.suppress(OSError):
            work.rmdir()


def _beside(work: Callable[[], object]) -> None:
    """Run a small write on a connection of its own, committed at once: the
    export's own connection may be inside a long read (a cursor on PostgreSQL)."""
    def target() -> None:
        with db.connection_context():
            work()
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


def _tell(row: BulkExport, config: dict) -> None:
    admin = User.get_or_none(User.id == row.requested_by) if row.requested_by else None
    if admin is None or admin.deleted_at is not None:
        return
    link = f"{config['BASE_URL']}/agent/settings/bulk-export"
    with audit.transaction():
        mail.queue(admin.email, _("Your bulk export is ready"),
                   _("Hello %(name)s,\n\nThe bulk export of everything you started is ready. Download "
                     "it from %(url)s until %(until)s UTC; then it is deleted.\n",
                     name=admin.name, url=link, until=row.expires_at.strftime("%Y-%m-%d %H:%M")),
                   subject_id=admin.id)


def download(admin: User, export_id: int, ip: str = "") -> Iterator[bytes]:
    """The clear ZIP of a finished export, decrypted as it streams. Gone (410)
    once expired or deleted. Audited before the first byte."""
    _require_admin(admin)
    row = BulkExport.get_or_none(BulkExport.id == export_id)
    if row is None or row.status in (QUEUED, RUNNING, FAILED):
        raise NotFound(_l("No such bulk export."))
    if row.status != DONE or row.expires_at <= utcnow():
        raise Gone(_l("This bulk export has expired and was deleted."))
    key = crypto.unwrap_export_key(row.wrapped_key)
    try:
        source = storage.of(current_app.config).open(key_of(row))
    except storage.ObjectMissing:
        raise Gone(_l("This bulk export has expired and was deleted.")) from None
    audit.record(Actor.of(admin, ip), "download", "BulkExport", row.id, details={"kind": "bulk"})

    def stream() -> Iterator[bytes]:
        with source:
            yield from crypto.decrypt_export(source, key)
    return stream()


def expire_due() -> int:
    """Delete the files of exports past their expiry (the scheduler's job)."""
    count = 0
    for row in BulkExport.select().where(BulkExport.status == DONE, BulkExport.expires_at <= utcnow()):
        _discard(row, EXPIRED, audit.SYSTEM, "expire")
        count += 1
    return count


def _discard(row: BulkExport, status: str, actor: Actor, action: str, reason: str = "") -> None:
    _remove(current_app.config, row)
    with audit.transaction():
        BulkExport.update(status=status, wrapped_key=None, file_name="").where(BulkExport.id == row.id).execute()
        audit.record(actor, action, "BulkExport", row.id, details={"kind": "bulk", "reason": reason or action})


def discard_for_erasure(actor: Actor) -> int:
    """Erasing a person: delete every finished bulk export (each holds everyone)
    and have queued or running ones made again, after the erasure."""
    count = 0
    for row in BulkExport.select().where(BulkExport.status == DONE):
        _discard(row, DELETED, actor, "delete", "erasure")
        count += 1
    for row in BulkExport.select().where(BulkExport.status.in_((QUEUED, RUNNING))):
        _remove_pieces(current_app.config, row)  # they hold the person too
    redo = (BulkExport.update(status=QUEUED, started_at=None, rows_done=0, files_done=0)
            .where(BulkExport.status.in_((QUEUED, RUNNING))).execute())
    return count + redo


# -- the command line ----------------------------------------------------------------

@contextlib.contextmanager
def command_output(out: str) -> Iterator[BinaryIO]:
    """Where the ``export`` command writes: standard output for "-", else a
    private temporary file beside ``out``, renamed to it only when complete."""
    if out == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(out)
    part = target.with_name(target.name + ".part")
    try:
        with private_file(part) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, target)
    except BaseException:
        _unlink(part)
        raise


def export_command(out: BinaryIO, module: str | None, fmt: str | None, progress_to) -> dict:
    """The ``export`` command: the ZIP of everything (or one module's file) with
    a progress bar on ``progress_to``. Audited as an export by the system."""
    import click
    modules = (module,) if module else MODULES
    formats = (fmt,) if fmt else (("csv",) if module else FORMATS)
    rows, files_total = totals(modules, formats, with_files=not module)
    audit.record(audit.SYSTEM, "export", "BulkExport", None,
                 details={"kind": "command", "modules": list(modules), "formats": list(formats)})
    with click.progressbar(length=rows + files_total, label="exporting", file=progress_to) as bar:
        last = [0]

        def report(p: Progress) -> None:
            done = p.rows_done + p.files_done
            bar.update(done - last[0])
            last[0] = done
        progress = Progress(rows, files_total, report=report)
        if module:
            with one_snapshot():
                member = module_file(module_export.full_export(module), formats[0], progress)
                for chunk in member.chunks:
                    out.write(chunk)
            return {"rows": {module: member.rows()}}
        return write_zip(out, modules, formats, with_files=True, progress=progress)
