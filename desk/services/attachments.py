"""Attachment files: objects in the configured store (desk.services.storage)
under random names, with a SHA-256 of their bytes; their original names kept
only as (sanitized) data."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from dataclasses import field
from typing import BinaryIO, Callable

from desk import audit
from desk import crypto
from desk.db import write_transaction
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import Attachment
from desk.models import FileRemoval
from desk.services import storage

CHUNK = 1024 * 1024
IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


@dataclass
class Upload:
    """A file as received: its name, a readable stream, and whether it went
    past the per-file limit while it was being received."""

    filename: str
    stream: BinaryIO
    content_type: str = "application/octet-stream"
    too_large: bool = False


@dataclass(frozen=True)
class Stored:
    filename: str
    stored_name: str
    content_type: str
    size: int
    sha256: str  # of the clear bytes
    data_key: str  # wrapped under the owner's subject key


PREFIX = "attachments/"
NAME_RE = re.compile(r"[0-9a-f]{32}")


def key_of(stored_name: str) -> str:
    """The storage key of an attachment's object."""
    if not NAME_RE.fullmatch(stored_name or ""):
        raise InvalidInput("bad stored name")
    return f"{PREFIX}{stored_name[:2]}/{stored_name}"


def name_of(key: str) -> str | None:
    """The stored name a storage key holds, None for anything else."""
    name = key.rpartition("/")[2]
    return name if NAME_RE.fullmatch(name) and key == key_of(name) else None


def sanitize_filename(raw: str) -> str:
    """A display name without paths, control characters or odd whitespace."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    name = re.sub(r"\s+", " ", name)
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:190] + dot + ext[:9]) if dot and len(ext) < 10 else name[:200]
    return name or "file"


def check_limits(uploads: list[Upload], max_file: int, max_request: int) -> None:
    """InvalidInput-like refusal (status 413) when a file or the set is too large."""
    for upload in uploads:
        if upload.too_large:
            raise FileTooLarge(_l("“%(name)s” is larger than %(mb)d MB.",
                                  name=sanitize_filename(upload.filename), mb=max_file // 2**20))
    total = sum(_size(u.stream) for u in uploads)
    if total > max_request:
        raise FileTooLarge(_l("The files together are larger than %(mb)d MB.", mb=max_request // 2**20))


class FileTooLarge(InvalidInput):
    status = 413


def _size(stream: BinaryIO) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def sniff_image(head: bytes) -> str | None:
    """The image type when the bytes really are PNG, JPEG, GIF or WebP."""
    for signature, mime in IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


class _Hashing:
    """Reads a stream while counting and hashing what passes."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _put_sealed(config: dict, owner_id: int, stream: BinaryIO) -> tuple[str, str, _Hashing]:
    """Seal a stream under a new data key (wrapped for ``owner_id``) into a new
    object; (stored name, wrapped key, what was read)."""
    stored_name = secrets.token_hex(16)
    data_key = crypto.new_file_key()
    wrapped = crypto.wrap_file_key(owner_id, data_key)
    source = _Hashing(stream)
    storage.of(config).put(key_of(stored_name), crypto.sealing_reader(data_key, source))
    return stored_name, wrapped, source


def store(config: dict, upload: Upload, owner_id: int) -> Stored:
    """Encrypt the file for its owner, write it under a random name (whole or
    not at all) and describe it."""
    upload.stream.seek(0)
    head = upload.stream.read(16)
    upload.stream.seek(0)
    stored_name, wrapped, source = _put_sealed(config, owner_id, upload.stream)
    content_type = sniff_image(head) or "application/octet-stream"
    return Stored(sanitize_filename(upload.filename), stored_name, content_type, source.size,
                  source.digest.hexdigest(), wrapped)


def remove_file(config: dict, stored_name: str) -> None:
    """Remove a stored file (used by purge and to undo a failed save)."""
    storage.of(config).delete(key_of(stored_name))


def open_file(config: dict, row, start: int = 0, end: int | None = None) -> BinaryIO:
    """The clear bytes ``start`` to ``end`` (exclusive) of an attachment (its
    row) as a stream; FileNotFoundError when the object is gone or its key was
    destroyed with its owner."""
    store, key = storage.of(config), key_of(row.stored_name)
    if row.data_key is None:
        return store.open(key, start, end)
    data_key = crypto.unwrap_file_key(row.data_key)
    if data_key is None:
        raise storage.ObjectMissing(key)
    if not store.exists(key):
        raise storage.ObjectMissing(key)
    return crypto.opening_reader(data_key, lambda a, b: store.open(key, a, b), row.size, start, end)


def exists(config: dict, stored_name: str) -> bool:
    return storage.of(config).exists(key_of(stored_name))


def stored_objects(config: dict):
    """Every attachment object in the store (ObjectInfo), in key order."""
    return storage.of(config).list(PREFIX)


# -- consistency: no row without its object, no object without its row ---------

ORPHAN_AGE = dt.timedelta(hours=1)


@dataclass
class CheckReport:
    rows: int = 0
    objects: int = 0
    missing: list[int] = field(default_factory=list)  # attachment ids whose object is gone
    orphans: list[str] = field(default_factory=list)  # stored names no row names
    pending: int = 0  # objects whose rows were purged, removal noted and due
    recent: int = 0  # unnamed objects young enough to be an upload in progress

    @property
    def ok(self) -> bool:
        return not self.missing and not self.orphans


def check(config: dict) -> CheckReport:
    """Compare the attachment rows with the store's objects, both walked in
    name order (constant memory, one listing, no request per file)."""
    report = CheckReport()
    young = dt.datetime.now(dt.timezone.utc) - ORPHAN_AGE
    rows = (Attachment.select(Attachment.id, Attachment.stored_name)
            .order_by(Attachment.stored_name).tuples().iterator())
    objects = ((name_of(o.key), o) for o in stored_objects(config) if name_of(o.key))
    row, obj = next(rows, None), next(objects, None)
    unnamed = []
    while row is not None or obj is not None:
        if obj is None or (row is not None and row[1] < obj[0]):
            report.rows += 1
            report.missing.append(row[0])
            row = next(rows, None)
        elif row is None or obj[0] < row[1]:
            report.objects += 1
            unnamed.append(obj)
            obj = next(objects, None)
        else:
            report.rows += 1
            report.objects += 1
            row, obj = next(rows, None), next(objects, None)
    _judge_unnamed(config, report, unnamed, young)
    # A purge running meanwhile removes rows, then objects: recheck before blaming.
    report.missing = [i for i in report.missing if _still_missing(config, i)]
    return report


def _judge_unnamed(config: dict, report: CheckReport, unnamed: list, young: dt.datetime) -> None:
    for start in range(0, len(unnamed), 500):
        batch = unnamed[start:start + 500]
        noted = {r.stored_name for r in FileRemoval.select(FileRemoval.stored_name)
                 .where(FileRemoval.stored_name.in_([name for name, _ in batch]))}
        named = {a.stored_name for a in Attachment.select(Attachment.stored_name)
                 .where(Attachment.stored_name.in_([name for name, _ in batch]))}
        for name, info in batch:
            if name in noted:
                report.pending += 1
            elif name in named:
                continue  # uploaded while we walked
            elif info.modified >= young:
                report.recent += 1
            else:
                report.orphans.append(name)


def _still_missing(config: dict, attachment_id: int) -> bool:
    row = Attachment.get_or_none(Attachment.id == attachment_id)
    return row is not None and not exists(config, row.stored_name)


# -- sealing files stored clear before encryption ------------------------------

ENCRYPT_LOCK = "encrypt-files"


@dataclass
class EncryptReport:
    sealed: int = 0
    skipped: list[int] = field(default_factory=list)  # ids left clear: object missing or altered
    busy: bool = False  # another process is at it


def clear_count() -> int:
    """How many attachments are still stored clear."""
    return Attachment.select().where(Attachment.data_key.is_null()).count()


def encrypt_stored(config: dict, batch: int = 50,
                   progress: Callable[[int], None] | None = None) -> EncryptReport:
    """Seal every attachment still stored clear under a data key for its
    uploader, a batch at a time; once across processes; safe to kill and run
    again (a sealed copy is written first, the row switched to it and the clear
    object noted for removal in one transaction, then removed)."""
    from desk.services import leases
    report = EncryptReport()
    with leases.exclusive(ENCRYPT_LOCK, leases.local_holder(), dt.timedelta(minutes=5)) as renew:
        if renew is None:
            report.busy = True
            return report
        last = 0
        while True:
            rows = list(Attachment.select().where(Attachment.data_key.is_null(), Attachment.id > last)
                        .order_by(Attachment.id).limit(batch))
            if not rows:
                break
            for row in rows:
                if _seal_one(config, row):
                    report.sealed += 1
                else:
                    report.skipped.append(row.id)
                if progress:
                    progress(1)
            last = rows[-1].id
            remove_noted(config)
            renew()
    return report


def _seal_one(config: dict, row: Attachment) -> bool:
    try:
        source = storage.of(config).open(key_of(row.stored_name))
    except FileNotFoundError:
        return False
    try:
        with source:
            new_name, wrapped, read = _put_sealed(config, row.uploader_id, source)
    except ValueError:  # the uploader was erased: their files go with them, not here
        return False
    if read.size != row.size or read.digest.hexdigest() != row.sha256:
        remove_file(config, new_name)  # the clear file was altered: leave it for storage-check
        return False
    with audit.transaction():
        fresh = Attachment.get_or_none(Attachment.id == row.id)
        current = fresh is not None and fresh.data_key is None and fresh.stored_name == row.stored_name
        old = row.stored_name if current else new_name
        FileRemoval.insert(stored_name=old).on_conflict_ignore().execute()
        if current:
            audit.update(audit.SYSTEM, fresh, action="encrypt", stored_name=new_name, data_key=wrapped)
    return current


def remove_noted(config: dict, batch: int = 200) -> int:
    """Remove objects whose rows are gone (noted in FileRemoval), then the notes."""
    done = 0
    while True:
        noted = list(FileRemoval.select().order_by(FileRemoval.id).limit(batch))
        if not noted:
            return done
        for row in noted:
            remove_file(config, row.stored_name)
        with write_transaction():
            FileRemoval.delete().where(FileRemoval.id.in_([r.id for r in noted])).execute()
        done += len(noted)
