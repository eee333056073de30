"""Who may do what: the one place that decides access. Deny by default.

Views, commands and templates (as the Jinja global ``can``) ask here.
"""
from __future__ import annotations

import functools
import json
from types import MappingProxyType

from desk.db import Prepared
from desk.errors import PermissionDenied

MODULES = ("tickets", "comments", "contacts", "agents", "departments",
           "recycle_bin", "audit", "exports", "settings", "privacy")
ACTIONS = ("view", "create", "edit", "delete", "restore", "export", "reveal", "manage")


def _active(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False)
                and user.is_active and user.deleted_at is None)


def is_active(user) -> bool:
    """Signed in, active and not in the recycle bin."""
    return _active(user)


def is_agent(user) -> bool:
    return _active(user) and user.kind == "agent"


def is_admin(user) -> bool:
    return is_agent(user) and user.role is not None and user.role.is_admin


def permissions_of(user) -> frozenset[str]:
    """Every "module:action" the user holds (agents only; end users hold none)."""
    if not is_agent(user) or user.role is None:
        return frozenset()
    return permissions_of_role(user.role)


def can(user, permission: str) -> bool:
    """True when ``user`` holds ``permission`` ("module:action")."""
    return permission in permissions_of(user)


def require(user, permission: str) -> None:
    if not can(user, permission):
        raise PermissionDenied(permission)


def require_agent(user) -> None:
    if not is_agent(user):
        raise PermissionDenied("agents only")


def landing(user) -> str:
    """The endpoint a user lands on after signing in."""
    return "agent.tickets" if is_agent(user) else "portal.my_tickets"


# -- tickets -----------------------------------------------------------------

def department_ids(user) -> set[int]:
    """Departments the agent belongs to (read once per request: the user
    object of a request lives as long as the request)."""
    from flask import has_request_context
    from flask import request

    from desk.models import AgentDepartment
    key = ("department_ids", user.id)
    cache = request.environ.setdefault("desk.policy", {}) if has_request_context() else {}
    if key not in cache:
        cache[key] = frozenset(link.department_id for link in AgentDepartment.select(
            AgentDepartment.department).where(AgentDepartment.agent == user.id))
    return set(cache[key])


def ticket_filter(user, selective: bool = False):
    """A peewee condition selecting the tickets ``user`` may see (deny by default).

    ``selective``: another condition of the query picks few rows (a text
    search): the rule's columns are then written ``+column`` so the database
    does not walk its indexes over every ticket the user may see (SQLite would
    otherwise scan a whole department and probe the search for each row)."""
    from peewee import SQL
    from peewee import NodeList

    from desk.models import Department
    from desk.models import Ticket
    from desk.models.people import SCOPE_ALL
    from desk.models.people import SCOPE_ASSIGNED

    def column(field):
        return NodeList((SQL("+"), field), glue="") if selective else field
    requester, department, assignee = (column(Ticket.requester), column(Ticket.department),
                                       column(Ticket.assignee))
    if not _active(user):
        return Ticket.id.is_null()  # nothing
    if user.kind == "end_user":
        return requester == user.id
    if not can(user, "tickets:view"):
        return Ticket.id.is_null()
    if is_admin(user):
        return Ticket.id.is_null(False)  # every ticket
    mine = department_ids(user)
    private = [d.id for d in Department.select(Department.id).where(Department.is_private == True)  # noqa: E712
               if d.id not in mine]
    assigned = assignee == user.id
    scope = user.role.ticket_scope
    if scope == SCOPE_ASSIGNED:
        return assigned
    if scope == SCOPE_ALL:
        visible = department.is_null() | department.not_in(private or [0])
    else:
        visible = department.is_null() | department.in_(mine or [0])
    return visible | assigned


def sees_ticket(user, ticket) -> bool:
    """``ticket_filter`` for one ticket already read (with its department
    joined): the same rule, case by case, in Python. Keep the two together;
    tests/test_policy checks they agree for every kind of user and ticket."""
    from desk.models.people import SCOPE_ALL
    from desk.models.people import SCOPE_ASSIGNED
    if not _active(user):
        return False
    if user.kind == "end_user":
        return ticket.requester_id == user.id
    if not can(user, "tickets:view"):
        return False
    if is_admin(user):
        return True
    assigned = ticket.assignee_id is not None and ticket.assignee_id == user.id
    scope = user.role.ticket_scope
    if scope == SCOPE_ASSIGNED:
        return assigned
    department = ticket.department_id
    if department is None or assigned:
        return True
    if scope == SCOPE_ALL:
        return not ticket.department.is_private or department in department_ids(user)
    return department in department_ids(user)


def sees_private_comments(user) -> bool:
    """Private agent notes are for agents who may view comments, never end users."""
    return is_agent(user) and can(user, "comments:view")


def bin_filter(user, module: str):
    """A peewee condition selecting the deleted records of ``module`` (tickets,
    comments, contacts, agents) that ``user`` may see in the recycle bin: the same
    rule as the live pages, so the bin never shows more than they would. Deny by
    default: without the bin, or without the module's view permission, nothing."""
    from desk.models import Comment
    from desk.models import Ticket
    from desk.models import User
    model = {"tickets": Ticket, "comments": Comment}.get(module, User)
    if not can(user, "recycle_bin:view") or not can(user, f"{module}:view"):
        return model.id.is_null()
    if module == "tickets":
        return ticket_filter(user)
    if module == "comments":
        # A comment is seen where its ticket is (scope and private departments).
        return Comment.ticket.in_(Ticket.select(Ticket.id).where(ticket_filter(user)))
    return model.id.is_null(False)


def can_reply(user, ticket, public: bool) -> bool:
    if user.kind == "end_user":
        return public and ticket.requester_id == user.id
    return can(user, "comments:create") and (not public or can(user, "tickets:edit"))


def can_edit_ticket(user) -> bool:
    return can(user, "tickets:edit")


def can_delete(user, module: str) -> bool:
    return can(user, f"{module}:delete")


# -- fields --------------------------------------------------------------------

HIDDEN = "hidden"
READ = "read"
EDIT = "edit"
ACCESS_LEVELS = (HIDDEN, READ, EDIT)

# Built-in fields that roles can restrict, per module. Admin-defined custom
# fields ("cf_<key>", from the database) join them in module_fields() and are
# then governed exactly like these.
FIELDS: dict[str, list[str]] = {
    "tickets": ["subject", "description", "status", "priority", "department", "assignee",
                "requester"],
    "contacts": ["name", "email", "phone", "mobile", "title", "timezone", "language"],
}


def module_fields(module: str) -> list[str]:
    """Built-in and custom fields of a module, as named in field permissions
    (the custom ones read once per request)."""
    from flask import has_request_context
    from flask import request

    cache = request.environ.setdefault("desk.policy", {}) if has_request_context() else {}
    if "module_fields" not in cache:
        custom: dict[str, list[str]] = {}
        for kind, key in _custom_field_keys.rows():
            custom.setdefault(kind, []).append(f"cf_{key}")
        cache["module_fields"] = custom
    return FIELDS.get(module, []) + cache["module_fields"].get(module, [])


def _live_custom_field_keys():
    from desk.models import CustomField
    return (CustomField.select(CustomField.module, CustomField.key).where(CustomField.deleted_at.is_null())
            .order_by(CustomField.position, CustomField.id).tuples())


_custom_field_keys = Prepared(_live_custom_field_keys)


def all_fields() -> dict[str, list[str]]:
    """module -> every field name that roles can restrict."""
    return {module: module_fields(module) for module in FIELDS}


def field_access(user, module: str, field: str) -> str:
    """hidden, read or edit: what the user's role allows for one field.
    Deny by default for anyone who cannot even view the module."""
    if not is_agent(user) or not can(user, f"{module}:view"):
        return HIDDEN
    if user.role.is_admin:
        return EDIT
    level = _field_rules(user.role.field_permissions or "{}").get(f"{module}.{field}", EDIT)
    if level == EDIT and not can(user, f"{module}:edit"):
        return READ
    return level if level in ACCESS_LEVELS else HIDDEN


def field_levels(user, module: str) -> dict[str, str]:
    """Every field of the module with the user's access level (for templates)."""
    return {name: field_access(user, module, name) for name in module_fields(module)}


def visible(user, module: str, field: str) -> bool:
    return field_access(user, module, field) != HIDDEN


def can_reveal(user, module: str, field: str) -> bool:
    """Whether the clear value of an encrypted field may be shown to ``user``:
    the field is visible to them and their role may reveal in that module."""
    return visible(user, module, field) and can(user, f"{module}:reveal")


def require_editable(user, module: str, fields) -> None:
    """Refuse (not silently ignore) a change to a field the role may not edit."""
    for name in fields:
        if field_access(user, module, name) != EDIT:
            raise PermissionDenied(f"{module}.{name}")


_EVERYTHING = frozenset(f"{m}:{a}" for m in MODULES for a in ACTIONS)


@functools.lru_cache(maxsize=512)
def _permission_set(stored: str) -> frozenset[str]:
    """A role's stored permissions (JSON), read once per distinct value: pages ask
    the policy dozens of times per request."""
    return frozenset(json.loads(stored))


@functools.lru_cache(maxsize=512)
def _field_rules(stored: str) -> MappingProxyType:
    """A role's stored field levels (JSON), read once per distinct value (read-only)."""
    return MappingProxyType(json.loads(stored))


def permissions_of_role(role) -> frozenset[str]:
    if role.is_admin:
        return _EVERYTHING
    return _permission_set(role.permissions)


def role_field_levels(role) -> dict[str, str]:
    """The role's setting for every field ("module.field" -> level)."""
    stored = {} if role.is_admin else _field_rules(role.field_permissions or "{}")
    return {f"{m}.{f}": stored.get(f"{m}.{f}", EDIT) for m, names in all_fields().items()
            for f in names}


# -- API tokens ----------------------------------------------------------------

def may_have_tokens(user) -> bool:
    """Anyone who can sign in may make personal access tokens for themselves."""
    return _active(user)


def owns_token(user, token) -> bool:
    """Only the owner sees and revokes a token on their own page (administrators
    holding settings:manage do it from the list of all tokens)."""
    return _active(user) and token.user_id == user.id


def token_permits(token, writes: bool) -> bool:
    """A read-only token only reads."""
    return not (writes and token.read_only)
