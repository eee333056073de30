"""The privacy center: the register of data subject requests (and, from
there, the other registers)."""
import datetime as dt

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.errors import DeskError
from desk.forms.privacy_center import CHANNEL_LABELS
from desk.forms.privacy_center import BreachForm
from desk.forms.privacy_center import KIND_LABELS
from desk.forms.privacy_center import OUTCOME_LABELS
from desk.forms.privacy_center import ProcessingDetailsForm
from desk.forms.privacy_center import CloseForm
from desk.forms.privacy_center import ExtendForm
from desk.forms.privacy_center import LinkForm
from desk.forms.privacy_center import LogRequestForm
from desk.forms.privacy_center import NoticeForm
from desk.forms.fields import options
from desk.i18n import gettext as _
from desk.models import utcnow
from desk.services import breaches
from desk.services import notices
from desk.services import processing_record
from desk.services import subject_requests
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("privacy_center", __name__, url_prefix="/agent/privacy")
LABELS = dict(KIND_LABELS=KIND_LABELS, CHANNEL_LABELS=CHANNEL_LABELS, OUTCOME_LABELS=OUTCOME_LABELS)


@bp.route("")
@agent_required
def index():
    """The privacy center's front page: what needs attention, and the registers."""
    views = subject_requests.register(current_user)
    return render_template("privacy_center/index.html", overdue=[v for v in views if v.overdue],
                           soon=[v for v in views if v.due_soon],
                           open_count=sum(v.status == "open" for v in views),
                           unreported=[b for b in breaches.register(current_user) if not b.reported])


def _register_page(form=None, status=200):
    kind = request.args.get("kind", "")
    state = request.args.get("status", "")
    views = subject_requests.register(current_user, kind=kind, status=state)
    form = form or LogRequestForm(received_on=utcnow().date())
    return render_template("privacy_center/requests.html", views=views, form=form, kind=kind,
                           state=state, **LABELS), status


@bp.route("/requests")
@agent_required
def requests():
    """Every data subject request; overdue and due-soon ones stand out."""
    return _register_page()


@bp.route("/requests", methods=["POST"])
@agent_required
def log_request():
    """Log a request that arrived by mail, phone or letter."""
    policy.require(current_user, "privacy:edit")
    form = LogRequestForm()
    if not form.validate_on_submit():
        return _register_page(form, 400)
    received = dt.datetime.combine(form.received_on.data, dt.time(12, 0))
    received = min(received, utcnow())
    try:
        req = subject_requests.log(current_user, form.email.data, form.kind.data, form.channel.data,
                                   received, form.identity_checked.data, form.identity_note.data,
                                   form.notes.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _register_page(form, err.status)
    flash(_("Request #%(id)d logged.", id=req.id), "success")
    return redirect(url_for("privacy_center.request_detail", request_id=req.id))


def _detail_page(request_id: int, extend_form=None, link_form=None, close_form=None, status=200):
    req = subject_requests.get(current_user, request_id)
    view = subject_requests.view(req, {req.user_id: req.user.name} if req.user_id else {}, utcnow())
    link_form = link_form or LinkForm()
    link_form.target.choices = options(subject_requests.candidates(current_user, request_id))
    return render_template("privacy_center/request.html", v=view, req=req,
                           extend_form=extend_form or ExtendForm(), link_form=link_form,
                           close_form=close_form or CloseForm(), **LABELS), status


@bp.route("/requests/<id:request_id>")
@agent_required
def request_detail(request_id: int):
    """One request: its deadline, extension, link and closing."""
    return _detail_page(request_id)


def _act(request_id: int, form, name: str, call):
    policy.require(current_user, "privacy:edit")
    if not form.validate_on_submit():
        return _detail_page(request_id, status=400, **{name: form})
    try:
        call(form)
    except DeskError as err:
        if err.status in (403, 404):
            raise
        form.form_errors.append(str(err))
        return _detail_page(request_id, status=err.status, **{name: form})
    flash(_("Saved."), "success")
    return redirect(url_for("privacy_center.request_detail", request_id=request_id))


@bp.route("/requests/<id:request_id>/extend", methods=["POST"])
@agent_required
def extend(request_id: int):
    """Extend the deadline once by up to 60 days, with a reason."""
    return _act(request_id, ExtendForm(), "extend_form", lambda f: subject_requests.extend(
        current_user, request_id, f.days.data, f.reason.data, client_ip()))


@bp.route("/requests/<id:request_id>/link", methods=["POST"])
@agent_required
def link(request_id: int):
    """Tie the request to the action that fulfils it."""
    form = LinkForm()
    form.target.choices = options(subject_requests.candidates(current_user, request_id))
    return _act(request_id, form, "link_form", lambda f: subject_requests.link(
        current_user, request_id, f.target.data, client_ip()))


@bp.route("/requests/<id:request_id>/close", methods=["POST"])
@agent_required
def close(request_id: int):
    """Close a request by hand: done or refused, with a note."""
    return _act(request_id, CloseForm(), "close_form", lambda f: subject_requests.close(
        current_user, request_id, f.outcome.data, f.notes.data, client_ip()))


@bp.route("/requests.csv")
@agent_required
def requests_csv():
    """The register as CSV."""
    stream = subject_requests.register_csv(current_user, ip=client_ip())
    name = f"data-subject-requests-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(stream), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


# -- breaches ------------------------------------------------------------------------

def _breach_values(form) -> dict:
    return {name: form[name].data for name in breaches.FIELDS}


def _breaches_page(form=None, status=200):
    return render_template("privacy_center/breaches.html", views=breaches.register(current_user),
                           form=form or BreachForm(discovered_at=utcnow().replace(second=0, microsecond=0))), status


@bp.route("/breaches")
@agent_required
def breach_list():
    """The breach register with each breach's 72-hour clock."""
    return _breaches_page()


@bp.route("/breaches", methods=["POST"])
@agent_required
def record_breach():
    """Enter a breach in the register."""
    policy.require(current_user, "privacy:edit")
    form = BreachForm()
    if not form.validate_on_submit():
        return _breaches_page(form, 400)
    try:
        row = breaches.record(current_user, _breach_values(form), client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _breaches_page(form, err.status)
    flash(_("Breach #%(id)d recorded. The 72-hour clock runs from its discovery.", id=row.id), "success")
    return redirect(url_for("privacy_center.breach", breach_id=row.id))


def _breach_page(breach_id: int, form=None, status=200):
    row = breaches.get(current_user, breach_id)
    return render_template("privacy_center/breach.html", v=breaches.view(row, utcnow()),
                           form=form or BreachForm(obj=row)), status


@bp.route("/breaches/<id:breach_id>")
@agent_required
def breach(breach_id: int):
    """One breach: its clock, and the form that keeps its entry up to date."""
    return _breach_page(breach_id)


@bp.route("/breaches/<id:breach_id>", methods=["POST"])
@agent_required
def update_breach(breach_id: int):
    """Update a breach's entry (measures, notifications...)."""
    policy.require(current_user, "privacy:edit")
    breaches.get(current_user, breach_id)
    form = BreachForm()
    if not form.validate_on_submit():
        return _breach_page(breach_id, form, 400)
    try:
        breaches.update(current_user, breach_id, _breach_values(form), client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _breach_page(breach_id, form, err.status)
    flash(_("Saved."), "success")
    return redirect(url_for("privacy_center.breach", breach_id=breach_id))


# -- record of processing activities ------------------------------------------------------

def _processing_page(form=None, status=200):
    rec = processing_record.record(current_user, current_app.config)
    return render_template("privacy_center/processing.html", rec=rec,
                           form=form or ProcessingDetailsForm(data=rec["details"])), status


@bp.route("/processing")
@agent_required
def processing():
    """The record of processing activities (Art. 30), generated from what desk holds."""
    return _processing_page()


@bp.route("/processing", methods=["POST"])
@agent_required
def save_processing():
    """Save the controller's details, purposes and processors."""
    policy.require(current_user, "privacy:edit")
    form = ProcessingDetailsForm()
    if not form.validate_on_submit():
        return _processing_page(form, 400)
    try:
        processing_record.save_details(current_user, {k: form[k].data for k in processing_record.EDITABLE},
                                       client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _processing_page(form, err.status)
    flash(_("Saved."), "success")
    return redirect(url_for("privacy_center.processing"))


@bp.route("/processing.csv")
@agent_required
def processing_csv():
    """The record of processing activities as CSV."""
    stream = processing_record.record_csv(current_user, current_app.config, client_ip())
    name = f"record-of-processing-{utcnow():%Y%m%d}.csv"
    return Response(stream_with_context(stream), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


# -- privacy notice versions and consents ------------------------------------------------

def _consents_page(form=None, status=200):
    current = notices.current()
    return render_template("privacy_center/consents.html", versions=notices.versions(current_user),
                           consents=notices.consents(current_user),
                           form=form or NoticeForm(text=current.text if current else "")), status


@bp.route("/consents")
@agent_required
def consents():
    """Privacy notice versions, and who accepted or acknowledged which, when."""
    return _consents_page()


@bp.route("/consents", methods=["POST"])
@agent_required
def publish_notice():
    """Publish a new version of the privacy notice."""
    policy.require(current_user, "privacy:edit")
    form = NoticeForm()
    if not form.validate_on_submit():
        return _consents_page(form, 400)
    try:
        notice = notices.publish(current_user, form.text.data, client_ip())
    except DeskError as err:
        form.form_errors.append(str(err))
        return _consents_page(form, err.status)
    flash(_("Version %(version)d published. People will see it at their next sign-in.",
            version=notice.version), "success")
    return redirect(url_for("privacy_center.consents"))
