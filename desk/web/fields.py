"""Custom fields: their definitions (settings), a contact's page with its
fields, and revealing an encrypted value."""
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
from desk.forms.custom_fields import EditFieldForm
from desk.forms.custom_fields import FieldForm
from desk.i18n import gettext as _
from desk.services import custom_fields
from desk.services import people_admin
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("fields", __name__)


def posted_custom_values(form) -> dict[str, str]:
    """Every ``cf_<key>`` of a POST. A checkbox posts a hidden empty value
    before its own, so the last one counts."""
    return {name: form.getlist(name)[-1] for name in form if name.startswith("cf_")}


def field_errors(err: DeskError) -> dict[str, str]:
    return getattr(err, "errors", {})


def _list_page(form, status=200):
    return render_template("fields/list.html", form=form,
                           info=custom_fields.definitions(current_user)), status


@bp.route("/agent/settings/fields", methods=["GET", "POST"])
@agent_required
def field_list():
    """Custom fields for tickets and contacts; POST defines a new one."""
    policy.require(current_user, "settings:manage")
    form = FieldForm()
    if not form.validate_on_submit():
        return _list_page(form, 400 if form.is_submitted() else 200)
    try:
        field = custom_fields.create(current_user, form.module.data, form.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _list_page(form, err.status)
    flash(_("Field “%(label)s” created.", label=field.label), "success")
    return redirect(url_for("fields.field_list"))


@bp.route("/agent/settings/fields/<id:field_id>", methods=["GET", "POST"])
@agent_required
def edit_field(field_id: int):
    """Change a field's labels, order, choices, visibility or encryption."""
    field = custom_fields.get_definition(current_user, field_id)
    form = EditFieldForm(obj=field, data={"choices": "\n".join(custom_fields.choices_of(field))})
    status = 400 if form.is_submitted() else 200
    if form.validate_on_submit():
        try:
            changed = custom_fields.update(current_user, field_id, form.data, client_ip())
        except DeskError as err:
            form.form_errors.append(str(err))
            status = err.status
        else:
            flash(_("Saved.") if changed else _("Nothing changed."), "success")
            return redirect(url_for("fields.field_list"))
    return render_template("fields/edit.html", form=form, field=field), status


@bp.route("/agent/settings/fields/<id:field_id>/delete", methods=["POST"])
@agent_required
def delete_field(field_id: int):
    """Move a field and its values to the recycle bin."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    field = custom_fields.delete(current_user, field_id, client_ip())
    flash(_("Field “%(label)s” moved to the recycle bin.", label=field.label), "success")
    return redirect(url_for("fields.field_list"))


@bp.route("/agent/settings/fields/<id:field_id>/restore", methods=["POST"])
@agent_required
def restore_field(field_id: int):
    """Bring a deleted field back with its values."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    custom_fields.restore(current_user, field_id, client_ip())
    flash(_("Restored."), "success")
    return redirect(url_for("fields.field_list"))


def _contact_page(person, posted=None, errors=None, status=200):
    return render_template("fields/contact.html", person=person,
                           levels=policy.field_levels(current_user, "contacts"),
                           custom=custom_fields.values_for(current_user, "contacts", person),
                           posted=posted or {}, errors=errors or {},
                           can_edit=policy.can(current_user, "contacts:edit")), status


@bp.route("/agent/contacts/<id:user_id>")
@agent_required
def contact(user_id: int):
    """One contact: their details and custom fields."""
    return _contact_page(people_admin.get_contact(current_user, user_id))


@bp.route("/agent/contacts/<id:user_id>/fields", methods=["POST"])
@agent_required
def contact_fields(user_id: int):
    """Save a contact's custom fields (those the role may edit)."""
    person = people_admin.get_contact(current_user, user_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    posted = posted_custom_values(request.form)
    try:
        changed = people_admin.update_contact_fields(current_user, user_id, posted, client_ip())
    except DeskError as err:
        if err.status in (403, 404):
            raise
        return _contact_page(person, posted, field_errors(err) or {"": str(err)}, err.status)
    flash(_("Saved.") if changed else _("Nothing changed."), "success")
    return redirect(url_for("fields.contact", user_id=user_id))


def _revealed(module: str, record_id: int, key: str, back: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    field, clear = custom_fields.reveal(current_user, module, record_id, key, client_ip())
    return render_template("fields/revealed.html", field=field, clear=clear, back=back,
                           module=module, record_id=record_id), 200, {
        "Cache-Control": "no-store", "Pragma": "no-cache"}


@bp.route("/agent/tickets/<id:ticket_id>/fields/<key>/reveal", methods=["POST"])
@agent_required
def reveal_ticket_field(ticket_id: int, key: str):
    """Show the clear value of one encrypted field of a ticket (audited)."""
    return _revealed("tickets", ticket_id, key, url_for("agent.ticket", ticket_id=ticket_id))


@bp.route("/agent/contacts/<id:user_id>/fields/<key>/reveal", methods=["POST"])
@agent_required
def reveal_contact_field(user_id: int, key: str):
    """Show the clear value of one encrypted field of a contact (audited)."""
    return _revealed("contacts", user_id, key, url_for("fields.contact", user_id=user_id))
