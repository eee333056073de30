"""My Info, email change, password and data export forms."""
from wtforms import EmailField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Email
from wtforms.validators import Length

from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.forms.fields import options
from desk.i18n import LANGUAGE_NAMES
from desk.i18n import lazy_gettext as _l
from desk.services.people import NAME_MAX
from desk.services.people import PASSWORD_MAX
from desk.services.people import PASSWORD_MIN
from desk.services.profile import timezones


def _text(label, max_length, required=False):
    validators = [Length(max=max_length), NoControlCharacters()]
    if required:
        validators.insert(0, DataRequired(_l("This field is required.")))
    return StringField(label, validators=validators)


class MyInfoForm(Form):
    """End user's own details. The email address is shown, not edited."""

    name = _text(_l("Name"), NAME_MAX, required=True)
    phone = _text(_l("Phone"), 50)
    mobile = _text(_l("Mobile"), 50)
    timezone = SelectField(_l("Time zone"), validate_choice=False)
    language = SelectField(_l("Language"), validate_choice=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = options((tz, tz) for tz in timezones())
        self.language.choices = options([("", _l("Same as my browser"))] + list(LANGUAGE_NAMES.items()))


class AgentInfoForm(MyInfoForm):
    """Agent's own details (Settings > Personal Settings > My Information)."""

    title = _text(_l("Job title"), 200)
    signature = TextAreaField(_l("Signature"), validators=[Length(max=2000), NoControlCharacters()])


class EmailChangeForm(Form):
    new_email = EmailField(_l("New email address"), validators=[
        DataRequired(_l("Enter your new email address.")), Length(max=254), NoControlCharacters(),
        Email(_l("Enter a valid email address."), check_deliverability=False)])


class PasswordForm(Form):
    current_password = PasswordField(_l("Current password"), validators=[
        DataRequired(_l("Enter your current password.")), Length(max=PASSWORD_MAX)])
    new_password = PasswordField(_l("New password"), validators=[
        DataRequired(_l("Choose a new password.")), Length(min=PASSWORD_MIN, max=PASSWORD_MAX),
        NoControlCharacters()])


class RejectForm(Form):
    reason = TextAreaField(_l("Reason"), validators=[
        DataRequired(_l("Say why, so the person knows.")), Length(max=1000), NoControlCharacters()])
