"""The agent desk."""
from flask import Blueprint
from flask import render_template
from flask import request
from flask_login import current_user

from desk.services import tickets as ticket_service
from desk.web.guards import agent_required

bp = Blueprint("agent", __name__, url_prefix="/agent")


@bp.route("/tickets")
@agent_required
def tickets():
    """The agent's queue: open tickets assigned to them or unassigned."""
    page = ticket_service.agent_queue(current_user, request.args.get("page", 1, type=int))
    return render_template("agent/tickets.html", page=page)
