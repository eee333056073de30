"""Role and agent forms. The permission matrix and field levels are read as
plain inputs (permissions, field:<module>.<name>) and checked by the service."""
from wtforms import SelectField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length

from desk.forms import Form
from desk.forms.auth import SignupForm
from desk.forms.fields import NoControlCharacters
from desk.forms.fields import options
from desk.i18n import lazy_gettext as _l
from desk.web.labels import SCOPE_LABELS

SCOPE_CHOICES = list(SCOPE_LABELS.items())


class RoleForm(Form):
    name = StringField(_l("Role name"), validators=[
        DataRequired(_l("Enter a name.")), Length(max=200), NoControlCharacters()])
    ticket_scope = SelectField(_l("Tickets they see"), choices=options(SCOPE_CHOICES))


class AgentForm(SignupForm):
    role = SelectField(_l("Role"), coerce=int)
    departments = SelectMultipleField(_l("Departments"), coerce=int)


class AgentRoleForm(Form):
    role = SelectField(_l("Role"), coerce=int)
