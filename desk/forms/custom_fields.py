"""The custom field definition form (the values' rules live in the service)."""
from wtforms import BooleanField
from wtforms import IntegerField
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.forms.fields import options
from desk.i18n import lazy_gettext as _l
from desk.web.labels import FIELD_TYPE_LABELS
from desk.web.labels import MODULE_LABELS


class FieldForm(Form):
    """Define or change a field. Module, key and type are fixed once created."""

    module = SelectField(_l("For"), choices=options((m, MODULE_LABELS[m]) for m in ("tickets", "contacts")))
    key = StringField(_l("Key (forms post it as cf_<key>)"), validators=[
        DataRequired(_l("Enter a key.")), Length(max=40), NoControlCharacters()])
    type = SelectField(_l("Type"), choices=options(FIELD_TYPE_LABELS.items()))
    label = StringField(_l("Label (English)"), validators=[
        DataRequired(_l("Enter a label.")), Length(max=200), NoControlCharacters()])
    label_zh = StringField(_l("Label (Chinese)"), validators=[Length(max=200), NoControlCharacters()])
    choices = TextAreaField(_l("Choices (one per line, for a choice list)"), validators=[
        Length(max=20_000), NoControlCharacters()])
    required = BooleanField(_l("Required"))
    public = BooleanField(_l("Shown to end users (new-ticket form, My Info)"))
    encrypted = BooleanField(_l("Encrypted (masked; only roles that may reveal see the value)"))
    position = IntegerField(_l("Order"), default=0, validators=[
        Optional(), NumberRange(min=-10_000, max=10_000, message=_l("The order is a whole number."))])


class EditFieldForm(FieldForm):
    """The same without what cannot change."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("module", "key", "type"):
            delattr(self, name)
