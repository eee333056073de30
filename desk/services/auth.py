"""Signing in and out, with per-account throttling of wrong passwords."""
from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.errors import TooManyAttempts
from desk.models import AuditEntry
from desk.models import User
from desk.models import utcnow
from desk.services.people import find_by_email

WRONG_CREDENTIALS = _l("Wrong email address or password.")


def recent_failures(user: User, window: dt.timedelta) -> int:
    """Failed sign-ins for this account within ``window``, from the audit log."""
    return (AuditEntry.select()
            .where(AuditEntry.record_type == "User", AuditEntry.record_id == str(user.id),
                   AuditEntry.action == "login_failed",
                   AuditEntry.created_at >= utcnow() - window)
            .count())


def authenticate(email: str, password: str, ip: str, max_failures: int,
                 window_minutes: int) -> User:
    """The user for these credentials; every attempt is audited.

    After ``max_failures`` wrong passwords within the window the account
    refuses further attempts (even right ones) until the window passes.
    """
    user = find_by_email((email or "").strip()) if email else None
    usable = user is not None and user.is_active and user.deleted_at is None
    if not usable:
        crypto.verify_password(None, password or "")
        audit.record(Actor(None, ip), "login_failed", "User", None)
        raise InvalidInput(WRONG_CREDENTIALS)
    window = dt.timedelta(minutes=window_minutes)
    if recent_failures(user, window) >= max_failures:
        audit.record(Actor(None, ip), "login_failed", "User", user.id, subject_id=user.id,
                     details={"reason": "throttled"})
        raise TooManyAttempts(_l("Too many failed sign-in attempts. Try again in %(n)d minutes.",
                                 n=window_minutes))
    if not crypto.verify_password(user.password_hash, password or ""):
        audit.record(Actor(None, ip), "login_failed", "User", user.id, subject_id=user.id,
                     details={"reason": "password"})
        raise InvalidInput(WRONG_CREDENTIALS)
    audit.record(Actor(user.id, ip), "login", "User", user.id, subject_id=user.id)
    return user


def address_throttled(ip: str, path: str) -> None:
    """Record an attempt refused because this address tried too often."""
    audit.record(Actor(None, ip), "login_failed", "User", None,
                 details={"reason": "address_throttled", "path": path})


def logout(user: User, ip: str) -> None:
    audit.record(Actor(user.id, ip), "logout", "User", user.id, subject_id=user.id)


def load_session_user(session_id: str) -> User | None:
    """The user a session id names ("<id>:<token>"), if the token still matches."""
    user_id, _, token = (session_id or "").partition(":")
    if not user_id.isdigit() or not token:
        return None
    user = User.get_or_none(User.id == int(user_id))
    if user is None or user.deleted_at is not None or not user.is_active:
        return None
    if not crypto.tokens_equal(user.session_token, token):
        return None
    return user
