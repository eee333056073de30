"""Signed-in browsers: a server-side record per browser session.

Signing in makes a random secret that both the session cookie and the
remember-me cookie carry (flask-login's user id is "<user id>:<secret>");
desk keeps only a keyed hash of it (desk.crypto.session_digest) with when,
from where and with which browser. A cookie opens nothing once its record is
gone, so signing out (here, or from another browser's My Info) revokes the
copied cookies of that browser, while the person's other browsers stay signed
in. A password change, deletion and erasure end them all (``end_all``).
"""
from __future__ import annotations

import datetime as dt

from flask import current_app
from peewee import JOIN

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.db import prepared
from desk.db import write_transaction
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import BrowserSession
from desk.models import Role
from desk.models import User
from desk.models import utcnow

TOUCH_EVERY = dt.timedelta(seconds=60)
AGENT_MAX = 255
IP_MAX = 64

PASSWORD_CHANGED = "password_changed"
DELETED = "deleted"
ERASED = "erased"
EVERYWHERE = "signed_out_everywhere"


def _as_delta(value) -> dt.timedelta:
    return value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=int(value))


def idle_limit(remember: bool) -> dt.timedelta:
    """How long a browser may stay away before its record lapses: the life
    of the remember-me cookie, else of the session cookie."""
    cfg = current_app.config
    if remember:
        return _as_delta(cfg.get("REMEMBER_COOKIE_DURATION") or dt.timedelta(days=365))
    return _as_delta(cfg["PERMANENT_SESSION_LIFETIME"])


def _lapsed(row: BrowserSession, now: dt.datetime) -> bool:
    return now - row.last_seen_at > idle_limit(row.remember)


def start(user: User, ip: str, user_agent: str, remember: bool = False) -> str:
    """Record a new signed-in browser for ``user``; returns the identity its
    cookies carry ("<user id>:<secret>"), which is never stored."""
    now = utcnow()
    secret = crypto.new_token(32)
    with write_transaction():
        _drop_lapsed(user, now)
        BrowserSession.create(user=user.id, secret_hash=crypto.session_digest(secret),
                              remember=bool(remember), created_at=now, last_seen_at=now,
                              ip=(ip or "")[:IP_MAX], user_agent=(user_agent or "")[:AGENT_MAX])
    return f"{user.id}:{secret}"


def _drop_lapsed(user: User, now: dt.datetime) -> None:
    for row in BrowserSession.select().where(BrowserSession.user == user.id):
        if _lapsed(row, now):
            BrowserSession.delete().where(BrowserSession.id == row.id).execute()


@prepared()
def _by_secret(digest):
    return BrowserSession.select().where(BrowserSession.secret_hash == digest).limit(1)


@prepared()
def _user(user_id):
    """The person with their role (read with them: every agent page asks for it)."""
    return (User.select(User, Role).join(Role, JOIN.LEFT_OUTER, on=(User.role == Role.id), attr="role")
            .where(User.id == user_id).limit(1))


def _find(identity: str) -> BrowserSession | None:
    user_id, _, secret = (identity or "").partition(":")
    if not user_id.isdigit() or not secret:
        return None
    row = _by_secret.first(digest=crypto.session_digest(secret))
    if row is None or row.user_id != int(user_id):
        return None
    return row


def resume(identity: str, ip: str, user_agent: str) -> User | None:
    """The user a cookie's identity names while its browser record lives (and
    the person may still sign in), else None. Notes when and from where the
    browser was last seen, at most once a minute."""
    row = _find(identity)
    if row is None:
        return None
    now = utcnow()
    if _lapsed(row, now):
        with write_transaction():
            BrowserSession.delete().where(BrowserSession.id == row.id).execute()
        return None
    user = _user.first(user_id=row.user_id)
    if user is None or user.deleted_at is not None or not user.is_active:
        return None
    # At most one write a minute, even for a browser that alternates between
    # addresses (IPv4 and IPv6 of one machine): the address shown may lag a minute.
    if now - row.last_seen_at >= TOUCH_EVERY:
        with write_transaction():
            BrowserSession.update(last_seen_at=now, ip=(ip or "")[:IP_MAX],
                                  user_agent=(user_agent or "")[:AGENT_MAX] or row.user_agent
                                  ).where(BrowserSession.id == row.id).execute()
    user.session_identity = identity
    user.browser_session = row
    return user


def end(user: User, identity: str) -> None:
    """Forget this browser's record (signing out; inside the caller's transaction)."""
    row = _find(identity)
    if row is not None and row.user_id == user.id:
        with write_transaction():
            BrowserSession.delete().where(BrowserSession.id == row.id).execute()


def mine(user: User) -> list[BrowserSession]:
    """The person's signed-in browsers, most recently seen first."""
    now = utcnow()
    rows = (BrowserSession.select().where(BrowserSession.user == user.id)
            .order_by(BrowserSession.last_seen_at.desc(), BrowserSession.id.desc()))
    return [row for row in rows if not _lapsed(row, now)]


def end_one(user: User, session_id: int, ip: str = "") -> BrowserSession:
    """The person signs out one of their browsers (anyone else's: NotFound)."""
    row = BrowserSession.get_or_none(BrowserSession.id == session_id,
                                     BrowserSession.user == user.id)
    if row is None:
        raise NotFound(_l("No such session."))
    with audit.transaction():
        BrowserSession.delete().where(BrowserSession.id == row.id).execute()
        audit.record(Actor.of(user, ip), "session_end", "User", user.id, subject_id=user.id,
                     details={"session": row.id})
    return row


def end_all(actor: Actor, user: User, reason: str) -> int:
    """End every signed-in browser of ``user`` (inside the caller's
    transaction when there is one); returns how many there were."""
    with audit.transaction():
        count = BrowserSession.delete().where(BrowserSession.user == user.id).execute()
        if count:
            audit.record(actor, "sessions_end", "User", user.id, subject_id=user.id,
                         details={"count": count, "reason": reason})
    return count


def sign_out_everywhere(user: User, ip: str = "") -> int:
    """The person ends every browser session of theirs, this one too."""
    return end_all(Actor.of(user, ip), user, EVERYWHERE)
