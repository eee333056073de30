"""The help center for end users: home, new ticket, My Tickets."""
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import login_required

from desk.config import LANGUAGES
from desk.errors import DeskError
from desk.errors import InvalidInput
from desk.forms.auth import EmptyForm
from desk.forms.filters import search_arg
from desk.forms.tickets import NewTicketForm
from desk.forms.tickets import ReplyForm
from desk.forms.tickets import StatusForm
from desk.i18n import gettext as _
from desk.models.tickets import STATUSES
from desk.services import custom_fields
from desk.services import tickets
from desk.web.fields import field_errors
from desk.web.fields import posted_custom_values
from desk.web.guards import client_ip
from desk.web.guards import me
from desk.web.pages import form_error
from desk.web.pages import invalid_form
from desk.web.pages import page_number
from desk.web.redirects import next_or
from desk.web.uploads import uploads
from desk.forms.fields import options

bp = Blueprint("portal", __name__)


def end_user_only():
    if not me().is_end_user:
        abort(403)


@bp.route("/")
def home():
    """Help center home."""
    return render_template("portal/home.html")


@bp.route("/tickets/new", methods=["GET", "POST"])
@login_required
def new_ticket():
    """An end user submits a ticket with optional attachments."""
    end_user_only()
    form = NewTicketForm()
    departments = tickets.public_departments()
    form.department.choices = options([(0, _("Choose…"))] + [(d.id, d.name) for d in departments])
    posted = posted_custom_values(request.form)
    context = {"show_departments": len(departments) > 1, "posted": posted, "errors": {},
               "custom": custom_fields.form_fields(me(), "tickets")}
    if not form.validate_on_submit():
        return invalid_form(form, "portal/new_ticket.html", **context)
    try:
        ticket = tickets.submit(me(), form.subject.data, form.description.data,
                                form.department.data or None, uploads(), client_ip(), posted,
                                form_key=form.form_key.data)
    except DeskError as err:
        context["errors"] = field_errors(err)
        if context["errors"]:
            err = InvalidInput(_("Please correct the marked fields."))
        return form_error(form, err, "portal/new_ticket.html", **context)
    flash(_("Thank you. Your request #%(id)d was received.", id=ticket.id), "success")
    return redirect(url_for("portal.ticket", ticket_id=ticket.id))


@bp.route("/my/tickets")
@login_required
def my_tickets():
    """My Tickets: the signed-in person's own tickets."""
    status = request.args.get("status", "")
    status = status if status in STATUSES else ""
    q = search_arg(request.args)
    user = me()
    page = tickets.requester_tickets(user, status or None, q, page_number())
    return render_template("portal/my_tickets.html", page=page, status=status, q=q,
                           counts=tickets.status_counts(user))


def _ticket_page(ticket_id: int, form, status=200):
    user = me()
    ticket = tickets.get_ticket(user, ticket_id)
    return render_template("portal/ticket.html", ticket=ticket, form=form,
                           custom=custom_fields.values_for(user, "tickets", ticket),
                           comments=tickets.thread(user, ticket),
                           files=tickets.ticket_files(ticket), status_form=StatusForm()), status


@bp.route("/my/tickets/<id:ticket_id>", methods=["GET", "POST"])
@login_required
def ticket(ticket_id: int):
    """One of my tickets with its public conversation; POST adds a reply."""
    if me().is_agent:
        return redirect(url_for("agent.ticket", ticket_id=ticket_id))
    form = ReplyForm()
    if not form.validate_on_submit():
        return _ticket_page(ticket_id, form, 400 if form.is_submitted() else 200)
    try:
        tickets.reply(me(), ticket_id, form.body.data, True, uploads(), client_ip(),
                      form_key=form.form_key.data)
    except DeskError as err:
        if err.status == 404:
            raise
        form.form_errors.append(str(err))
        return _ticket_page(ticket_id, form, err.status)
    flash(_("Your reply was sent."), "success")
    return redirect(url_for("portal.ticket", ticket_id=ticket_id, _anchor="latest"))


@bp.route("/my/tickets/<id:ticket_id>/status", methods=["POST"])
@login_required
def ticket_status(ticket_id: int):
    """Close or reopen my own ticket."""
    form = StatusForm()
    if not form.validate_on_submit():
        abort(400)
    tickets.set_status_as_requester(me(), ticket_id, form.status.data, client_ip())
    flash(_("The ticket is closed.") if form.status.data == "closed" else _("The ticket is open again."),
          "success")
    return redirect(url_for("portal.ticket", ticket_id=ticket_id))


@bp.route("/language", methods=["POST"])
def language():
    """Choose the interface language for this browser session."""
    if EmptyForm().validate_on_submit() and request.form.get("language") in LANGUAGES:
        session["language"] = request.form["language"]
    return redirect(next_or(request.form.get("next"), url_for("portal.home")))
