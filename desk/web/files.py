"""Attachment downloads, only through this authorized route."""
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import request
from flask import send_file
from flask_login import current_user
from flask_login import login_required

from desk.services import attachments
from desk.services import tickets

bp = Blueprint("files", __name__)


@bp.route("/attachments/<id:attachment_id>")
@login_required
def download(attachment_id: int):
    """Send a file the user may see: always as a download, except real images
    asked for inline. Another person's file answers 404."""
    row = tickets.get_attachment(current_user, attachment_id)
    inline = request.args.get("inline") == "1" and row.content_type.startswith("image/")
    try:
        stream = attachments.open_file(current_app.config, row.stored_name)
    except FileNotFoundError:
        abort(404)  # being purged at this moment
    response = send_file(stream,
                         mimetype=row.content_type if inline else "application/octet-stream",
                         as_attachment=not inline, download_name=row.filename,
                         max_age=0, conditional=True, etag=row.sha256)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
