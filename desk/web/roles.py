"""Admin settings: roles (permissions, ticket scope, field permissions),
agents, and what one agent can effectively see and do."""
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.auth import EmptyForm
from desk.forms.roles import AgentForm
from desk.forms.roles import AgentRoleForm
from desk.forms.roles import RoleForm
from desk.i18n import gettext as _
from desk.services import custom_fields
from desk.services import roles
from desk.services import tickets as ticket_service
from desk.web.guards import agent_required
from desk.web.guards import client_ip
from desk.web.labels import role_label
from desk.forms.fields import options

bp = Blueprint("roles", __name__, url_prefix="/agent/settings")


def _posted_matrix() -> tuple[list[str], dict]:
    permissions = request.form.getlist("permissions")
    levels = {key.removeprefix("field:"): value for key, value in request.form.items()
              if key.startswith("field:")}
    return permissions, levels


def _role_page(role, form, status=200):
    granted = set(policy.permissions_of_role(role)) if role else set()
    levels = policy.role_field_levels(role) if role else {}
    return render_template("admin/role.html", role=role, form=form, granted=granted, levels=levels,
                           agents=roles.agents_with(role) if role else [],
                           field_table=policy.all_fields(),
                           custom_labels=custom_fields.labels()), status


@bp.route("/roles", methods=["GET", "POST"])
@agent_required
def role_list():
    """Every role; POST creates a custom one."""
    policy.require(current_user, "settings:manage")
    form = RoleForm()
    if request.method == "GET":
        return render_template("admin/roles.html", roles=roles.all_roles())
    if not form.validate_on_submit():
        return _role_page(None, form, 400)
    try:
        role = roles.create(current_user, form.name.data, *_posted_matrix_for(form), ip=client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _role_page(None, form, err.status)
    flash(_("Role “%(name)s” created.", name=role.name), "success")
    return redirect(url_for("roles.role", role_id=role.id))


def _posted_matrix_for(form):
    permissions, levels = _posted_matrix()
    return permissions, form.ticket_scope.data, levels


@bp.route("/roles/new")
@agent_required
def new_role():
    policy.require(current_user, "settings:manage")
    return _role_page(None, RoleForm())


@bp.route("/roles/<id:role_id>", methods=["GET", "POST"])
@agent_required
def role(role_id: int):
    """One role: its permissions matrix, ticket scope and field permissions."""
    policy.require(current_user, "settings:manage")
    current = roles.get(role_id)
    form = RoleForm(obj=current)
    if request.method == "GET":
        return _role_page(current, form)
    if not form.validate_on_submit():
        return _role_page(current, form, 400)
    try:
        changed = roles.update(current_user, role_id, form.name.data, *_posted_matrix_for(form),
                               ip=client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _role_page(current, form, err.status)
    flash(_("Saved.") if changed else _("Nothing changed."), "success")
    return redirect(url_for("roles.role", role_id=role_id))


@bp.route("/roles/<id:role_id>/copy", methods=["POST"])
@agent_required
def copy_role(role_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400)
    copy = roles.copy(current_user, role_id, client_ip())
    flash(_("Copied to “%(name)s”.", name=copy.name), "success")
    return redirect(url_for("roles.role", role_id=copy.id))


@bp.route("/roles/<id:role_id>/delete", methods=["POST"])
@agent_required
def delete_role(role_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400)
    roles.delete(current_user, role_id, client_ip())
    flash(_("Role deleted."), "success")
    return redirect(url_for("roles.role_list"))


def _agent_form() -> AgentForm:
    form = AgentForm()
    form.role.choices = options((r.id, role_label(r)) for r in roles.all_roles())
    form.departments.choices = options((d.id, d.name) for d in ticket_service.all_departments())
    return form


@bp.route("/agents/new", methods=["GET", "POST"])
@agent_required
def new_agent():
    """Create a staff account with a role and departments."""
    policy.require(current_user, "agents:create")
    form = _agent_form()
    if not form.validate_on_submit():
        return render_template("admin/new_agent.html", form=form), 400 if form.is_submitted() else 200
    try:
        agent = roles.create_agent(current_user, form.name.data, form.email.data, form.password.data,
                                   form.role.data, form.departments.data or [], client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return render_template("admin/new_agent.html", form=form), err.status
    flash(_("Agent %(name)s created.", name=agent.name), "success")
    return redirect(url_for("roles.agent_permissions", agent_id=agent.id))


@bp.route("/agents/<id:agent_id>", methods=["GET", "POST"])
@agent_required
def agent_permissions(agent_id: int):
    """What one agent can see and do; POST gives them another role."""
    info = roles.effective(current_user, agent_id)
    form = AgentRoleForm(role=info["role"].id if info["role"] else None)
    form.role.choices = options((r.id, role_label(r)) for r in roles.all_roles())
    if form.validate_on_submit():
        try:
            roles.set_agent_role(current_user, agent_id, form.role.data, client_ip())
        except DeskError as err:
            form.form_errors.append(str(err))
            return render_template("admin/agent.html", info=info, form=form,
                                   custom_labels=custom_fields.labels()), err.status
        flash(_("Role changed."), "success")
        return redirect(url_for("roles.agent_permissions", agent_id=agent_id))
    status = 400 if form.is_submitted() else 200
    return render_template("admin/agent.html", info=info, form=form,
                           custom_labels=custom_fields.labels()), status
