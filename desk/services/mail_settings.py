"""The SMTP settings an administrator keeps in the database (the password
sealed under the instance key); without them, the DESK_SMTP_* settings apply."""
from __future__ import annotations

import re

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import User
from desk.services import settings

ADDRESS = re.compile(r"[^@\s<>\"]{1,64}@[^@\s<>\"]{1,253}")
KEY = "smtp"
PASSWORD = "smtp_password"


def stored() -> dict | None:
    return settings.get(KEY)


def effective(config: dict) -> dict:
    """``config`` with the SMTP settings saved by an administrator, if any."""
    saved = stored()
    if not saved:
        return config
    return {**config, "SMTP_HOST": saved["host"], "SMTP_PORT": saved["port"],
            "SMTP_USER": saved["user"], "SMTP_STARTTLS": saved["starttls"],
            "SMTP_PASSWORD": crypto.open_secret(PASSWORD, saved.get("password")) or "",
            "MAIL_FROM": saved["mail_from"]}


def shown(config: dict) -> dict:
    """The settings as the page shows them: never the password, only whether there is one."""
    cfg = effective(config)
    return {"host": cfg["SMTP_HOST"], "port": cfg["SMTP_PORT"], "user": cfg["SMTP_USER"],
            "starttls": cfg["SMTP_STARTTLS"], "mail_from": cfg["MAIL_FROM"],
            "has_password": bool(cfg["SMTP_PASSWORD"]), "saved": stored() is not None}


def outbox_only(config: dict) -> bool:
    """True while mail is written to the outbox folder instead of being sent."""
    return not effective(config)["SMTP_HOST"]


def save(admin: User, config: dict, host: str, port: int, user: str, password: str | None,
         starttls: bool, mail_from: str, clear_password: bool = False, ip: str = "") -> None:
    """Keep new SMTP settings. An empty ``password`` keeps the one saved before
    (unless ``clear_password``); the password is stored sealed, never in clear."""
    policy.require(admin, "settings:manage")
    host = (host or "").strip()
    if any(c.isspace() for c in host) or len(host) > 253:
        raise InvalidInput(_l("Enter a host name or address, or leave it empty for the outbox."))
    if not 1 <= int(port or 0) <= 65535:
        raise InvalidInput(_l("Choose a port between 1 and 65535."))
    mail_from = (mail_from or "").strip()
    if not ADDRESS.fullmatch(mail_from):
        raise InvalidInput(_l("Enter the sender address, such as help@example.com."))
    previous = (stored() or {}).get("password")
    if not previous and config.get("SMTP_PASSWORD") and not stored():
        previous = crypto.seal_secret(PASSWORD, config["SMTP_PASSWORD"])
    sealed = None if clear_password else (crypto.seal_secret(PASSWORD, password) if password else previous)
    value = {"host": host, "port": int(port), "user": (user or "").strip(),
             "starttls": bool(starttls), "mail_from": mail_from,
             "password": sealed}
    settings.put(Actor.of(admin, ip), KEY, value)
