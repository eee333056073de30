"""The initial schema: people, tickets, audit chain, subject keys, settings,
leases and the mail queue; built-in roles and the audit chain head."""
import json

from peewee import BigIntegerField
from peewee import BooleanField
from peewee import CharField
from peewee import CompositeKey
from peewee import DateTimeField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from desk.models.base import utcnow


def _tables(database):
    class Base(Model):
        class Meta:
            database = None
            legacy_table_names = False

    class Department(Base):
        name = CharField(max_length=200, unique=True)
        is_private = BooleanField(default=False)
        created_at = DateTimeField(default=utcnow)

    class Role(Base):
        name = CharField(max_length=200, unique=True)
        builtin = BooleanField(default=False)
        is_admin = BooleanField(default=False)
        permissions = TextField(default="[]")
        field_permissions = TextField(default="{}")
        ticket_scope = CharField(max_length=20, default="departments")
        created_at = DateTimeField(default=utcnow)

    class User(Base):
        kind = CharField(max_length=20, index=True)
        email = CharField(max_length=254, unique=True)
        name = CharField(max_length=200)
        password_hash = CharField(max_length=255, null=True)
        role = ForeignKeyField(Role, backref="+", null=True, on_delete="RESTRICT")
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

    class AgentDepartment(Base):
        agent = ForeignKeyField(User, backref="+", on_delete="CASCADE")
        department = ForeignKeyField(Department, backref="+", on_delete="CASCADE")

        class Meta:
            primary_key = CompositeKey("agent", "department")

    class Ticket(Base):
        subject = CharField(max_length=255)
        description = TextField(default="")
        status = CharField(max_length=20, default="open")
        priority = CharField(max_length=20, default="normal")
        department = ForeignKeyField(Department, backref="+", null=True, on_delete="SET NULL")
        requester = ForeignKeyField(User, backref="+", on_delete="RESTRICT")
        assignee = ForeignKeyField(User, backref="+", null=True, on_delete="SET NULL")
        created_at = DateTimeField(default=utcnow)
        updated_at = DateTimeField(default=utcnow)
        deleted_at = DateTimeField(null=True)
        deleted_by = IntegerField(null=True)

        class Meta:
            indexes = (
                (("requester", "deleted_at", "updated_at"), False),
                (("assignee", "status", "updated_at"), False),
                (("department", "status", "updated_at"), False),
                (("status", "updated_at"), False),
            )

    class Comment(Base):
        ticket = ForeignKeyField(Ticket, backref="+", on_delete="CASCADE")
        author = ForeignKeyField(User, backref="+", on_delete="RESTRICT")
        body = TextField()
        is_public = BooleanField(default=True)
        created_at = DateTimeField(default=utcnow)
        deleted_at = DateTimeField(null=True)
        deleted_by = IntegerField(null=True)

        class Meta:
            indexes = ((("ticket", "created_at"), False),)

    class Attachment(Base):
        ticket = ForeignKeyField(Ticket, backref="+", on_delete="CASCADE")
        comment = ForeignKeyField(Comment, backref="+", null=True, on_delete="CASCADE")
        uploader = ForeignKeyField(User, backref="+", on_delete="RESTRICT")
        filename = CharField(max_length=255)
        stored_name = CharField(max_length=64, unique=True)
        content_type = CharField(max_length=100, default="application/octet-stream")
        size = BigIntegerField(default=0)
        sha256 = CharField(max_length=64)
        created_at = DateTimeField(default=utcnow)
        deleted_at = DateTimeField(null=True)
        deleted_by = IntegerField(null=True)

    class AuditEntry(Base):
        seq = BigIntegerField(unique=True)
        created_at = DateTimeField(default=utcnow)
        actor_id = IntegerField(null=True, index=True)
        action = CharField(max_length=40)
        record_type = CharField(max_length=40)
        record_id = CharField(max_length=64, null=True)
        subject_id = IntegerField(null=True, index=True)
        changes = TextField(default="{}")
        ip = CharField(max_length=255, default="")
        prev_hash = CharField(max_length=64)
        hash = CharField(max_length=64)

        class Meta:
            indexes = ((("record_type", "record_id", "action", "created_at"), False),)

    class AuditHead(Base):
        seq = BigIntegerField(default=0)
        hash = CharField(max_length=64)

    class Setting(Base):
        key = CharField(max_length=100, primary_key=True)
        value = TextField()
        updated_at = DateTimeField(default=utcnow)

    class SubjectKey(Base):
        subject_id = IntegerField(unique=True)
        key_id = CharField(max_length=64, null=True)
        wrapped_key = TextField(null=True)
        created_at = DateTimeField(default=utcnow)
        destroyed_at = DateTimeField(null=True)

    class Lease(Base):
        name = CharField(max_length=100, primary_key=True)
        holder = CharField(max_length=200)
        expires_at = DateTimeField()

    class MailMessage(Base):
        recipient = CharField(max_length=254)
        subject = CharField(max_length=255)
        body = TextField()
        subject_id = IntegerField(null=True, index=True)
        status = CharField(max_length=20, default="pending", index=True)
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(default=utcnow, index=True)
        last_error = TextField(default="")
        created_at = DateTimeField(default=utcnow)
        sent_at = DateTimeField(null=True)

    tables = [Department, Role, User, AgentDepartment, Ticket, Comment, Attachment,
              AuditEntry, AuditHead, Setting, SubjectKey, Lease, MailMessage]
    for table in tables:
        table._meta.set_database(database)
    return tables


_AGENT_PERMISSIONS = [
    "tickets:view", "tickets:create", "tickets:edit", "tickets:export",
    "comments:view", "comments:create", "comments:edit",
    "contacts:view", "contacts:create", "contacts:edit",
    "agents:view", "departments:view",
]
_LIGHT_AGENT_PERMISSIONS = ["tickets:view", "comments:view", "comments:create", "contacts:view"]

BUILTIN_ROLES = [
    {"name": "Administrator", "is_admin": True, "permissions": [], "ticket_scope": "all"},
    {"name": "Agent", "is_admin": False, "permissions": _AGENT_PERMISSIONS,
     "ticket_scope": "departments"},
    {"name": "Light Agent", "is_admin": False, "permissions": _LIGHT_AGENT_PERMISSIONS,
     "ticket_scope": "departments"},
]


def up(database):
    tables = _tables(database)
    database.create_tables(tables)
    role, head = tables[1], tables[8]
    for spec in BUILTIN_ROLES:
        role.create(name=spec["name"], builtin=True, is_admin=spec["is_admin"],
                    permissions=json.dumps(spec["permissions"]),
                    ticket_scope=spec["ticket_scope"])
    head.create(id=1, seq=0, hash="0" * 64)


def down(database):
    database.drop_tables(list(reversed(_tables(database))))
