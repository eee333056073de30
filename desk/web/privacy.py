"""Privacy in the desk: contacts and agents, the recycle bin, erasure (right
to be forgotten), retention settings; and the public privacy page."""
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.auth import EmptyForm
from desk.forms import filters as filters_from
from desk.forms.filters import search_arg
from desk.forms.privacy import EraseForm
from desk.forms.privacy import RetentionForm
from desk.i18n import gettext as _
from desk.services import custom_fields
from desk.services import listing
from desk.services import erasure
from desk.services import notices
from desk.services import people_admin
from desk.services import processing_record
from desk.services import purge
from desk.services import recycle_bin
from desk.services import retention
from desk.web.guards import agent_required
from desk.web.guards import client_ip
from desk.web.pages import page_number

bp = Blueprint("privacy", __name__)
PEOPLE = {"contacts": "end_user", "agents": "agent"}


@bp.route("/privacy")
def privacy_page():
    """What the help center holds, where, for how long, and who controls it."""
    return render_template("privacy.html", region=current_app.config["REGION"],
                           retention_days=retention.days(),
                           rec=processing_record.public_record(current_app.config),
                           notice=notices.current())


@bp.route("/agent/<any(contacts, agents):module>")
@agent_required
def people(module: str):
    """Contacts (end users) or agents, with delete and erase actions."""
    filters = filters_from.people_filters(request.args)
    page = people_admin.people(current_user, PEOPLE[module], filters.q, page_number(), filters.custom)
    levels = (policy.field_levels(current_user, "contacts") if module == "contacts"
              else {"name": policy.EDIT, "email": policy.EDIT, "phone": policy.EDIT})
    pickable = custom_fields.list_columns(current_user, "contacts") if module == "contacts" else []
    filterable = listing.filterable(pickable)
    columns, column_values = custom_fields.column_values(
        current_user, "contacts", [p.id for p in page.items], filters.columns, pickable)
    return render_template("agent/people.html", module=module, page=page, q=filters.q, fields=levels,
                           filters=filters, custom_filters=filterable, custom_values=dict(filters.custom),
                           choices={f.key: custom_fields.choices_of(f) for f in filterable},
                           pickable=pickable, columns=columns, column_values=column_values,
                           args=filters_from.people_args(request.args))


@bp.route("/agent/people/<id:user_id>/delete", methods=["POST"])
@agent_required
def delete_person(user_id: int):
    """Move a contact or agent to the recycle bin."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    person = recycle_bin.delete_person(current_user, user_id, client_ip())
    flash(_("%(name)s moved to the recycle bin.", name=person.name), "success")
    return redirect(url_for("privacy.people", module="agents" if person.is_agent else "contacts"))


@bp.route("/agent/recycle-bin")
@agent_required
def bin_list():
    """Deleted records by module, with when each will be purged."""
    counts = recycle_bin.counts(current_user)
    module = request.args.get("module", "")
    if module not in counts:
        # Open on the first tab that holds something, not on an empty one (the
        # tabs are the modules the role may view).
        module = next((m for m, n in counts.items() if n), next(iter(counts), "tickets"))
    q = search_arg(request.args)
    return render_template("agent/recycle_bin.html", module=module, q=q,
                           page=recycle_bin.items(current_user, module, q, page_number()),
                           counts=counts, retention_days=retention.days())


@bp.route("/agent/recycle-bin/<any(tickets, comments, contacts, agents):module>/<id:record_id>/restore",
          methods=["POST"])
@agent_required
def restore(module: str, record_id: int):
    """Bring a deleted record back."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    recycle_bin.restore(current_user, module, record_id, client_ip())
    flash(_("Restored."), "success")
    return redirect(url_for("privacy.bin_list", module=module))


@bp.route("/agent/recycle-bin/<any(tickets, comments):module>/<id:record_id>/purge", methods=["POST"])
@agent_required
def purge_now(module: str, record_id: int):
    """Delete a ticket or comment permanently, with its files."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    recycle_bin.delete_permanently(current_user, module, record_id, current_app.config, client_ip())
    flash(_("Deleted permanently."), "success")
    return redirect(url_for("privacy.bin_list", module=module))


@bp.route("/agent/people/<id:user_id>/erase", methods=["GET", "POST"])
@agent_required
def erase(user_id: int):
    """Right to be forgotten: preview what is affected, confirm by typing the placeholder."""
    info = erasure.preview(current_user, user_id)
    form = EraseForm()
    if not form.validate_on_submit():
        return render_template("agent/erase.html", info=info, form=form), \
            400 if form.is_submitted() else 200
    try:
        erasure.start(current_user, user_id, form.mode.data, form.confirmation.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return render_template("agent/erase.html", info=info, form=form), err.status
    flash(_("%(placeholder)s: personal data erased.", placeholder=info["placeholder"]), "success")
    return redirect(url_for("privacy.erasure_queue"))


@bp.route("/agent/settings/erasure-requests")
@agent_required
def erasure_queue():
    """Erasure requests from people, waiting for an administrator."""
    policy.require(current_user, "settings:manage")
    return render_template("admin/erasure_requests.html", requests=erasure.queue())


@bp.route("/agent/settings/privacy", methods=["GET", "POST"])
@agent_required
def settings_page():
    """Privacy settings: the retention period, and what the purge will remove."""
    policy.require(current_user, "settings:manage")
    form = RetentionForm(days=retention.days())
    status = 200
    if form.validate_on_submit():
        try:
            retention.set_days(current_user, form.days.data, client_ip())
        except DeskError as err:
            form.form_errors.append(str(err))
            status = err.status
        else:
            flash(_("Saved."), "success")
            return redirect(url_for("privacy.settings_page"))
    elif form.is_submitted():
        status = 400
    return render_template("admin/privacy.html", form=form, due=purge.due()), status
