"""The help center for end users: home and My Tickets."""
from flask import Blueprint
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from desk.config import LANGUAGES
from desk.forms.auth import EmptyForm
from desk.services import tickets

bp = Blueprint("portal", __name__)


@bp.route("/")
def home():
    """Help center home."""
    return render_template("portal/home.html")


@bp.route("/my/tickets")
@login_required
def my_tickets():
    """My Tickets: the signed-in person's own tickets."""
    page = tickets.my_tickets(current_user, request.args.get("page", 1, type=int))
    return render_template("portal/my_tickets.html", page=page)


@bp.route("/language", methods=["POST"])
def language():
    """Choose the interface language for this browser session."""
    if EmptyForm().validate_on_submit() and request.form.get("language") in LANGUAGES:
        session["language"] = request.form["language"]
    target = request.form.get("next", "")
    return redirect(target if target.startswith("/") and not target.startswith("//")
                    else url_for("portal.home"))
