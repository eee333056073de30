"""Departments, created by admins, with agents as members."""
from __future__ import annotations

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.i18n import lazy_gettext as _l
from desk.models import AgentDepartment
from desk.models import Department
from desk.models import User
from desk.services.people import clean_text


def overview() -> list[tuple[Department, list[User]]]:
    """Every department with its members (two queries)."""
    departments = list(Department.select().order_by(Department.name))
    members: dict[int, list[User]] = {d.id: [] for d in departments}
    links = (AgentDepartment.select(AgentDepartment, User)
             .join(User, on=(AgentDepartment.agent == User.id), attr="agent")
             .where(User.deleted_at.is_null()).order_by(User.name))
    for link in links:
        members[link.department_id].append(link.agent)
    return [(d, members[d.id]) for d in departments]


def create(actor_user: User, name: str, is_private: bool = False, ip: str = "") -> Department:
    policy.require(actor_user, "departments:manage")
    name = clean_text(name, 200)
    if Department.select().where(Department.name == name).exists():
        raise Conflict(_l("A department with this name already exists."))
    return audit.create(Actor.of(actor_user, ip), Department, name=name, is_private=is_private)


def _get(department_id: int) -> Department:
    dept = Department.get_or_none(Department.id == department_id)
    if dept is None:
        raise NotFound(_l("No such department."))
    return dept


def add_member(actor_user: User, department_id: int, agent_id: int, ip: str = "") -> None:
    policy.require(actor_user, "departments:manage")
    dept = _get(department_id)
    agent = User.get_or_none(User.id == agent_id, User.kind == "agent", User.deleted_at.is_null())
    if agent is None:
        raise InvalidInput(_l("Choose one of the listed agents."))
    exists = AgentDepartment.select().where(AgentDepartment.agent == agent.id,
                                            AgentDepartment.department == dept.id).exists()
    if not exists:
        audit.create(Actor.of(actor_user, ip), AgentDepartment, agent=agent, department=dept)


def remove_member(actor_user: User, department_id: int, agent_id: int, ip: str = "") -> None:
    policy.require(actor_user, "departments:manage")
    link = AgentDepartment.get_or_none(AgentDepartment.agent == agent_id,
                                       AgentDepartment.department == department_id)
    if link is None:
        raise NotFound(_l("That agent is not in this department."))
    audit.delete(Actor.of(actor_user, ip), link)
