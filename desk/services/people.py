"""Agents and end users: sign-up, creation, lookup."""
from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError
from email_validator import validate_email
from flask import current_app
from flask_babel import force_locale
from peewee import JOIN
from peewee import IntegrityError
from peewee import fn

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.models import Role
from desk.models import User
from desk.models.people import AGENT
from desk.models.people import END_USER
from desk.services import mail
from desk.services import notices

NAME_MAX = 200
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
SIGNUP_LINK = "signup"
SIGNUP_LINK_HOURS = 24


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


def _create_person(actor: Actor | None, kind: str, name: str, email: str, password: str | None,
                   role: Role | None = None, password_hash: str | None = None) -> User:
    name = clean_text(name, NAME_MAX)
    email = normalize_email(email)
    password_hash = password_hash or crypto.hash_password(check_password(password))
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
    """An end user's account made at once (the demo, tests, imports); on the
    web the address is confirmed first (``request_sign_up``)."""
    return _signed_up(name, email, password, None, ip)


def request_sign_up(name: str, email: str, password: str) -> None:
    """Someone asks for an account. The answer never says whether the address
    has one: either way a mail goes to the address, a link to finish signing
    up (valid SIGNUP_LINK_HOURS) or, when it has an account, a note to its
    owner. Nothing is stored until the link is followed: the link carries
    the name, address and password hash, encrypted."""
    name = clean_text(name, NAME_MAX)
    email = normalize_email(email)
    check_password(password)
    base = current_app.config["BASE_URL"].rstrip("/")
    password_hash = crypto.hash_password(password)  # either way: the time tells nothing
    owner = find_by_email(email)
    if owner is not None:
        with force_locale(owner.language or "en"):
            mail.queue(owner.email, _("Someone tried to sign up with your email address"),
                       _("Hello %(name)s,\n\nSomeone tried to create an account at %(url)s with "
                         "this address, which already has one: yours. If it was you, sign in at "
                         "%(login)s. If not, you need not do anything; your account is unchanged.\n",
                         name=owner.name, url=base, login=f"{base}/login"), subject_id=owner.id)
        return
    token = crypto.seal_link(SIGNUP_LINK, {"name": name, "email": email, "hash": password_hash})
    mail.queue(email, _("Finish creating your account"),
               _("Hello %(name)s,\n\nTo finish creating your account at %(url)s, open this link "
                 "within %(hours)d hours and enter the password you chose:\n\n%(link)s\n\nIf "
                 "you did not ask for an account, ignore this message.\n",
                 name=name, url=base, hours=SIGNUP_LINK_HOURS,
                 link=f"{base}/signup/confirm/{token}"))


def sign_up_link(token: str) -> dict:
    """The waiting sign-up a link names (name and address), or NotFound /
    InvalidInput (expired)."""
    opened = crypto.open_link(SIGNUP_LINK, token)
    if opened is None:
        raise NotFound(_l("This link is not valid. Sign up again to get a new one."))
    payload, age = opened
    if age > SIGNUP_LINK_HOURS * 3600:
        raise InvalidInput(_l("This link has expired. Sign up again to get a new one."))
    return payload


def complete_sign_up(token: str, password: str, ip: str = "") -> User:
    """Follow the link and enter the password chosen at sign-up (so a link
    made with someone else's address and the maker's password cannot give
    the maker an account in that person's name): the account is made."""
    payload = sign_up_link(token)
    if not crypto.verify_password(payload["hash"], password or ""):
        raise InvalidInput(_l("That is not the password you chose when you signed up."))
    return _signed_up(payload["name"], payload["email"], None, payload["hash"], ip)


def _signed_up(name: str, email: str, password: str | None, password_hash: str | None,
               ip: str) -> User:
    """Make the end user's account (they are the actor) and welcome them."""
    with audit.transaction():
        user = _create_person(None, END_USER, name, email, password, password_hash=password_hash)
        audit.record(Actor(user.id, ip), "signup", "User", user.id, subject_id=user.id)
        notices.accept_at_signup(Actor(user.id, ip), user)
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
