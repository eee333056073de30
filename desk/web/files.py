"""Attachment downloads, only through this authorized route, streamed from the
file store, with single byte ranges (resumed downloads, media seeking)."""
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import request
from flask import send_file
from flask_login import current_user
from flask_login import login_required
from werkzeug.datastructures import ContentRange

from desk.services import attachments
from desk.services import tickets

bp = Blueprint("files", __name__)


def _wanted_range(size: int, etag: str) -> tuple[int, int] | None:
    """(start, stop) of a satisfiable single Range request; None for the whole
    file (no Range, several ranges, or an If-Range that no longer matches).
    An unsatisfiable range answers 416."""
    wanted = request.range
    if wanted is None or len(wanted.ranges) != 1 or wanted.units != "bytes":
        return None
    if_range = request.if_range
    if if_range.date is not None or (if_range.etag is not None and if_range.etag != etag):
        return None
    found = wanted.range_for_length(size)
    if found is None:
        response = current_app.response_class(status=416)
        response.content_range = ContentRange("bytes", None, None, size)
        abort(response)
    return found


@bp.route("/attachments/<id:attachment_id>")
@login_required
def download(attachment_id: int):
    """Send a file the user may see: always as a download, except real images
    asked for inline. Another person's file answers 404."""
    row = tickets.get_attachment(current_user, attachment_id)
    inline = request.args.get("inline") == "1" and row.content_type.startswith("image/")
    if request.if_none_match.contains(row.sha256):
        response = current_app.response_class(status=304)
        response.set_etag(row.sha256)
        return response
    found = _wanted_range(row.size, row.sha256)
    start, stop = found or (0, row.size)
    try:
        stream = attachments.open_file(current_app.config, row, start, stop)
    except FileNotFoundError:
        abort(404)  # being purged at this moment
    response = send_file(stream,
                         mimetype=row.content_type if inline else "application/octet-stream",
                         as_attachment=not inline, download_name=row.filename,
                         max_age=0, conditional=False, etag=False)
    response.content_length = stop - start
    response.set_etag(row.sha256)
    response.accept_ranges = "bytes"
    if found is not None:
        response.status_code = 206
        response.content_range = ContentRange("bytes", start, stop, row.size)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
