"""Recycle bin, erasure and privacy settings forms."""
from wtforms import IntegerField
from wtforms import RadioField
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange

from desk.forms import Form
from desk.forms.fields import options
from desk.i18n import lazy_gettext as _l
from desk.models.privacy import ANONYMIZE
from desk.models.privacy import ERASE_WITH_TICKETS


class EraseForm(Form):
    mode = RadioField(_l("How"), default=ANONYMIZE, choices=options([
        (ANONYMIZE, _l("Anonymize and keep tickets (pseudonymized)")),
        (ERASE_WITH_TICKETS, _l("Erase with their tickets (through the recycle bin)"))]))
    confirmation = StringField(_l("Type the placeholder to confirm"), validators=[
        DataRequired(_l("Type the placeholder to confirm.")), Length(max=100)])


class RetentionForm(Form):
    days = IntegerField(_l("Days deleted records stay in the recycle bin"), validators=[
        DataRequired(_l("Enter a number of days.")),
        NumberRange(min=1, max=3650, message=_l("Choose between 1 and 3650 days."))])


class RegionMoveForm(Form):
    region = SelectField(_l("Move to region"), validators=[DataRequired(_l("Choose a region."))])
    confirmation = StringField(_l("Type the region's name to confirm"), validators=[
        DataRequired(_l("Type the region's name to confirm.")), Length(max=100)])
