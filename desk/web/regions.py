"""Hosting region settings: where the data lives, and moving it."""
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.fields import options
from desk.forms.privacy import RegionMoveForm
from desk.i18n import gettext as _
from desk.services import region_move
from desk.services import regions
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("regions", __name__, url_prefix="/agent/settings/region")


def _form() -> RegionMoveForm:
    form = RegionMoveForm()
    here = current_app.config["REGION"]
    form.region.choices = options((name, name) for name in regions.declared(current_app.config)
                                  if name != here)
    return form


def _page(form: RegionMoveForm, status: int = 200):
    info = region_move.status(current_user, current_app.config)
    return render_template("admin/region.html", info=info, form=form), status


@bp.route("", methods=["GET", "POST"])
@agent_required
def region_page():
    """The active region and its stores; POST asks the scheduler to move."""
    policy.require(current_user, "settings:manage")
    form = _form()
    if not form.validate_on_submit():
        return _page(form, 400 if form.is_submitted() else 200)
    try:
        region_move.request_move(current_user, current_app.config, form.region.data,
                                 form.confirmation.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _page(form, err.status)
    flash(_("The move to %(name)s will start within a minute; this page shows its progress.",
            name=form.region.data), "success")
    return redirect(url_for("regions.region_page"))
