"""Attachment files: stored under the instance folder with random names and a
SHA-256, their original names kept only as (sanitized) data."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask_babel import lazy_gettext as _l

from desk.errors import InvalidInput

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


def folder(config: dict) -> Path:
    return Path(config["DATA_DIR"]) / "attachments"


def path_of(config: dict, stored_name: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", stored_name):
        raise InvalidInput("bad stored name")
    return folder(config) / stored_name[:2] / stored_name


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


def store(config: dict, upload: Upload) -> Stored:
    """Write the file under a random name (atomically) and describe it."""
    stored_name = secrets.token_hex(16)
    target = path_of(config, stored_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    digest = hashlib.sha256()
    size = 0
    upload.stream.seek(0)
    head = upload.stream.read(16)
    upload.stream.seek(0)
    with open(tmp, "wb") as out:
        while chunk := upload.stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    content_type = sniff_image(head) or "application/octet-stream"
    return Stored(sanitize_filename(upload.filename), stored_name, content_type, size,
                  digest.hexdigest())


def remove_file(config: dict, stored_name: str) -> None:
    """Remove a stored file (used by purge and to undo a failed save)."""
    try:
        path_of(config, stored_name).unlink()
    except FileNotFoundError:
        pass


def open_file(config: dict, stored_name: str) -> BinaryIO:
    return open(path_of(config, stored_name), "rb")
