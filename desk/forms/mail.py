"""The SMTP settings page: the settings, and the address of a test mail."""
from wtforms import BooleanField
from wtforms import EmailField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Email
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.i18n import lazy_gettext as _l


class SmtpForm(Form):
    host = StringField(_l("SMTP server"), validators=[Optional(), Length(max=253), NoControlCharacters()],
                       description=_l("Leave empty to write mail to the outbox folder instead."))
    port = IntegerField(_l("Port"), default=587, validators=[
        InputRequired(_l("Enter a port.")),
        NumberRange(min=1, max=65535, message=_l("Choose a port between 1 and 65535."))])
    starttls = BooleanField(_l("Use STARTTLS"))
    user = StringField(_l("User name"), validators=[Optional(), Length(max=254), NoControlCharacters()])
    password = PasswordField(_l("Password"), validators=[Optional(), Length(max=500), NoControlCharacters()],
                             description=_l("Leave empty to keep the saved password."))
    clear_password = BooleanField(_l("Remove the saved password"))
    mail_from = StringField(_l("Sender address"), validators=[
        DataRequired(_l("Enter the sender address, such as help@example.com.")), Length(max=254),
        NoControlCharacters()])


class TestMailForm(Form):
    to = EmailField(_l("Send a test mail to"), validators=[
        DataRequired(_l("Enter your email address.")), Length(max=254), NoControlCharacters(),
        Email(_l("Enter a valid email address."), check_deliverability=False)])
