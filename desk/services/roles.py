"""Roles: module x action permissions, a ticket scope and field-level
permissions. Built-in roles are fixed (copy them to change them); every
change is audited and takes effect on the agent's next request."""
from __future__ import annotations

import json

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import lazy_gettext as _l
from desk.models import AgentDepartment
from desk.models import Department
from desk.models import Role
from desk.models import User
from desk.models.people import SCOPE_ALL
from desk.models.people import SCOPE_ASSIGNED
from desk.models.people import SCOPE_DEPARTMENTS
from desk.services import people
from desk.services.people import clean_text

SCOPES = (SCOPE_ALL, SCOPE_DEPARTMENTS, SCOPE_ASSIGNED)


def all_roles() -> list[Role]:
    return list(Role.select().order_by(Role.builtin.desc(), Role.name))


def get(role_id: int) -> Role:
    role = Role.get_or_none(Role.id == role_id)
    if role is None:
        raise NotFound(_l("No such role."))
    return role


def _clean(name: str, permissions, scope: str, field_permissions: dict) -> dict:
    valid = {f"{m}:{a}" for m in policy.MODULES for a in policy.ACTIONS}
    permissions = sorted(set(permissions or ()))
    if any(p not in valid for p in permissions):
        raise InvalidInput(_l("Unknown permission."))
    if scope not in SCOPES:
        raise InvalidInput(_l("Choose which tickets the role sees."))
    levels = {}
    known = policy.all_fields()
    for key, level in (field_permissions or {}).items():
        module, _, field = key.partition(".")
        if field not in known.get(module, ()) or level not in policy.ACCESS_LEVELS:
            raise InvalidInput(_l("Unknown field permission."))
        if level != policy.EDIT:
            levels[key] = level
    return {"name": clean_text(name, 200), "permissions": json.dumps(permissions),
            "ticket_scope": scope, "field_permissions": json.dumps(levels, sort_keys=True)}


def _require_admin(admin: User) -> None:
    policy.require(admin, "settings:manage")


def create(admin: User, name: str, permissions, scope: str, field_permissions: dict,
           ip: str = "") -> Role:
    _require_admin(admin)
    values = _clean(name, permissions, scope, field_permissions)
    if Role.select().where(Role.name == values["name"]).exists():
        raise Conflict(_l("A role with this name already exists."))
    return audit.create(Actor.of(admin, ip), Role, **values)


def copy(admin: User, role_id: int, ip: str = "") -> Role:
    """A custom role starting as a copy of another (built-in ones included)."""
    _require_admin(admin)
    source = get(role_id)
    name, n = f"{source.name} (copy)", 2
    while Role.select().where(Role.name == name).exists():
        name, n = f"{source.name} (copy {n})", n + 1
    permissions = json.loads(source.permissions)
    if source.is_admin:
        permissions = [f"{m}:{a}" for m in policy.MODULES for a in policy.ACTIONS]
    return audit.create(Actor.of(admin, ip), Role, name=name, permissions=json.dumps(sorted(permissions)),
                        ticket_scope=source.ticket_scope, field_permissions=source.field_permissions)


def update(admin: User, role_id: int, name: str, permissions, scope: str,
           field_permissions: dict, ip: str = "") -> dict:
    """Change a custom role; returns what changed."""
    _require_admin(admin)
    role = get(role_id)
    if role.builtin:
        raise PermissionDenied(_l("Built-in roles cannot be changed; copy one instead."))
    values = _clean(name, permissions, scope, field_permissions)
    if Role.select().where(Role.name == values["name"], Role.id != role.id).exists():
        raise Conflict(_l("A role with this name already exists."))
    return audit.update(Actor.of(admin, ip), role, **values)


def delete(admin: User, role_id: int, ip: str = "") -> None:
    _require_admin(admin)
    role = get(role_id)
    if role.builtin:
        raise PermissionDenied(_l("Built-in roles cannot be deleted."))
    if User.select().where(User.role == role.id, User.deleted_at.is_null()).exists():
        raise Conflict(_l("Agents still have this role; give them another one first."))
    audit.delete(Actor.of(admin, ip), role)


def agents_with(role: Role) -> list[User]:
    return list(User.select().where(User.role == role.id, User.deleted_at.is_null()).order_by(User.name))


def set_agent_role(admin: User, agent_id: int, role_id: int, ip: str = "") -> dict:
    """Give an agent another role; never leaves the help center without an admin."""
    _require_admin(admin)
    agent = User.get_or_none(User.id == agent_id, User.kind == "agent", User.deleted_at.is_null())
    if agent is None:
        raise NotFound(_l("No such agent."))
    role = get(role_id)
    if not role.is_admin and people.is_last_admin(agent):
        raise Conflict(_l("The last administrator must stay an administrator."))
    return audit.update(Actor.of(admin, ip), agent, role=role)


def create_agent(admin: User, name: str, email: str, password: str, role_id: int,
                 department_ids=(), ip: str = "") -> User:
    """A new staff account with a role and departments."""
    policy.require(admin, "agents:create")
    role = get(role_id)
    actor = Actor.of(admin, ip)
    with audit.transaction():
        agent = people.create_agent(actor, name, email, password, role)
        for dept in Department.select().where(Department.id.in_(list(department_ids) or [0])):
            audit.create(actor, AgentDepartment, agent=agent, department=dept)
    return agent


def effective(admin: User, agent_id: int) -> dict:
    """What one agent can see and do, as the policy decides it."""
    _require_admin(admin)
    agent = User.get_or_none(User.id == agent_id, User.kind == "agent")
    if agent is None:
        raise NotFound(_l("No such agent."))
    return {
        "agent": agent,
        "role": agent.role,
        "scope": "everything" if agent.role.is_admin else agent.role.ticket_scope,
        "departments": list(Department.select().join(AgentDepartment)
                            .where(AgentDepartment.agent == agent.id).order_by(Department.name)),
        "matrix": {m: {a: policy.can(agent, f"{m}:{a}") for a in policy.ACTIONS} for m in policy.MODULES},
        "fields": {m: policy.field_levels(agent, m) for m in policy.all_fields()},
    }
