"""Ticket, reply and ticket-property forms."""
from wtforms import BooleanField
from wtforms import HiddenField
from wtforms import MultipleFileField
from wtforms import RadioField
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional

from desk import crypto
from desk.forms import Form
from desk.forms.fields import NoControlCharacters
from desk.forms.fields import options
from desk.i18n import lazy_gettext as _l
from desk.models.tickets import PRIORITIES
from desk.models.tickets import STATUSES
from desk.services.tickets import BODY_MAX
from desk.services.tickets import SUBJECT_MAX
from desk.web.labels import PRIORITY_LABELS
from desk.web.labels import STATUS_LABELS


def _body(label, message):
    return TextAreaField(label, validators=[DataRequired(message), Length(max=BODY_MAX),
                                            NoControlCharacters()])


def _form_key() -> str:
    return crypto.new_token(18)


class SentOnceForm(Form):
    """A form whose record is made once however often it is sent: a fresh
    one-time key per rendered form (desk.services.submitted_forms)."""
    form_key = HiddenField(default=_form_key)


class NewTicketForm(SentOnceForm):
    subject = StringField(_l("Subject"), validators=[
        DataRequired(_l("Enter a subject.")), Length(max=SUBJECT_MAX), NoControlCharacters()])
    description = _body(_l("Description"), _l("Describe what you need."))
    department = SelectField(_l("Department"), coerce=int, validators=[Optional()], validate_choice=True)
    attachments = MultipleFileField(_l("Attachments"))


class ReplyForm(SentOnceForm):
    body = _body(_l("Your reply"), _l("Write a reply."))
    attachments = MultipleFileField(_l("Attachments"))


class AgentReplyForm(ReplyForm):
    visibility = RadioField(_l("Visibility"), default="public", choices=options([
        ("public", _l("Public reply (the requester sees it)")),
        ("private", _l("Private note (agents only)"))]))


class StatusForm(Form):
    status = SelectField(_l("Status"), choices=options([("open", _l("Reopen")), ("closed", _l("Close"))]))


class TicketPropertiesForm(Form):
    status = SelectField(_l("Status"), choices=options((s, STATUS_LABELS[s]) for s in STATUSES))
    priority = SelectField(_l("Priority"), choices=options((p, PRIORITY_LABELS[p]) for p in PRIORITIES))
    department = SelectField(_l("Department"), coerce=int)
    assignee = SelectField(_l("Assignee"), coerce=int)


class DepartmentForm(Form):
    name = StringField(_l("Name"), validators=[
        DataRequired(_l("Enter a name.")), Length(max=200), NoControlCharacters()])
    is_private = BooleanField(_l("Private: only its members see its tickets"))


class MemberForm(Form):
    agent = SelectField(_l("Agent"), coerce=int)
