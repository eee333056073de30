"""Sign-up, sign-in and first-administrator forms."""
from wtforms import BooleanField
from wtforms import EmailField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Email
from wtforms.validators import Length

from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.i18n import lazy_gettext as _l
from desk.services.people import NAME_MAX
from desk.services.people import PASSWORD_MAX
from desk.services.people import PASSWORD_MIN


def _email_field():
    return EmailField(_l("Email"), validators=[
        DataRequired(_l("Enter your email address.")), Length(max=254), NoControlCharacters(),
        Email(_l("Enter a valid email address."), check_deliverability=False)])


class SignupForm(Form):
    name = StringField(_l("Name"), validators=[
        DataRequired(_l("Enter your name.")), Length(max=NAME_MAX), NoControlCharacters()])
    email = _email_field()
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Choose a password.")), Length(min=PASSWORD_MIN, max=PASSWORD_MAX),
        NoControlCharacters()])


class SignupConfirmForm(Form):
    """The link from the sign-up mail: the password chosen on the sign-up form."""
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Enter your password.")), Length(max=PASSWORD_MAX)])


class SetupForm(SignupForm):
    """The first administrator: same fields as sign-up."""


class LoginForm(Form):
    email = _email_field()
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Enter your password.")), Length(max=PASSWORD_MAX)])
    remember = BooleanField(_l("Remember me"))


class EmptyForm(Form):
    """A CSRF-only form for button actions."""
