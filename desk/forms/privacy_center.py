"""Privacy center forms: logging and handling data subject requests."""
from wtforms import BooleanField
from wtforms import DateField
from wtforms import DateTimeLocalField
from wtforms import IntegerField
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Email
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from desk.forms import Form
from desk.forms.fields import options
from desk.i18n import lazy_gettext as _l
from desk.models.compliance import DONE
from desk.models.compliance import REFUSED
from desk.services.subject_requests import MAX_EXTENSION_DAYS
from desk.services.subject_requests import TEXT_MAX

KIND_LABELS = {"access": _l("Access (Art. 15)"), "rectification": _l("Rectification (Art. 16)"),
               "erasure": _l("Erasure (Art. 17)"), "restriction": _l("Restriction (Art. 18)"),
               "portability": _l("Portability (Art. 20)"), "objection": _l("Objection (Art. 21)")}
CHANNEL_LABELS = {"my_info": _l("Their own account (My Info)"), "email": _l("Email"),
                  "phone": _l("Phone"), "letter": _l("Letter"), "in_person": _l("In person"),
                  "other": _l("Other")}
OUTCOME_LABELS = {DONE: _l("Done"), REFUSED: _l("Refused")}


class LogRequestForm(Form):
    email = StringField(_l("The person's email address"), validators=[
        DataRequired(_l("Enter the person's email address.")), Email(_l("Enter a valid email address.")),
        Length(max=254)])
    kind = SelectField(_l("Kind"), choices=options(list(KIND_LABELS.items())),
                       validators=[DataRequired(_l("Choose the kind of request."))])
    channel = SelectField(_l("Received by"), choices=options(
        [(k, v) for k, v in CHANNEL_LABELS.items() if k != "my_info"]),
        validators=[DataRequired(_l("Choose how the request arrived."))])
    received_on = DateField(_l("Received on"), validators=[DataRequired(_l("Enter the date it arrived."))])
    identity_checked = BooleanField(_l("Identity checked"))
    identity_note = StringField(_l("How the identity was checked"), validators=[Length(max=TEXT_MAX)])
    notes = TextAreaField(_l("Notes"), validators=[Length(max=TEXT_MAX)])


class ExtendForm(Form):
    days = IntegerField(_l("Extend by (days)"), validators=[
        DataRequired(_l("Enter a number of days.")),
        NumberRange(1, MAX_EXTENSION_DAYS, _l("Extend by 1 to %(max)d days.", max=MAX_EXTENSION_DAYS))])
    reason = TextAreaField(_l("Reason (the person is told it)"), validators=[
        DataRequired(_l("Write the reason for the extension (the person is told it).")),
        Length(max=TEXT_MAX)])


class LinkForm(Form):
    target = SelectField(_l("Fulfilled by"), validators=[DataRequired(_l("Choose one of this person's actions."))])


class CloseForm(Form):
    outcome = SelectField(_l("Outcome"), choices=options(list(OUTCOME_LABELS.items())),
                          validators=[DataRequired(_l("Choose done or refused."))])
    notes = TextAreaField(_l("What was done, or why it was refused"), validators=[
        DataRequired(_l("Say what was done, or why the request was refused.")), Length(max=TEXT_MAX)])


class BreachForm(Form):
    discovered_at = DateTimeLocalField(_l("Discovered at (UTC)"), format="%Y-%m-%dT%H:%M", validators=[
        DataRequired(_l("Enter when the breach was discovered."))])
    description = TextAreaField(_l("What happened"), validators=[
        DataRequired(_l("Describe what happened.")), Length(max=10_000)])
    categories = TextAreaField(_l("Categories of people and of data affected"), validators=[Length(max=10_000)])
    people_affected = IntegerField(_l("People affected (approximately)"), validators=[
        Optional(), NumberRange(0, 10**9, _l("Enter an approximate number (0 or more)."))])
    records_affected = IntegerField(_l("Records affected (approximately)"), validators=[
        Optional(), NumberRange(0, 10**9, _l("Enter an approximate number (0 or more)."))])
    consequences = TextAreaField(_l("Likely consequences"), validators=[Length(max=10_000)])
    measures = TextAreaField(_l("Measures taken or proposed"), validators=[Length(max=10_000)])
    authority_notified_at = DateTimeLocalField(_l("Supervisory authority told at (UTC)"),
                                               format="%Y-%m-%dT%H:%M", validators=[Optional()])
    people_notified_at = DateTimeLocalField(_l("People told at (UTC)"), format="%Y-%m-%dT%H:%M",
                                            validators=[Optional()])


class ProcessingDetailsForm(Form):
    controller_name = StringField(_l("Controller (the organization running this help center)"),
                                  validators=[Length(max=5000)])
    controller_contact = StringField(_l("Controller's contact (address, email)"), validators=[Length(max=5000)])
    dpo_name = StringField(_l("Data protection officer, if any"), validators=[Length(max=5000)])
    dpo_contact = StringField(_l("Data protection officer's contact"), validators=[Length(max=5000)])
    purposes = TextAreaField(_l("Purposes, one a line (empty: desk's own list)"), validators=[Length(max=5000)])
    processors = TextAreaField(_l("Other processors, one a line (hosting provider, ...)"),
                               validators=[Length(max=5000)])


class NoticeForm(Form):
    text = TextAreaField(_l("Privacy notice"), validators=[
        DataRequired(_l("Write the notice.")), Length(max=50_000)])
