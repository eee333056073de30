"""Receiving uploads: a file that goes past the per-file limit is noticed while
it streams in and cut off, so the rest of the form (the text the person typed)
still arrives and the page can say what was too large."""
from __future__ import annotations

import tempfile

from flask import Request
from flask import current_app
from flask import request

from desk.services.attachments import Upload


class CappedFile:
    """A spooled temporary file that stops storing past ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.received = 0
        self.too_large = False
        self._file = tempfile.SpooledTemporaryFile(max_size=512 * 1024)

    def write(self, data: bytes) -> int:
        self.received += len(data)
        if self.received > self.limit:
            self.too_large = True
            return len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


class DeskRequest(Request):
    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return CappedFile(current_app.config["ATTACHMENT_MAX_BYTES"])


def uploads(field: str = "attachments") -> list[Upload]:
    """The non-empty files sent in ``field``."""
    found = []
    for storage in request.files.getlist(field):
        if not storage or not storage.filename:
            continue
        stream = storage.stream
        found.append(Upload(filename=storage.filename, stream=stream,
                            content_type=storage.mimetype or "application/octet-stream",
                            too_large=getattr(stream, "too_large", False)))
    return found
