"""Instance settings stored in the database (admin-changeable), audited."""
from __future__ import annotations

import json
from typing import Any

from desk import audit
from desk import crypto
from desk.audit import Actor
from desk.models import Setting
from desk.models import StoredSecret
from desk.models import utcnow


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


def put_secret(actor: Actor, name: str, value: str) -> None:
    """Store a secret (e.g. "smtp_password") encrypted by desk.crypto under the
    active key, bound to its name; audit records only that it changed. An empty
    value removes it."""
    with audit.transaction():
        row = StoredSecret.get_or_none(StoredSecret.name == name)
        if not value:
            if row is not None:
                audit.delete(actor, row)
            return
        sealed = crypto.encrypt_secret(name, value)
        values = {"sealed": sealed, "key_id": crypto.key_id_of(sealed), "updated_at": utcnow()}
        if row is None:
            audit.create(actor, StoredSecret, name=name, **values)
        else:
            audit.update(actor, row, **values)


def get_secret(name: str, default: str = "") -> str:
    """The clear secret, or ``default`` when none is stored. Raises
    crypto.CannotDecrypt if the stored value was altered or its key is gone."""
    row = StoredSecret.get_or_none(StoredSecret.name == name)
    return default if row is None else crypto.decrypt_secret(name, row.sealed)
