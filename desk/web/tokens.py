"""Personal access tokens: everyone's own at /my/tokens, every token for
administrators at /agent/settings/tokens."""
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from desk.errors import DeskError
from desk.forms.auth import EmptyForm
from desk.forms.tokens import TokenForm
from desk.i18n import gettext as _
from desk.services import tokens
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("tokens", __name__)


def _mine(form, status=200, new_token=None):
    return render_template("me/tokens.html", form=form, tokens=tokens.mine(current_user),
                           new_token=new_token), status


@bp.route("/my/tokens", methods=["GET", "POST"])
@login_required
def my_tokens():
    """My tokens; POST makes one and shows it, this once."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _mine(form, 400 if form.is_submitted() else 200)
    try:
        row, raw = tokens.create(current_user, form.name.data, form.days.data,
                                 form.read_only.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _mine(form, err.status)
    response = render_template("me/tokens.html", form=TokenForm(formdata=None),
                               tokens=tokens.mine(current_user), new_token=raw, new_row=row)
    return response, 201, {"Cache-Control": "no-store"}


@bp.route("/my/tokens/<id:token_id>/revoke", methods=["POST"])
@login_required
def revoke_mine(token_id: int):
    """Revoke one of my tokens at once."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    row = tokens.revoke(current_user, token_id, client_ip())
    flash(_("The token %(prefix)s… was revoked.", prefix=row.prefix), "success")
    return redirect(url_for("tokens.my_tokens"))


@bp.route("/agent/settings/tokens")
@agent_required
def all_tokens():
    """Every token of every person (administrators)."""
    return render_template("admin/tokens.html", tokens=tokens.everyone(current_user))


@bp.route("/agent/settings/tokens/<id:token_id>/revoke", methods=["POST"])
@agent_required
def revoke_any(token_id: int):
    """An administrator revokes anyone's token."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    row = tokens.revoke_as_admin(current_user, token_id, client_ip())
    flash(_("The token %(prefix)s… was revoked.", prefix=row.prefix), "success")
    return redirect(url_for("tokens.all_tokens"))
