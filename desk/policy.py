"""Who may do what: the one place that decides access. Deny by default.

Views, commands and templates (as the Jinja global ``can``) ask here.
"""
from __future__ import annotations

import json

from desk.errors import PermissionDenied

MODULES = ("tickets", "comments", "contacts", "agents", "departments",
           "recycle_bin", "audit", "exports", "settings")
ACTIONS = ("view", "create", "edit", "delete", "restore", "export", "reveal", "manage")


def _active(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False)
                and user.is_active and user.deleted_at is None)


def is_agent(user) -> bool:
    return _active(user) and user.kind == "agent"


def is_admin(user) -> bool:
    return is_agent(user) and user.role is not None and user.role.is_admin


def permissions_of(user) -> frozenset[str]:
    """Every "module:action" the user holds (agents only; end users hold none)."""
    if not is_agent(user) or user.role is None:
        return frozenset()
    if user.role.is_admin:
        return frozenset(f"{m}:{a}" for m in MODULES for a in ACTIONS)
    return frozenset(json.loads(user.role.permissions))


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
