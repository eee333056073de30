"""Personal access tokens for the JSON API.

A token is shown once, when it is made; desk keeps only an HMAC-SHA-256 of it
(keyed from the instance keyring, see desk.crypto) and its short visible
prefix. Password changes, email changes, deletion and erasure revoke a
person's tokens; tokens about to expire are announced once by mail.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

from flask import current_app
from flask_babel import force_locale
from peewee import JOIN

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.models import ApiToken
from desk.models import ApiTokenUse
from desk.models import User
from desk.models import utcnow
from desk.services import mail
from desk.services.people import clean_text

NAME_MAX = 100
DEFAULT_DAYS = 90
MAX_DAYS = 365
REMIND_BEFORE = dt.timedelta(days=7)
USE_WRITE_EVERY = dt.timedelta(seconds=60)
TOKEN_RE = re.compile(r"desk_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")

PASSWORD_CHANGED = "password_changed"
EMAIL_CHANGED = "email_changed"
DELETED = "deleted"
ERASED = "erased"
BY_HAND = "revoked"


@dataclass(frozen=True)
class Listed:
    """A token as lists show it, with its last use."""

    token: ApiToken
    last_used_at: dt.datetime | None
    last_used_ip: str

    @property
    def state(self) -> str:
        if self.token.revoked_at is not None:
            return "revoked"
        return "expired" if self.token.expires_at <= utcnow() else "active"


def create(user: User, name: str, days: int = DEFAULT_DAYS, read_only: bool = False,
           ip: str = "") -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the token itself, which
    is never stored and cannot be shown again."""
    if not policy.may_have_tokens(user):
        raise PermissionDenied("tokens")
    name = clean_text(name, NAME_MAX)
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(_l("A token lasts 1 to %(n)d days.", n=MAX_DAYS))
    public = secrets.token_hex(4)
    raw = f"desk_{public}_{crypto.new_token(32)}"
    key_id, digest = crypto.api_token_digest(raw)
    row = audit.create(Actor.of(user, ip), ApiToken, user=user, name=name, prefix=f"desk_{public}",
                       token_hash=digest, key_id=key_id, read_only=bool(read_only),
                       expires_at=utcnow() + dt.timedelta(days=days))
    return row, raw


def _listed(query) -> list[Listed]:
    rows = (query.select_extend(ApiTokenUse.last_used_at, ApiTokenUse.last_used_ip)
            .join(ApiTokenUse, JOIN.LEFT_OUTER, on=(ApiTokenUse.token == ApiToken.id))
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()).objects())
    return [Listed(r, r.last_used_at, r.last_used_ip or "") for r in rows]


def mine(user: User) -> list[Listed]:
    """The person's own tokens, newest first."""
    return _listed(ApiToken.select().where(ApiToken.user == user.id))


def everyone(admin: User) -> list[Listed]:
    """Every token of every person (administrators)."""
    policy.require(admin, "settings:manage")
    query = ApiToken.select(ApiToken, User).join(User, on=(ApiToken.user == User.id), attr="user")
    return _listed(query.switch(ApiToken))


def revoke(user: User, token_id: int, ip: str = "") -> ApiToken:
    """The owner revokes one of their tokens at once (anyone else's: NotFound)."""
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None or not policy.owns_token(user, row):
        raise NotFound(_l("No such token."))
    return _revoke(user, row, ip)


def revoke_as_admin(admin: User, token_id: int, ip: str = "") -> ApiToken:
    """An administrator revokes anyone's token."""
    policy.require(admin, "settings:manage")
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        raise NotFound(_l("No such token."))
    return _revoke(admin, row, ip)


def _revoke(user: User, row: ApiToken, ip: str) -> ApiToken:
    if row.revoked_at is None:
        audit.update(Actor.of(user, ip), row, action="revoke", revoked_at=utcnow(),
                     revoked_by=user.id, revoke_reason=BY_HAND)
    return row


def revoke_all(actor: Actor, user: User, reason: str) -> int:
    """Revoke every live token of ``user`` (inside the caller's transaction):
    called wherever a person's sessions end."""
    live = ApiToken.select().where(ApiToken.user == user.id, ApiToken.revoked_at.is_null())
    count = 0
    for row in live:
        audit.update(actor, row, action="revoke", revoked_at=utcnow(), revoked_by=actor.user_id,
                     revoke_reason=reason)
        count += 1
    return count


def remove_all(actor: Actor, user: User) -> int:
    """Delete every token of a person being erased (their names may name them)."""
    rows = list(ApiToken.select().where(ApiToken.user == user.id))
    for row in rows:
        audit.delete(actor, row)
    return len(rows)


def authenticate(raw: str, ip: str) -> ApiToken | None:
    """The live token ``raw`` is, with its user loaded, or None (unknown,
    malformed, revoked, expired, or its owner can no longer sign in: all
    the same to the caller). Records the use."""
    if not raw or not TOKEN_RE.fullmatch(raw):
        return None
    row = (ApiToken.select(ApiToken, User).join(User, on=(ApiToken.user == User.id), attr="user")
           .where(ApiToken.token_hash.in_(crypto.api_token_digests(raw)),
                  ApiToken.revoked_at.is_null(), ApiToken.expires_at > utcnow(),
                  User.deleted_at.is_null(), User.is_active == True)  # noqa: E712
           .first())
    if row is None:
        return None
    _record_use(row, ip)
    return row


def _record_use(row: ApiToken, ip: str) -> None:
    """Last use (at most one write a minute), and an audit entry the first
    time a token is used from an address other than its last one."""
    now = utcnow()
    use = ApiTokenUse.get_or_none(ApiTokenUse.token == row.id)
    if use is not None and use.last_used_ip == ip and now - use.last_used_at < USE_WRITE_EVERY:
        return
    with audit.transaction():
        if use is None:
            ApiTokenUse.insert(token=row.id, last_used_at=now, last_used_ip=ip).on_conflict(
                conflict_target=[ApiTokenUse.token],
                update={ApiTokenUse.last_used_at: now, ApiTokenUse.last_used_ip: ip}).execute()
        else:
            ApiTokenUse.update(last_used_at=now, last_used_ip=ip).where(
                ApiTokenUse.token == row.id).execute()
        if use is None or use.last_used_ip != ip:
            audit.record(Actor(row.user_id, ip), "token_used_new_address", "ApiToken", row.id,
                         subject_id=row.user_id, details={"prefix": row.prefix})


def remind_expiring() -> int:
    """One mail per live token that expires within 7 days; returns how many."""
    now = utcnow()
    due = (ApiToken.select(ApiToken, User).join(User, on=(ApiToken.user == User.id), attr="user")
           .where(ApiToken.revoked_at.is_null(), ApiToken.reminded_at.is_null(),
                  ApiToken.expires_at > now, ApiToken.expires_at <= now + REMIND_BEFORE,
                  User.deleted_at.is_null(), User.is_active == True))  # noqa: E712
    count = 0
    for row in due:
        with audit.transaction():
            audit.update(audit.SYSTEM, row, action="remind", reminded_at=now)
            _remind(row)
        count += 1
    return count


def _remind(row: ApiToken) -> None:
    user = row.user
    url = current_app.config["BASE_URL"].rstrip("/") + "/my/tokens"
    with force_locale(user.language or "en"):
        mail.queue(user.email, _("Your API token “%(name)s” expires soon", name=row.name),
                   _("Hello %(name)s,\n\nYour API token “%(token)s” (%(prefix)s…) expires on "
                     "%(date)s UTC. Tools that use it will stop working then. Make a new one "
                     "at %(url)s\n", name=user.name, token=row.name, prefix=row.prefix,
                     date=row.expires_at.strftime("%Y-%m-%d %H:%M"), url=url),
                   subject_id=user.id)
