"""Mail settings: the SMTP server (password stored sealed), a test mail, and
the banner on settings pages while mail only goes to the outbox folder."""
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.mail import SmtpForm
from desk.forms.mail import TestMailForm
from desk.i18n import gettext as _
from desk.services import mail
from desk.services import mail_settings
from desk.web.guards import agent_required
from desk.web.guards import client_ip
from desk.web.pages import form_error
from desk.web.pages import invalid_form

bp = Blueprint("mail", __name__, url_prefix="/agent/settings")
TEMPLATE = "admin/mail.html"


@bp.app_context_processor
def outbox_banner() -> dict:
    """Tell administrators on settings pages that mail is not being sent."""
    if (not request.path.startswith("/agent/settings") or not current_user.is_authenticated
            or not policy.can(current_user, "settings:manage")):
        return {}
    return {"mail_outbox_only": mail_settings.outbox_only(current_app.config)}


def _context(test_form=None) -> dict:
    return {"shown": mail_settings.shown(current_app.config), "test_form": test_form or TestMailForm()}


@bp.route("/mail", methods=["GET", "POST"])
@agent_required
def settings():
    """The SMTP settings; POST saves them."""
    policy.require(current_user, "settings:manage")
    shown = mail_settings.shown(current_app.config)
    form = SmtpForm(data={k: shown[k] for k in ("host", "port", "user", "starttls", "mail_from")})
    if not form.validate_on_submit():
        return invalid_form(form, TEMPLATE, **_context())
    try:
        mail_settings.save(current_user, current_app.config, form.host.data, form.port.data,
                           form.user.data, form.password.data, form.starttls.data,
                           form.mail_from.data, form.clear_password.data, client_ip())
    except DeskError as err:
        return form_error(form, err, TEMPLATE, **_context())
    flash(_("Mail settings saved."), "success")
    return redirect(url_for("mail.settings"))


@bp.route("/mail/test", methods=["POST"])
@agent_required
def test():
    """Send a test mail now with the saved settings, and say what happened."""
    policy.require(current_user, "settings:manage")
    test_form = TestMailForm()
    form = SmtpForm(formdata=None, data=mail_settings.shown(current_app.config))
    if not test_form.validate_on_submit():
        return render_template(TEMPLATE, form=form, **_context(test_form)), 400
    try:
        where = mail.send_test(current_user, current_app.config, test_form.to.data, client_ip())
    except DeskError as err:
        test_form.form_errors.append(str(err))
        return render_template(TEMPLATE, form=form, **_context(test_form)), err.status
    if where == "outbox":
        flash(_("No SMTP server is set: the test mail was written to the outbox folder."), "info")
    else:
        flash(_("The test mail was sent to %(to)s.", to=test_form.to.data), "success")
    return redirect(url_for("mail.settings"))
