"""Signing in and out, with per-account throttling of wrong passwords."""
from __future__ import annotations

from flask_babel import ngettext

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.errors import TooManyAttempts
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.services import sessions
from desk.services.login_throttle import LoginThrottle
from desk.services.people import find_by_email

WRONG_CREDENTIALS = _l("Wrong email address or password.")


def authenticate(email: str, password: str, ip: str, throttle: LoginThrottle) -> User:
    """The user for these credentials; every attempt is audited.

    Known and unknown addresses get the same answers: a wrong password, or a
    short, growing wait after repeated failures (``desk.services.login_throttle``),
    never a lock that someone else's failures put on the right password.
    """
    user = find_by_email((email or "").strip()) if email else None
    usable = user is not None and user.is_active and user.deleted_at is None
    known = user.id if usable else None
    wait = throttle.wait_seconds()
    if wait:
        audit.record(Actor(None, ip), "login_failed", "User", known, subject_id=known,
                     details={"reason": "throttled"})
        raise TooManyAttempts(ngettext("Too many failed sign-in attempts for this address. "
                                       "Wait %(num)d second and try again.",
                                       "Too many failed sign-in attempts for this address. "
                                       "Wait %(num)d seconds and try again.", wait), retry_after=wait)
    if not crypto.verify_password(user.password_hash if usable else None, password or "") or not usable:
        throttle.failed()
        audit.record(Actor(None, ip), "login_failed", "User", known, subject_id=known,
                     details={"reason": "password"} if usable else None)
        raise InvalidInput(WRONG_CREDENTIALS)
    throttle.succeeded()
    audit.record(Actor(user.id, ip), "login", "User", user.id, subject_id=user.id)
    return user


def address_throttled(ip: str, path: str) -> None:
    """Record an attempt refused because this address tried too often."""
    audit.record(Actor(None, ip), "login_failed", "User", None,
                 details={"reason": "address_throttled", "path": path})


def logout(user: User, identity: str, ip: str) -> None:
    """Sign out this browser: its record goes, so its cookies (and copies of
    them) open nothing any more."""
    with audit.transaction():
        sessions.end(user, identity)
        audit.record(Actor(user.id, ip), "logout", "User", user.id, subject_id=user.id)
