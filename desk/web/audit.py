"""The audit log page: every entry as a sentence, filtered and paged."""
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from desk import policy
from desk.forms import filters as filters_from
from desk.forms.auth import EmptyForm
from desk.i18n import gettext as _
from desk.services import audit_log
from desk.web import audit_sentences
from desk.web.guards import agent_required

bp = Blueprint("audit", __name__, url_prefix="/agent")
RECORD_PREFIXES = {"Ticket": "ticket", "Comment": "comment", "Attachment": "attachment",
                   "Department": "department", "Role": "role"}


def record_filter(view) -> str | None:
    """The ``record`` filter value that shows this entry's record's history."""
    kind, rid = view.record["type"], view.record.get("id") or ""
    if kind == "User":
        prefix = "agent" if view.record.get("kind") == "agent" else "contact"
    else:
        prefix = RECORD_PREFIXES.get(kind)
    return f"{prefix}:{rid}" if prefix and rid.isdigit() else None


@bp.route("/audit")
@agent_required
def audit_page():
    """The audit log, newest first; filters kept in the URL; keyset pages."""
    policy.require(current_user, "audit:view")
    filters = filters_from.audit_filters(request.args)
    args = filters_from.audit_args(request.args)
    before = filters_from.id_arg(request.args.get("before", ""))
    after = filters_from.id_arg(request.args.get("after", ""))
    page = audit_log.page(current_user, filters, before=before, after=after)
    return render_template("agent/audit.html", page=page, args=args, filters=filters,
                           chain=audit_log.chain_state(), actions=sorted(audit_sentences.SENTENCES),
                           sentence=audit_sentences.safe_sentence,
                           change_lines=audit_sentences.change_lines,
                           record_filter=record_filter)


@bp.route("/audit/verify", methods=["POST"])
@agent_required
def verify_now():
    """Verify the hash chain now (administrators)."""
    policy.require(current_user, "settings:manage")
    if not EmptyForm().validate_on_submit():
        abort(400)
    state = audit_log.verify_chain()
    flash(_("The chain is intact.") if state["ok"] else _("The chain is broken: %(summary)s",
                                                            summary=state["summary"]),
          "success" if state["ok"] else "error")
    return redirect(url_for("audit.audit_page"))
