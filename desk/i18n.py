"""Languages: the user's own setting, then this browser's choice, then
Accept-Language. English and Simplified Chinese."""
from pathlib import Path

from flask import Flask
from flask import g
from flask import has_request_context
from flask import request
from flask import session
from flask_babel import get_locale
from flask_login import current_user

from desk.config import LANGUAGES
from desk.extensions import babel

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
LANGUAGE_NAMES = {"en": "English", "zh_Hans": "简体中文"}


def select_locale() -> str:
    if not has_request_context():
        return "en"
    if request.path.startswith("/api/"):
        # The API never looks at session cookies: its token's owner, then the header.
        language = getattr(g.get("api_user"), "language", "")
        return language if language in LANGUAGES else _from_header()
    user_language = getattr(current_user, "language", "") if current_user else ""
    if user_language in LANGUAGES:
        return user_language
    if session.get("language") in LANGUAGES:
        return session["language"]
    return _from_header()


def _from_header() -> str:
    best = request.accept_languages.best_match(["en", "zh"], default="en")
    return "zh_Hans" if best == "zh" else "en"


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(LANGUAGE_NAMES=LANGUAGE_NAMES, get_locale=get_locale)
