"""WTForms classes, one module per area."""
from __future__ import annotations

import functools

from babel import support
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


@functools.lru_cache(maxsize=8)
def _wtforms_messages(locale: str) -> support.Translations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class Form(FlaskForm):
    """Every form of desk: Flask-WTF's, with WTForms' own messages ("This
    field is required.") in the reader's language read from their catalogue
    once per language, not once per request as Flask-WTF does."""

    class Meta:
        def get_translations(self, form):
            return _wtforms_messages(str(get_locale() or "en"))
