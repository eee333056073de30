"""Who is told what by mail about tickets. Messages are queued in the caller's
transaction (desk.services.mail) and written in the recipient's language."""
from __future__ import annotations

from flask import current_app
from flask_babel import force_locale

from desk.i18n import gettext as _
from desk.models import Comment
from desk.models import Ticket
from desk.models import User
from desk.services import mail


def _send(user: User, subject_fn, body_fn) -> None:
    if user is None or not user.is_active or user.deleted_at is not None:
        return
    with force_locale(user.language or "en"):
        mail.queue(user.email, subject_fn(), body_fn(), subject_id=user.id)


def _base() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def ticket_received(ticket: Ticket) -> None:
    """Acknowledgement to the requester of a new ticket."""
    requester = User.get_by_id(ticket.requester_id)
    _send(requester,
          lambda: _("[#%(id)d] We received your request: %(subject)s", id=ticket.id, subject=ticket.subject),
          lambda: _("Hello %(name)s,\n\nThank you for contacting us. Your request #%(id)d has been "
                    "received and we will reply soon.\n\nFollow it here: %(url)s\n",
                    name=requester.name, id=ticket.id, url=f"{_base()}/my/tickets/{ticket.id}"))


def agent_replied(ticket: Ticket, comment: Comment) -> None:
    """The requester is told of each public agent reply (never of private notes)."""
    if not comment.is_public:
        return
    requester = User.get_by_id(ticket.requester_id)
    _send(requester,
          lambda: _("[#%(id)d] New reply: %(subject)s", id=ticket.id, subject=ticket.subject),
          lambda: _("Hello %(name)s,\n\nThere is a new reply to your request #%(id)d:\n\n%(body)s\n\n"
                    "Reply or follow it here: %(url)s\n", name=requester.name, id=ticket.id,
                    body=comment.body, url=f"{_base()}/my/tickets/{ticket.id}"))


def requester_replied(ticket: Ticket, comment: Comment) -> None:
    """The assignee is told when the requester replies."""
    if not ticket.assignee_id:
        return
    assignee = User.get_by_id(ticket.assignee_id)
    _send(assignee,
          lambda: _("[#%(id)d] Customer replied: %(subject)s", id=ticket.id, subject=ticket.subject),
          lambda: _("%(requester)s replied to ticket #%(id)d:\n\n%(body)s\n\n%(url)s\n",
                    requester=User.get_by_id(ticket.requester_id).name, id=ticket.id,
                    body=comment.body, url=f"{_base()}/agent/tickets/{ticket.id}"))


def ticket_assigned(ticket: Ticket) -> None:
    """An agent is told when a ticket is assigned to them by someone else."""
    assignee = User.get_by_id(ticket.assignee_id)
    _send(assignee,
          lambda: _("[#%(id)d] Assigned to you: %(subject)s", id=ticket.id, subject=ticket.subject),
          lambda: _("Ticket #%(id)d was assigned to you.\n\n%(url)s\n", id=ticket.id,
                    url=f"{_base()}/agent/tickets/{ticket.id}"))
