"""Agents and end users: sign-up, creation, lookup."""
from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError
from email_validator import validate_email
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import JOIN
from peewee import IntegrityError
from peewee import fn

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.models import Role
from desk.models import User
from desk.models.people import AGENT
from desk.models.people import END_USER
from desk.services import mail

NAME_MAX = 200
PASSWORD_MIN = 8
PASSWORD_MAX = 1024


def normalize_email(raw: str) -> str:
    """The canonical form of an address (lower case), or InvalidInput."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 254:
        raise InvalidInput(_l("Enter a valid email address."))
    try:
        checked = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput(_l("Enter a valid email address.")) from None
    return checked.normalized.lower()


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def clean_text(raw: str, max_length: int, required: bool = True, multiline: bool = False) -> str:
    """Trimmed text without control characters (line breaks only where
    ``multiline``), within ``max_length``."""
    text = (raw or "").strip()
    allowed = "\n\r\t" if multiline else "\t"
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        raise InvalidInput(_l("Text must not contain control characters."))
    if not multiline and any(ch in LINE_BREAKS for ch in text):
        raise InvalidInput(_l("Use a single line."))
    if required and not text:
        raise InvalidInput(_l("This field is required."))
    if len(text) > max_length:
        raise InvalidInput(_l("Use at most %(n)d characters.", n=max_length))
    return text


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password or "") <= PASSWORD_MAX:
        raise InvalidInput(_l("A password needs %(min)d to %(max)d characters.",
                              min=PASSWORD_MIN, max=PASSWORD_MAX))
    if "\x00" in password:
        raise InvalidInput(_l("Text must not contain control characters."))
    return password


def find_by_email(email: str) -> User | None:
    return User.get_or_none(fn.LOWER(User.email) == email.lower())


def _create_person(actor: Actor | None, kind: str, name: str, email: str, password: str,
                   role: Role | None = None) -> User:
    name = clean_text(name, NAME_MAX)
    email = normalize_email(email)
    password_hash = crypto.hash_password(check_password(password))
    with audit.transaction():
        if find_by_email(email) is not None:
            raise Conflict(_l("An account with this email address already exists."))
        try:
            user = audit.create(actor or audit.SYSTEM, User, kind=kind, name=name, email=email,
                                password_hash=password_hash, role=role,
                                session_token=crypto.new_token(24))
        except IntegrityError:  # a concurrent sign-up with the same address won
            raise Conflict(_l("An account with this email address already exists.")) from None
    return user


def sign_up(name: str, email: str, password: str, ip: str = "") -> User:
    """An end user creates their own account (they are the actor) and is
    sent a welcome message."""
    with audit.transaction():
        user = _create_person(None, END_USER, name, email, password)
        audit.record(Actor(user.id, ip), "signup", "User", user.id, subject_id=user.id)
        mail.queue(user.email, _("Welcome to the help center"),
                   _("Hello %(name)s,\n\nYour account is ready. Follow your requests at "
                     "%(url)s\n", name=user.name, url=f"{current_app.config['BASE_URL']}/my/tickets"),
                   subject_id=user.id)
    return user


def create_agent(actor: Actor, name: str, email: str, password: str, role: Role) -> User:
    """Create a staff account with the given role."""
    return _create_person(actor, AGENT, name, email, password, role=role)


def create_admin(actor: Actor, name: str, email: str, password: str) -> User:
    """Create an agent with the built-in Administrator role."""
    role = Role.get(Role.is_admin == True, Role.builtin == True)  # noqa: E712
    return create_agent(actor, name, email, password, role)


def has_admin() -> bool:
    return (User.select().join(Role)
            .where(Role.is_admin == True, User.is_active == True,  # noqa: E712
                   User.deleted_at.is_null()).exists())


def is_last_admin(user: User) -> bool:
    """Whether no other active administrator would be left without ``user``."""
    if not (user.role_id and Role.get_by_id(user.role_id).is_admin):
        return False
    others = (User.select().join(Role, JOIN.INNER, on=(User.role == Role.id))
              .where(Role.is_admin == True, User.id != user.id,  # noqa: E712
                     User.deleted_at.is_null(), User.is_active == True))  # noqa: E712
    return not others.exists()
