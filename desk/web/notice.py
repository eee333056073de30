"""The privacy notice prompt: after the notice changes, a person sees the new
version at their next sign-in and acknowledges it before going on."""
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from flask_login import user_logged_in

from desk import policy
from desk.errors import DeskError
from desk.forms.auth import EmptyForm
from desk.services import notices
from desk.web.guards import client_ip

bp = Blueprint("notice", __name__)
PENDING = "notice_pending"
# Where a person with a notice to read may still go.
OPEN_ENDPOINTS = {"notice.show", "notice.acknowledge", "auth.logout", "static", "portal.language",
                  "privacy.privacy_page", "health.healthz"}


@bp.record_once
def _connect(state) -> None:
    user_logged_in.connect(_signed_in, state.app)


def _signed_in(app, user, **_) -> None:
    """At sign-in: note a notice version the person has yet to read."""
    notice = notices.pending(user)
    if notice is not None:
        session[PENDING] = notice.version


@bp.before_app_request
def _prompt():
    """Pages wait until the noted notice is read (the API does not prompt)."""
    if request.method != "GET" or request.endpoint in OPEN_ENDPOINTS or request.path.startswith("/api/"):
        return None
    if current_app.config["SESSION_COOKIE_NAME"] not in request.cookies:
        return None  # no session to read (and reading one would add "Vary: Cookie")
    if not session.get(PENDING):
        return None
    return redirect(url_for("notice.show", next=request.full_path.rstrip("?")))


def _next() -> str:
    target = request.values.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for(policy.landing(current_user))


@bp.route("/my/privacy-notice")
@login_required
def show():
    """The privacy notice in force, with the button that acknowledges it."""
    notice = notices.current()
    if notice is None:
        session.pop(PENDING, None)
        return redirect(_next())
    return render_template("me/privacy_notice.html", notice=notice, form=EmptyForm(),
                           pending=notices.pending(current_user) is not None, next=_next())


@bp.route("/my/privacy-notice", methods=["POST"])
@login_required
def acknowledge():
    """I have read this version."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    version = request.form.get("version", "")
    try:
        notices.acknowledge(current_user, int(version) if version.isdigit() else -1, client_ip())
    except DeskError:
        return redirect(url_for("notice.show", next=_next()))
    session.pop(PENDING, None)
    return redirect(_next())
