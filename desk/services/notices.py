"""The privacy notice, versioned: an administrator's edit publishes a new
version; signing up records which version the person accepted; after a
change, people acknowledge the new version at their next sign-in."""
from __future__ import annotations

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import NoticeConsent
from desk.models import PrivacyNotice
from desk.models import User
from desk.models import utcnow

SIGNUP = "signup"
ACKNOWLEDGED = "acknowledged"
TEXT_MAX = 50_000
LIST_MAX = 500


def current() -> PrivacyNotice | None:
    """The notice in force (the newest version), or None before the first."""
    return PrivacyNotice.select().order_by(PrivacyNotice.version.desc()).first()


def publish(admin: User, text: str, ip: str = "") -> PrivacyNotice:
    """Publish a new version of the notice; everyone acknowledges it at their
    next sign-in."""
    policy.require(admin, "privacy:edit")
    text = (text or "").strip()
    if not text:
        raise InvalidInput(_l("Write the notice."))
    if len(text) > TEXT_MAX:
        raise InvalidInput(_l("The notice is too long (at most %(max)d characters).", max=TEXT_MAX))
    with audit.transaction():
        latest = current()
        if latest is not None and latest.text == text:
            raise InvalidInput(_l("The text is the same as the version in force."))
        return audit.create(Actor.of(admin, ip), PrivacyNotice, version=(latest.version if latest else 0) + 1,
                            text=text, created_by=admin.id)


def accept_at_signup(actor: Actor, user: User) -> NoticeConsent | None:
    """Record the version a new account accepted (in the sign-up's transaction)."""
    notice = current()
    if notice is None:
        return None
    return audit.create(actor, NoticeConsent, user=user, version=notice.version, kind=SIGNUP)


def pending(user: User) -> PrivacyNotice | None:
    """The notice ``user`` has yet to see: the current version when they
    accepted or acknowledged none or an older one."""
    notice = current()
    if notice is None or not getattr(user, "is_authenticated", False):
        return None
    seen = (NoticeConsent.select().where(NoticeConsent.user == user.id,
                                         NoticeConsent.version >= notice.version).exists())
    return None if seen else notice


def acknowledge(user: User, version: int, ip: str = "") -> NoticeConsent:
    """The person read the version shown to them."""
    notice = current()
    if notice is None or notice.version != version:
        raise InvalidInput(_l("The notice changed meanwhile; read the new version."))
    existing = NoticeConsent.get_or_none(NoticeConsent.user == user.id, NoticeConsent.version == version)
    if existing is not None:
        return existing
    return audit.create(Actor.of(user, ip), NoticeConsent, user=user, version=version, kind=ACKNOWLEDGED,
                        accepted_at=utcnow())


def versions(user: User) -> list[PrivacyNotice]:
    policy.require(user, "privacy:view")
    return list(PrivacyNotice.select().order_by(PrivacyNotice.version.desc()))


def consents(user: User, limit: int = LIST_MAX) -> list[NoticeConsent]:
    """The newest consent records with their people (privacy center)."""
    policy.require(user, "privacy:view")
    return list(NoticeConsent.select(NoticeConsent, User).join(User, attr="person")
                .order_by(NoticeConsent.accepted_at.desc(), NoticeConsent.id.desc()).limit(limit))


def own_records(user: User) -> list[dict]:
    """A person's own records, for their data export."""
    return [{"version": c.version, "kind": c.kind, "at": c.accepted_at.isoformat(timespec="seconds") + "Z"}
            for c in NoticeConsent.select().where(NoticeConsent.user == user.id).order_by(NoticeConsent.id)]
