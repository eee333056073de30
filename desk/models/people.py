"""Agents, end users, roles and departments."""
from peewee import BooleanField
from peewee import CharField
from peewee import CompositeKey
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import TextField

from desk.models.base import BaseModel
from desk.models.base import DateTimeField
from desk.models.base import utcnow

AGENT = "agent"
END_USER = "end_user"

SCOPE_ALL = "all"
SCOPE_DEPARTMENTS = "departments"
SCOPE_ASSIGNED = "assigned"


class Department(BaseModel):
    name = CharField(max_length=200, unique=True)
    is_private = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)


class Role(BaseModel):
    """Module x action permissions, field permissions and a ticket scope.

    ``permissions`` is a JSON list of "module:action" strings;
    ``field_permissions`` a JSON object {"module.field": "hidden"|"read"|"edit"}.
    """

    name = CharField(max_length=200, unique=True)
    builtin = BooleanField(default=False)
    is_admin = BooleanField(default=False)
    permissions = TextField(default="[]")
    field_permissions = TextField(default="{}")
    ticket_scope = CharField(max_length=20, default=SCOPE_DEPARTMENTS)
    created_at = DateTimeField(default=utcnow)


class User(BaseModel):
    """A person who signs in: an agent (staff) or an end user (customer)."""

    personal_fields = ("name", "email", "phone", "mobile", "title", "signature")
    secret_fields = ("password_hash", "session_token")

    kind = CharField(max_length=20, index=True)
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=200)
    password_hash = CharField(max_length=255, null=True)
    role = ForeignKeyField(Role, null=True, backref="users", on_delete="RESTRICT")
    phone = CharField(max_length=50, default="")
    mobile = CharField(max_length=50, default="")
    title = CharField(max_length=200, default="")
    timezone = CharField(max_length=64, default="UTC")
    language = CharField(max_length=16, default="")
    signature = TextField(default="")
    is_active = BooleanField(default=True)
    session_token = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True, index=True)
    deleted_by = IntegerField(null=True)
    anonymized_at = DateTimeField(null=True)

    def audit_subject_id(self) -> int | None:
        return self.id

    # flask-login protocol. The id is the signed-in browser's identity
    # ("<user id>:<secret>", see desk.services.sessions), set when a browser
    # signs in or its cookie is read; both cookies carry it.
    session_identity = ""
    browser_session = None  # its BrowserSession row

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return self.session_identity

    @property
    def is_agent(self) -> bool:
        return self.kind == AGENT

    @property
    def is_end_user(self) -> bool:
        return self.kind == END_USER


class AgentDepartment(BaseModel):
    agent = ForeignKeyField(User, backref="department_links", on_delete="CASCADE")
    department = ForeignKeyField(Department, backref="agent_links", on_delete="CASCADE")

    class Meta:
        primary_key = CompositeKey("agent", "department")
