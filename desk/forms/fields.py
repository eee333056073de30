"""Validators shared by every form."""
import unicodedata

from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from desk.i18n import lazy_gettext as _l


class NoControlCharacters:
    """Refuse NUL and other control characters (they break storage and display)."""

    def __call__(self, form, field):
        if any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in field.data or ""):
            raise ValidationError(_l("Text must not contain control characters."))


def options(pairs) -> list[SelectChoice]:
    """Choices for a SelectField or RadioField from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]
