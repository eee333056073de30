"""Test data made through the services, as the app makes it."""
from __future__ import annotations

import itertools

from desk import audit
from desk.models import Department
from desk.models import Role
from desk.models import Ticket
from desk.services import people

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def end_user(name: str | None = None, email: str | None = None, password: str = PASSWORD):
    n = next(_seq)
    return people.sign_up(name or f"Customer {n}", email or f"customer{n}@example.com", password)


def agent(name: str | None = None, email: str | None = None, password: str = PASSWORD,
          role: str = "Agent"):
    n = next(_seq)
    return people.create_agent(audit.SYSTEM, name or f"Agent {n}", email or f"agent{n}@example.com",
                               password, Role.get(Role.name == role))


def admin(name: str | None = None, email: str | None = None, password: str = PASSWORD):
    n = next(_seq)
    return people.create_admin(audit.SYSTEM, name or f"Admin {n}", email or f"admin{n}@example.com",
                               password)


def department(name: str | None = None):
    return audit.create(audit.SYSTEM, Department, name=name or f"Department {next(_seq)}")


def ticket(requester, subject: str = "Printer on fire", **fields):
    return audit.create(audit.SYSTEM, Ticket, requester=requester, subject=subject, **fields)
