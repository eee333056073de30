"""The form that makes a personal access token."""
from wtforms import BooleanField
from wtforms import IntegerField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange

from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.i18n import lazy_gettext as _l
from desk.services.tokens import DEFAULT_DAYS
from desk.services.tokens import MAX_DAYS
from desk.services.tokens import NAME_MAX


class TokenForm(Form):
    name = StringField(_l("Name"), validators=[
        DataRequired(_l("Give the token a name, such as the tool that will use it.")),
        Length(max=NAME_MAX), NoControlCharacters()])
    days = IntegerField(_l("Expires after (days)"), default=DEFAULT_DAYS, validators=[
        DataRequired(_l("Enter a number of days.")),
        NumberRange(1, MAX_DAYS, _l("A token lasts 1 to %(n)d days.", n=MAX_DAYS))])
    read_only = BooleanField(_l("Read only: this token cannot change anything"))
