"""Instance settings stored in the database (admin-changeable), audited."""
from __future__ import annotations

import json
from typing import Any

from desk import audit
from desk.audit import Actor
from desk.models import Setting


def get(key: str, default: Any = None) -> Any:
    row = Setting.get_or_none(Setting.key == key)
    return default if row is None else json.loads(row.value)


def put(actor: Actor, key: str, value: Any) -> None:
    """Create or change a setting."""
    text = json.dumps(value)
    with audit.transaction():
        row = Setting.get_or_none(Setting.key == key)
        if row is None:
            audit.create(actor, Setting, key=key, value=text)
        else:
            audit.update(actor, row, value=text)


def add(actor: Actor, key: str, value: Any) -> None:
    """Create a setting that must not exist yet (IntegrityError if it does)."""
    audit.create(actor, Setting, key=key, value=json.dumps(value))


def remove(actor: Actor, key: str) -> None:
    with audit.transaction():
        row = Setting.get_or_none(Setting.key == key)
        if row is not None:
            audit.delete(actor, row)
