"""Changing the email address, the unique identifier: the person asks, an
admin approves, the new address confirms by a single-use link that expires in
24 hours, and both addresses are told. Every step is audited."""
from __future__ import annotations

import datetime as dt

from flask import current_app
from flask_babel import force_locale

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.models import EmailChangeRequest
from desk.models import User
from desk.models import utcnow
from desk.models.privacy import APPROVED
from desk.models.privacy import CANCELLED
from desk.models.privacy import CONFIRMED
from desk.models.privacy import PENDING
from desk.models.privacy import REJECTED
from desk.services import mail
from desk.services import subject_requests
from desk.services import tokens
from desk.services.people import clean_text
from desk.services.people import find_by_email
from desk.services.people import normalize_email

LINK_LIFETIME = dt.timedelta(hours=24)
UNAVAILABLE = _l("This address cannot be used. Choose another one.")


def _address_taken(email: str, by_user_id: int) -> bool:
    """In use by an account, or approved for someone else (whose link is out)."""
    if find_by_email(email) is not None:
        return True
    return (EmailChangeRequest.select()
            .where(EmailChangeRequest.new_email == email, EmailChangeRequest.user != by_user_id,
                   EmailChangeRequest.status == APPROVED).exists())


def _tell(user: User, address: str, subject, body) -> None:
    with force_locale(user.language or "en"):
        mail.queue(address, str(subject()), str(body()), subject_id=user.id)


def _tell_owner(owner: User) -> None:
    """Someone asked to move their account to ``owner``'s address: say so,
    without saying who (that is the other person's business)."""
    url = current_app.config["BASE_URL"].rstrip("/")
    _tell(owner, owner.email,
          lambda: _("Someone asked to use your email address"),
          lambda: _("Hello %(name)s,\n\nSomeone asked to use this email address (%(email)s) for "
                    "another account at %(url)s. It is yours, so that will not happen: your "
                    "account is unchanged and you need not do anything.\n",
                    name=owner.name, email=owner.email, url=url))


def pending_for(user: User) -> EmailChangeRequest | None:
    return (EmailChangeRequest.select()
            .where(EmailChangeRequest.user == user.id,
                   EmailChangeRequest.status.in_([PENDING, APPROVED]))
            .order_by(EmailChangeRequest.id.desc()).first())


def request_change(user: User, new_email: str, ip: str = "") -> EmailChangeRequest:
    """The person asks for a new address; an earlier open request is cancelled.

    An address that is already taken gets the same answer (so nobody can find
    out who has an account); its owner is told by mail instead, and the admin
    who reviews the request finds it cannot be approved."""
    email = normalize_email(new_email)
    if email == user.email:
        raise InvalidInput(_l("That is already your address."))
    actor = Actor.of(user, ip)
    with audit.transaction():
        owner = find_by_email(email)
        if owner is not None:
            _tell_owner(owner)
        earlier = pending_for(user)
        if earlier is not None:
            audit.update(actor, earlier, status=CANCELLED, token_hash=None)
            subject_requests.settle(actor, email_change_id=earlier.id)
        req = audit.create(actor, EmailChangeRequest, user=user, new_email=email)
        subject_requests.from_person(actor, user, "rectification", email_change_id=req.id)
        _tell(user, user.email,
              lambda: _("Your email change request"),
              lambda: _("Hello %(name)s,\n\nWe received your request to change your email address "
                        "to %(new)s. An administrator will review it; then a confirmation link "
                        "goes to the new address. Until then, keep signing in with this one.\n",
                        name=user.name, new=email))
    return req


def queue() -> list[EmailChangeRequest]:
    """Open requests for the admin's queue, oldest first, with their people."""
    return list(EmailChangeRequest.select(EmailChangeRequest, User)
                .join(User, on=(EmailChangeRequest.user == User.id))
                .where(EmailChangeRequest.status == PENDING)
                .order_by(EmailChangeRequest.created_at))


def _open_request(admin: User, request_id: int) -> EmailChangeRequest:
    if not policy.can(admin, "settings:manage"):
        raise PermissionDenied("settings:manage")
    req = EmailChangeRequest.get_or_none(EmailChangeRequest.id == request_id)
    if req is None or req.status != PENDING:
        raise NotFound(_l("No such open request."))
    return req


def approve(admin: User, request_id: int, ip: str = "") -> EmailChangeRequest:
    """Approve: a single-use confirmation link goes to the new address."""
    actor = Actor.of(admin, ip)
    with audit.transaction():
        req = _open_request(admin, request_id)
        if _address_taken(req.new_email, req.user_id):
            raise Conflict(UNAVAILABLE)
        token = crypto.new_token()
        audit.update(actor, req, status=APPROVED, token_hash=crypto.token_hash(token),
                     expires_at=utcnow() + LINK_LIFETIME, decided_by=admin.id, decided_at=utcnow())
        user = User.get_by_id(req.user_id)
        link = f"{current_app.config['BASE_URL'].rstrip('/')}/confirm-email/{token}"
        _tell(user, req.new_email,
              lambda: _("Confirm your new email address"),
              lambda: _("Hello %(name)s,\n\nTo start using this address for your account, open this "
                        "link within 24 hours (it works once):\n\n%(link)s\n\nIf you did not ask "
                        "for this, ignore this message.\n", name=user.name, link=link))
    return req


def reject(admin: User, request_id: int, reason: str, ip: str = "") -> EmailChangeRequest:
    """Reject with a reason, which the person is told."""
    reason = clean_text(reason, 1000, multiline=True)
    with audit.transaction():
        req = _open_request(admin, request_id)
        audit.update(Actor.of(admin, ip), req, status=REJECTED, reason=reason,
                     decided_by=admin.id, decided_at=utcnow())
        subject_requests.settle(Actor.of(admin, ip), email_change_id=req.id)
        user = User.get_by_id(req.user_id)
        _tell(user, user.email,
              lambda: _("Your email change request was declined"),
              lambda: _("Hello %(name)s,\n\nYour request to change your email address was declined:"
                        "\n\n%(reason)s\n", name=user.name, reason=reason))
    return req


def confirm(user: User, token: str, ip: str = "") -> User:
    """Follow the link: the signed-in person's address changes, once."""
    req = EmailChangeRequest.get_or_none(EmailChangeRequest.token_hash == crypto.token_hash(token or ""))
    if req is None or req.user_id != user.id:
        raise NotFound(_l("This confirmation link is not valid for your account."))
    if req.status != APPROVED:
        raise InvalidInput(_l("This confirmation link was already used."))
    if req.expires_at is None or req.expires_at < utcnow():
        raise InvalidInput(_l("This confirmation link has expired. Ask for the change again."))
    actor = Actor.of(user, ip)
    old_email = user.email
    with audit.transaction():
        if find_by_email(req.new_email) is not None:
            raise Conflict(UNAVAILABLE)
        audit.update(actor, req, status=CONFIRMED, confirmed_at=utcnow())
        subject_requests.settle(actor, email_change_id=req.id)
        audit.update(actor, user, email=req.new_email)
        tokens.revoke_all(actor, user, tokens.EMAIL_CHANGED)
        for address in (old_email, req.new_email):
            _tell(user, address,
                  lambda: _("Your email address was changed"),
                  lambda: _("Hello %(name)s,\n\nThe email address of your account changed from "
                            "%(old)s to %(new)s. Sign in with the new address from now on.\n\nIf this "
                            "was not you, contact us at once.\n",
                            name=user.name, old=old_email, new=req.new_email))
    return user
