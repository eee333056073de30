"""Languages: the user's own setting, then this browser's choice, then
Accept-Language. English and Simplified Chinese."""
from pathlib import Path

from flask import Flask
from flask import g
from flask import has_request_context
from flask import request
from flask import session
from flask.globals import _cv_app
from flask_babel import get_locale
from flask_babel import get_translations
from flask_babel.speaklater import LazyString
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


def _translations():
    """This request's translations, looked up once per request and language: a
    page asks for about a hundred strings, and flask-babel finds its context,
    domain and locale again through ``g`` for each of them. A forced locale
    (flask_babel.force_locale) is another locale object, so it is looked up
    anew, and so is the request's own after it."""
    ctx = _cv_app.get(None)
    state = ctx.g.__dict__.get("_flask_babel") if ctx is not None else None
    if state is None:
        return get_translations()
    locale = state.__dict__.get("babel_locale")
    known = state.__dict__.get("desk_translations")
    if locale is None or known is None or known[0] is not locale:
        translations = get_translations()  # chooses the locale when it is not chosen yet
        state.desk_translations = known = (state.__dict__.get("babel_locale"), translations)
    return known[1]


def gettext(string: str, **variables) -> str:
    """flask_babel.gettext, with the look-up above."""
    text = _translations().ugettext(string)
    return text % variables if variables else text


def lazy_gettext(string: str, **variables) -> LazyString:
    """flask_babel.lazy_gettext, with the look-up above (labels of forms and
    stored codes are translated where they are shown, dozens of times a page)."""
    return LazyString(gettext, string, **variables)


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)
    # The callables flask-babel installs, with the look-up above.
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
        newstyle=True)
    app.jinja_env.globals.update(LANGUAGE_NAMES=LANGUAGE_NAMES, get_locale=get_locale)
