"""Admin settings: departments and their members, the email change queue."""
from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.auth import EmptyForm
from desk.forms.tickets import DepartmentForm
from desk.forms.tickets import MemberForm
from desk.forms.profile import RejectForm
from desk.i18n import gettext as _
from desk.models import utcnow
from desk.services import bulk_export
from desk.services import departments
from desk.services import email_change
from desk.services import tickets as ticket_service
from desk.web.guards import agent_required
from desk.web.guards import client_ip
from desk.forms.fields import options

bp = Blueprint("admin", __name__, url_prefix="/agent/settings")


@bp.route("")
@agent_required
def index():
    """Settings: links to every area the agent may manage."""
    return render_template("admin/settings.html")


def _member_form() -> MemberForm:
    form = MemberForm()
    form.agent.choices = options((a.id, f"{a.name} <{a.email}>") for a in ticket_service.assignable_agents())
    return form


def _page(form=None, status=200):
    return render_template("admin/departments.html", overview=departments.overview(),
                           form=form or DepartmentForm(), member_form=_member_form()), status


@bp.route("/departments", methods=["GET", "POST"])
@agent_required
def department_list():
    """Departments with their members; POST creates one."""
    policy.require(current_user, "departments:manage")
    form = DepartmentForm()
    if not form.validate_on_submit():
        return _page(form, 400 if form.is_submitted() else 200)
    try:
        dept = departments.create(current_user, form.name.data, form.is_private.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _page(form, err.status)
    flash(_("Department “%(name)s” created.", name=dept.name), "success")
    return redirect(url_for("admin.department_list"))


@bp.route("/departments/<id:department_id>/members", methods=["POST"])
@agent_required
def add_member(department_id: int):
    """Put an agent in the department."""
    form = _member_form()
    if not form.validate_on_submit():
        abort(400)
    departments.add_member(current_user, department_id, form.agent.data, client_ip())
    flash(_("Agent added."), "success")
    return redirect(url_for("admin.department_list"))


@bp.route("/departments/<id:department_id>/members/<id:agent_id>/remove", methods=["POST"])
@agent_required
def remove_member(department_id: int, agent_id: int):
    """Take an agent out of the department."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    departments.remove_member(current_user, department_id, agent_id, client_ip())
    flash(_("Agent removed."), "success")
    return redirect(url_for("admin.department_list"))


@bp.route("/email-changes")
@agent_required
def email_changes():
    """The queue of email change requests awaiting a decision."""
    policy.require(current_user, "settings:manage")
    return render_template("admin/email_changes.html", requests=email_change.queue(),
                           reject_form=RejectForm())


@bp.route("/email-changes/<id:request_id>/approve", methods=["POST"])
@agent_required
def approve_email_change(request_id: int):
    """Approve: the new address gets a confirmation link."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    email_change.approve(current_user, request_id, client_ip())
    flash(_("Approved. A confirmation link was sent to the new address."), "success")
    return redirect(url_for("admin.email_changes"))


@bp.route("/email-changes/<id:request_id>/reject", methods=["POST"])
@agent_required
def reject_email_change(request_id: int):
    """Reject with a reason the person is told."""
    policy.require(current_user, "settings:manage")
    form = RejectForm()
    if not form.validate_on_submit():
        return render_template("admin/email_changes.html", requests=email_change.queue(),
                               reject_form=form, rejecting=request_id), 400
    email_change.reject(current_user, request_id, form.reason.data, client_ip())
    flash(_("Rejected. The person was told why."), "success")
    return redirect(url_for("admin.email_changes"))


@bp.route("/bulk-export", methods=["GET", "POST"])
@agent_required
def bulk_export_page():
    """Start the bulk export of everything; see its progress; download it."""
    if not policy.is_admin(current_user):
        abort(403)
    if request.method == "POST":
        if not EmptyForm().validate_on_submit():
            abort(400)
        try:
            bulk_export.start(current_user, client_ip())
        except DeskError as err:
            flash(str(err), "error")
            return redirect(url_for("admin.bulk_export_page"))
        flash(_("Bulk export started. You will get a mail when it is ready."), "success")
        return redirect(url_for("admin.bulk_export_page"))
    exports = bulk_export.recent(current_user)
    return render_template("admin/bulk_export.html", exports=exports, now=utcnow(),
                           running=any(e.status in ("queued", "running") for e in exports))


@bp.route("/bulk-export/<id:export_id>/download")
@agent_required
def bulk_export_download(export_id: int):
    """The ZIP (decrypted as it streams); 410 once the link has expired."""
    if not policy.is_admin(current_user):
        abort(403)
    stream = bulk_export.download(current_user, export_id, client_ip())
    return Response(stream_with_context(stream), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="desk-export-{export_id}.zip"',
        "Cache-Control": "no-store"})
