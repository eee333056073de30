"""How long deleted records wait in the recycle bin before the purge."""
from __future__ import annotations

import datetime as dt

from flask import current_app

from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.services import settings

KEY = "retention_days"
MAX_DAYS = 3650


def days() -> int:
    """The retention period: the admin's setting, else DESK_RETENTION_DAYS."""
    return int(settings.get(KEY, current_app.config["RETENTION_DAYS"]))


def purge_date(deleted_at: dt.datetime) -> dt.datetime:
    return deleted_at + dt.timedelta(days=days())


def set_days(actor_user: User, value, ip: str = "") -> int:
    """Change the retention period (admins; audited)."""
    policy.require(actor_user, "settings:manage")
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(_l("Enter a whole number of days.")) from None
    if not 1 <= value <= MAX_DAYS:
        raise InvalidInput(_l("Choose between 1 and %(max)d days.", max=MAX_DAYS))
    settings.put(Actor.of(actor_user, ip), KEY, value)
    return value
