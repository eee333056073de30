"""The breach register (GDPR Art. 33/34): every personal data breach with
what it touched and what was done, and the 72-hour clock from discovery to
telling the supervisory authority; administrators are mailed at 48 and at 72
hours while it is not done. Functions that read the clock take ``now``."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from flask import current_app
from flask_babel import force_locale

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.models import Breach
from desk.models import User
from desk.models import utcnow
from desk.services import mail

DEADLINE = dt.timedelta(hours=72)
FIRST_REMINDER = dt.timedelta(hours=48)
TEXT_MAX = 10_000
COUNT_MAX = 10**9
FIELDS = ("discovered_at", "description", "categories", "people_affected", "records_affected",
          "consequences", "measures", "authority_notified_at", "people_notified_at")


@dataclass(frozen=True)
class BreachView:
    """A breach with its clock at ``now``."""

    row: Breach
    deadline: dt.datetime
    reported: bool
    overdue: bool
    hours_left: int  # negative once overdue
    urgent: bool  # unreported and 48 hours or more since discovery


def view(row: Breach, now: dt.datetime) -> BreachView:
    deadline = row.discovered_at + DEADLINE
    reported = row.authority_notified_at is not None
    left = math.ceil((deadline - now).total_seconds() / 3600)
    return BreachView(row, deadline, reported, not reported and now > deadline, left,
                      not reported and now >= row.discovered_at + FIRST_REMINDER)


def register(user: User, now: dt.datetime | None = None) -> list[BreachView]:
    """Every breach, newest discovery first."""
    policy.require(user, "privacy:view")
    now = now or utcnow()
    return [view(b, now) for b in Breach.select().order_by(Breach.discovered_at.desc(), Breach.id.desc())]


def get(user: User, breach_id: int) -> Breach:
    policy.require(user, "privacy:view")
    row = Breach.get_or_none(Breach.id == breach_id)
    if row is None:
        raise NotFound(_l("No such breach."))
    return row


def _cleaned(values: dict, now: dt.datetime) -> dict:
    """The register's rules: a description, times not in the future, telling
    after discovery, counts that are whole numbers."""
    out = {k: values[k] for k in FIELDS if k in values}
    for name in ("description", "categories", "consequences", "measures"):
        text = (out.get(name) or "").strip()
        if len(text) > TEXT_MAX:
            raise InvalidInput(_l("A text is too long (at most %(max)d characters).", max=TEXT_MAX))
        out[name] = text
    if not out["description"]:
        raise InvalidInput(_l("Describe what happened."))
    discovered = out.get("discovered_at")
    if discovered is None:
        raise InvalidInput(_l("Enter when the breach was discovered."))
    for name in ("discovered_at", "authority_notified_at", "people_notified_at"):
        when = out.get(name)
        if when is not None and when > now + dt.timedelta(minutes=5):
            raise InvalidInput(_l("Times cannot be in the future."))
        if when is not None and name != "discovered_at" and when < discovered:
            raise InvalidInput(_l("Telling someone cannot come before the discovery."))
    for name in ("people_affected", "records_affected"):
        count = out.get(name)
        if count is not None and not (isinstance(count, int) and 0 <= count <= COUNT_MAX):
            raise InvalidInput(_l("Enter an approximate number (0 or more)."))
    return out


def record(admin: User, values: dict, ip: str = "", now: dt.datetime | None = None) -> Breach:
    """Enter a breach in the register."""
    policy.require(admin, "privacy:edit")
    cleaned = _cleaned(values, now or utcnow())
    return audit.create(Actor.of(admin, ip), Breach, created_by=admin.id, **cleaned)


def update(admin: User, breach_id: int, values: dict, ip: str = "",
           now: dt.datetime | None = None) -> dict:
    """Change what the register says (measures taken, notifications made...)."""
    policy.require(admin, "privacy:edit")
    row = get(admin, breach_id)
    cleaned = _cleaned(values, now or utcnow())
    return audit.update(Actor.of(admin, ip), row, **cleaned)


def remind(now: dt.datetime | None = None) -> int:
    """Mail administrators about breaches not yet reported to the authority,
    once at 48 hours and once at 72 hours after discovery (a scheduled job).
    Returns how many reminders went out."""
    from desk.services import audit_log
    now = now or utcnow()
    sent = 0
    unreported = Breach.select().where(Breach.authority_notified_at.is_null(),
                                       Breach.discovered_at <= now - FIRST_REMINDER)
    for row in unreported:
        late = now >= row.discovered_at + DEADLINE
        if (late and row.reminded_72_at) or (not late and row.reminded_48_at):
            continue
        with audit.transaction():
            stamp = {"reminded_72_at": now} if late else {"reminded_48_at": now}
            if late and row.reminded_48_at is None:
                stamp["reminded_48_at"] = now
            audit.update(audit.SYSTEM, row, action="remind", **stamp)
            for admin in audit_log.admins():
                _mail(admin, row, late)
        sent += 1
    return sent


def _mail(admin: User, row: Breach, late: bool) -> None:
    url = current_app.config["BASE_URL"].rstrip("/") + f"/agent/privacy/breaches/{row.id}"
    deadline = (row.discovered_at + DEADLINE).strftime("%Y-%m-%d %H:%M")
    with force_locale(admin.language or "en"):
        if late:
            subject = _("Breach #%(id)d: 72 hours have passed and the authority was not told", id=row.id)
            body = _("Breach #%(id)d was discovered more than 72 hours ago (the deadline was %(deadline)s "
                     "UTC) and the register does not say the supervisory authority was told. Notify it "
                     "now, with the reasons for the delay (GDPR Art. 33(1)), and record it: %(url)s\n",
                     id=row.id, deadline=deadline, url=url)
        else:
            subject = _("Breach #%(id)d: 24 hours left to tell the authority", id=row.id)
            body = _("Breach #%(id)d was discovered 48 hours ago. The supervisory authority must be "
                     "told by %(deadline)s UTC (GDPR Art. 33). Record the notification here: %(url)s\n",
                     id=row.id, deadline=deadline, url=url)
        mail.queue(admin.email, subject, body, subject_id=admin.id)
