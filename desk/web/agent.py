"""The agent desk: the ticket list and one ticket with its whole conversation."""
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from desk import policy
from desk.errors import DeskError
from desk.forms import filters as filters_from
from desk.forms.auth import EmptyForm
from desk.forms.tickets import AgentReplyForm
from desk.forms.tickets import TicketPropertiesForm
from desk.i18n import gettext as _
from desk.services import custom_fields
from desk.services import listing
from desk.services import tickets as ticket_service
from desk.web.fields import field_errors
from desk.web.fields import posted_custom_values
from desk.web.guards import agent_required
from desk.web.guards import client_ip
from desk.web.guards import me
from desk.web.pages import ascii_number
from desk.web.pages import page_number
from desk.web.uploads import uploads
from desk.forms.fields import options

bp = Blueprint("agent", __name__, url_prefix="/agent")


@bp.route("/tickets")
@agent_required
def tickets():
    """Ticket list with filters; by default open tickets assigned to me and
    unassigned ones in my departments."""
    user = me()
    filters = filters_from.ticket_filters(request.args)
    page = ticket_service.agent_tickets(user, filters, page_number())
    pickable = custom_fields.list_columns(user, "tickets")
    filterable = listing.filterable(pickable)
    columns, column_values = custom_fields.column_values(
        user, "tickets", [t.id for t in page.items], filters.columns, pickable)
    return render_template("agent/tickets.html", page=page, filters=filters,
                           custom_filters=filterable, custom_values=dict(filters.custom),
                           choices={f.key: custom_fields.choices_of(f) for f in filterable},
                           pickable=pickable,
                           columns=columns, column_values=column_values,
                           fields=policy.field_levels(user, "tickets"),
                           contact_fields=policy.field_levels(user, "contacts"),
                           agents=ticket_service.assignable_agents(),
                           departments=ticket_service.all_departments(),
                           args=filters_from.ticket_args(request.args))


PROPERTY_FIELDS = {"status": "status", "priority": "priority", "department": "department_id",
                   "assignee": "assignee_id"}


def _properties_form(ticket) -> TicketPropertiesForm:
    """The properties the agent may edit (the others are shown as text)."""
    form = TicketPropertiesForm(data={"status": ticket.status, "priority": ticket.priority,
                                      "department": ticket.department_id or 0,
                                      "assignee": ticket.assignee_id or 0})
    form.department.choices = options([(0, _("None"))] + [(d.id, d.name) for d in ticket_service.all_departments()])
    form.assignee.choices = options([(0, _("Unassigned"))] + [(a.id, a.name) for a in ticket_service.assignable_agents()])
    user = me()
    for name in PROPERTY_FIELDS:
        if policy.field_access(user, "tickets", name) != policy.EDIT:
            delattr(form, name)
    return form


def _posted_properties(form) -> dict:
    """Every property the POST carries: validated ones from the form, and any
    other (read-only or hidden) as sent, so a change to it is refused, not ignored."""
    values = {}
    for name, key in PROPERTY_FIELDS.items():
        if name in form:
            data = form[name].data
        elif name in request.form:
            raw = request.form[name]
            data = int(raw) if ascii_number(raw, 9) else raw
        else:
            continue
        values[key] = (data or None) if key.endswith("_id") else data
    return values


def _ticket_page(ticket_id: int, reply_form=None, properties_form=None, status=200,
                 custom_posted=None, custom_errors=None):
    user = me()
    ticket = ticket_service.get_ticket(user, ticket_id)
    can_edit = policy.can_edit_ticket(user)
    if reply_form is None:
        reply_form = AgentReplyForm(visibility="public" if can_edit else "private")
    return render_template("agent/ticket.html", ticket=ticket,
                           comments=ticket_service.thread(user, ticket),
                           files=ticket_service.ticket_files(ticket),
                           form=reply_form,
                           properties=properties_form or _properties_form(ticket),
                           can_edit=can_edit,
                           fields=policy.field_levels(user, "tickets"),
                           contact_fields=policy.field_levels(user, "contacts"),
                           custom=custom_fields.values_for(user, "tickets", ticket),
                           custom_posted=custom_posted or {}, custom_errors=custom_errors or {},
                           can_delete_ticket=policy.can_delete(user, "tickets"),
                           can_delete_comment=policy.can_delete(user, "comments")), status


@bp.route("/tickets/<id:ticket_id>")
@agent_required
def ticket(ticket_id: int):
    """One ticket: the whole thread, public replies and private notes, and its properties."""
    return _ticket_page(ticket_id)


@bp.route("/tickets/<id:ticket_id>/reply", methods=["POST"])
@agent_required
def reply(ticket_id: int):
    """Post a public reply or a private note, with attachments."""
    form = AgentReplyForm()
    if not form.validate_on_submit():
        return _ticket_page(ticket_id, reply_form=form, status=400)
    public = form.visibility.data != "private"
    try:
        ticket_service.reply(me(), ticket_id, form.body.data, public, uploads(), client_ip(),
                             form_key=form.form_key.data)
    except DeskError as err:
        if err.status in (403, 404):
            raise
        form.form_errors.append(str(err))
        return _ticket_page(ticket_id, reply_form=form, status=err.status)
    flash(_("Reply sent.") if public else _("Note added."), "success")
    return redirect(url_for("agent.ticket", ticket_id=ticket_id, _anchor="latest"))


@bp.route("/tickets/<id:ticket_id>/properties", methods=["POST"])
@agent_required
def properties(ticket_id: int):
    """Change status, priority, department and assignee."""
    user = me()
    ticket = ticket_service.get_ticket(user, ticket_id)
    if not policy.can_edit_ticket(user):
        abort(403)
    form = _properties_form(ticket)
    if not form.validate_on_submit():
        return _ticket_page(ticket_id, properties_form=form, status=400)
    changed = ticket_service.update_ticket(user, ticket_id, client_ip(),
                                           **_posted_properties(form))
    flash(_("Ticket updated.") if changed else _("Nothing changed."), "success")
    return redirect(url_for("agent.ticket", ticket_id=ticket_id))


@bp.route("/tickets/<id:ticket_id>/fields", methods=["POST"])
@agent_required
def ticket_fields(ticket_id: int):
    """Save the ticket's custom fields (those the role may edit)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    posted = posted_custom_values(request.form)
    try:
        changed = ticket_service.update_custom_fields(me(), ticket_id, posted, client_ip())
    except DeskError as err:
        if err.status in (403, 404):
            raise
        return _ticket_page(ticket_id, status=err.status, custom_posted=posted,
                            custom_errors=field_errors(err) or {"": str(err)})
    flash(_("Ticket updated.") if changed else _("Nothing changed."), "success")
    return redirect(url_for("agent.ticket", ticket_id=ticket_id, _anchor="fields"))


@bp.route("/tickets/<id:ticket_id>/delete", methods=["POST"])
@agent_required
def delete_ticket(ticket_id: int):
    """Move the ticket to the recycle bin."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    ticket_service.delete_ticket(me(), ticket_id, client_ip())
    flash(_("Ticket #%(id)d moved to the recycle bin.", id=ticket_id), "success")
    return redirect(url_for("agent.tickets"))


@bp.route("/tickets/<id:ticket_id>/comments/<id:comment_id>/delete", methods=["POST"])
@agent_required
def delete_comment(ticket_id: int, comment_id: int):
    """Move one comment to the recycle bin."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    ticket_service.delete_comment(me(), ticket_id, comment_id, client_ip())
    flash(_("Comment moved to the recycle bin."), "success")
    return redirect(url_for("agent.ticket", ticket_id=ticket_id))
