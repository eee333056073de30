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
from typing import BinaryIO

from flask_babel import lazy_gettext as _l

from desk.errors import InvalidInput
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
    sha256: str


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


def store(config: dict, upload: Upload) -> Stored:
    """Write the file under a random name (whole or not at all) and describe it."""
    stored_name = secrets.token_hex(16)
    upload.stream.seek(0)
    head = upload.stream.read(16)
    upload.stream.seek(0)
    source = _Hashing(upload.stream)
    storage.of(config).put(key_of(stored_name), source)
    content_type = sniff_image(head) or "application/octet-stream"
    return Stored(sanitize_filename(upload.filename), stored_name, content_type, source.size,
                  source.digest.hexdigest())


def remove_file(config: dict, stored_name: str) -> None:
    """Remove a stored file (used by purge and to undo a failed save)."""
    storage.of(config).delete(key_of(stored_name))


def open_file(config: dict, row, start: int = 0, end: int | None = None) -> BinaryIO:
    """The bytes ``start`` to ``end`` (exclusive) of an attachment (its row) as a
    stream; FileNotFoundError when the object is gone."""
    return storage.of(config).open(key_of(row.stored_name), start, end)


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
