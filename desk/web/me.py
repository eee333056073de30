"""A person's own data: My Info (end users) and My Information (agents),
email change, password, and download of everything held about them."""
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from flask_login import logout_user

from desk.errors import DeskError
from desk.extensions import limiter
from desk.forms.auth import EmptyForm
from desk.forms.profile import AgentInfoForm
from desk.forms.profile import EmailChangeForm
from desk.forms.profile import MyInfoForm
from desk.forms.profile import PasswordForm
from desk.i18n import gettext as _
from desk.services import email_change
from desk.services import erasure
from desk.services import export
from desk.services import custom_fields
from desk.services import profile
from desk.services import sessions
from desk.web.auth import sign_in
from desk.web.fields import field_errors
from desk.web.fields import posted_custom_values
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("me", __name__)


def _info_endpoint() -> str:
    return "me.agent_info" if current_user.is_agent else "me.my_info"


def _info_page(form, status=200, email_form=None, password_form=None, posted=None, errors=None):
    template = "agent/my_info.html" if current_user.is_agent else "portal/my_info.html"
    custom = [] if current_user.is_agent else \
        custom_fields.values_for(current_user, "contacts", current_user)
    return render_template(template, form=form, email_form=email_form or EmailChangeForm(),
                           custom=custom, posted=posted or {}, errors=errors or {},
                           password_form=password_form or PasswordForm(),
                           pending=email_change.pending_for(current_user),
                           ticket_count=profile.ticket_count(current_user),
                           sessions=sessions.mine(current_user),
                           this_session=getattr(current_user.browser_session, "id", None)), status


def _info(form_class):
    form = form_class(obj=current_user)
    if request.method == "POST" and "email" in request.form:
        form.form_errors.append(_("Your email address was not changed: it is your sign-in name. "
                                  "Use “Change email address” below to ask for a new one."))
        return _info_page(form, 400)
    posted = posted_custom_values(request.form)
    if not form.validate_on_submit():
        return _info_page(form, 400 if form.is_submitted() else 200, posted=posted)
    try:
        changed = profile.update_my_info(current_user, form.data, client_ip(), custom=posted)
    except DeskError as err:
        errors = field_errors(err)
        form.form_errors.append(_("Please correct the marked fields.") if errors else str(err))
        return _info_page(form, err.status, posted=posted, errors=errors)
    flash(_("Your details were saved.") if changed else _("Nothing changed."), "success")
    return redirect(url_for(_info_endpoint()))


@bp.route("/my/info", methods=["GET", "POST"])
@login_required
def my_info():
    """My Info: an end user views and corrects their personal details."""
    if current_user.is_agent:
        return redirect(url_for("me.agent_info"))
    return _info(MyInfoForm)


@bp.route("/agent/settings/my-info", methods=["GET", "POST"])
@agent_required
def agent_info():
    """Settings > Personal Settings > My Information."""
    return _info(AgentInfoForm)


def _email_change_limit() -> str:
    return current_app.config["EMAIL_CHANGE_LIMIT"]


def _per_person() -> str:
    """Email change requests are counted per person; only those that were
    accepted (and so sent mail) count."""
    return f"email-change/{current_user.id}"


@bp.route("/my/email-change", methods=["GET", "POST"])
@login_required
@limiter.limit(_email_change_limit, key_func=_per_person, methods=["POST"],
               deduct_when=lambda response: response.status_code == 302)
def request_email_change():
    """Ask to change the email address (an admin approves, the new address confirms)."""
    form = EmailChangeForm()
    if request.method == "GET":
        return redirect(url_for(_info_endpoint(), _anchor="email"))
    info_form = (AgentInfoForm if current_user.is_agent else MyInfoForm)(obj=current_user)
    if not form.validate_on_submit():
        return _info_page(info_form, 400, email_form=form)
    try:
        email_change.request_change(current_user, form.new_email.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _info_page(info_form, err.status, email_form=form)
    flash(_("Your request was sent. An administrator will review it; then a confirmation link "
            "goes to the new address."), "success")
    return redirect(url_for(_info_endpoint()))


@bp.route("/my/password", methods=["POST"])
@login_required
def change_password():
    """Change the password; other sessions are signed out."""
    form = PasswordForm()
    info_form = (AgentInfoForm if current_user.is_agent else MyInfoForm)(obj=current_user)
    if not form.validate_on_submit():
        return _info_page(info_form, 400, password_form=form)
    row = current_user.browser_session
    try:
        user = profile.change_password(current_user._get_current_object(), form.current_password.data,
                                       form.new_password.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _info_page(info_form, err.status, password_form=form)
    sign_in(user, remember=bool(row and row.remember))  # every session ended: this browser anew
    flash(_("Your password was changed. Other sessions were signed out."), "success")
    return redirect(url_for(_info_endpoint()))


@bp.route("/my/sessions/<id:session_id>/sign-out", methods=["POST"])
@login_required
def end_session(session_id: int):
    """Sign out one of my browsers (this one, or one I left signed in elsewhere)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    this = current_user.browser_session
    sessions.end_one(current_user, session_id, client_ip())  # another's: 404
    if this is not None and this.id == session_id:
        logout_user()
        flash(_("You are signed out."), "info")
        return redirect(url_for("auth.login"))
    flash(_("That browser was signed out."), "success")
    return redirect(url_for(_info_endpoint(), _anchor="sessions"))


@bp.route("/my/sessions/sign-out-everywhere", methods=["POST"])
@login_required
def end_all_sessions():
    """Sign out every browser I am signed in with, this one too."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    sessions.sign_out_everywhere(current_user, client_ip())
    logout_user()
    flash(_("You are signed out everywhere."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/my/data-export", methods=["GET", "POST"])
@login_required
def data_export():
    """Download everything held about me as a ZIP (GET explains, POST downloads)."""
    form = EmptyForm()
    if request.method == "GET":
        return render_template("me/data_export.html", form=form)
    if not form.validate_on_submit():
        abort(400)
    stream = export.person_zip(current_user, current_user, client_ip())
    filename = f"desk-my-data-{current_user.id}.zip"
    return Response(stream_with_context(stream), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, no-store"})


@bp.route("/my/erasure-request", methods=["POST"])
@login_required
def request_erasure():
    """Ask to be forgotten; an administrator carries it out."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        erasure.request_by_person(current_user, client_ip())
    except DeskError as err:
        flash(str(err), "info")
    else:
        flash(_("Your request to erase your data was sent to an administrator."), "success")
    return redirect(url_for(_info_endpoint(), _anchor="erase"))


@bp.route("/confirm-email/<token>", methods=["GET", "POST"])
@login_required
def confirm_email(token: str):
    """The link from the mail: confirm the new address (signed in as its owner)."""
    form = EmptyForm()
    if not form.validate_on_submit():
        return render_template("me/confirm_email.html", form=form, token=token)
    user = email_change.confirm(current_user, token, client_ip())
    flash(_("Your email address is now %(email)s.", email=user.email), "success")
    return redirect(url_for(_info_endpoint()))
