"""The base model: every table binds to the proxy and refuses writes that do
not come through desk.audit (see ``write_guard``)."""
from __future__ import annotations

import contextvars
import datetime as dt

from peewee import DateTimeField as _PeeweeDateTimeField
from peewee import Model

from desk.db import db
from desk.errors import UnauditedWrite

# Set only by desk.audit while it performs an audited write.
_audited_write = contextvars.ContextVar("desk_audited_write", default=False)


def utcnow() -> dt.datetime:
    """Current UTC time, naive, as stored in every DateTimeField."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class DateTimeField(_PeeweeDateTimeField):
    """A naive UTC datetime. SQLite stores it as ISO 8601 text, read back with
    ``fromisoformat`` (peewee's own field tries ``strptime`` formats, which
    cost more than the rest of reading the row); PostgreSQL hands datetimes."""

    def python_value(self, value):
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                return super().python_value(value)
        return value


def _check(model_class) -> None:
    if model_class.write_guard and not _audited_write.get():
        raise UnauditedWrite(f"{model_class.__name__} may only be written through desk.audit")


class BaseModel(Model):
    """Base of every table.

    ``write_guard``: writes must come through desk.audit (False only for
    operational tables whose writes are consequences of audited actions).
    ``personal_fields``: values encrypted under the data subject's key in audit.
    ``text_fields``: free text (which may mention anyone), sealed in audit under
    a key of the record's own, so scrubbing the record shreds its history.
    ``secret_fields``: never written to audit, only the fact that they changed.
    """

    write_guard = True
    personal_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()

    class Meta:
        database = db
        legacy_table_names = False

    def audit_subject_id(self) -> int | None:
        """Whose personal data this row holds (a user id), if anyone's."""
        return None

    def save(self, *args, **kwargs):
        _check(type(self))
        return super().save(*args, **kwargs)

    def delete_instance(self, *args, **kwargs):
        _check(type(self))
        return super().delete_instance(*args, **kwargs)

    @classmethod
    def insert(cls, *args, **kwargs):
        _check(cls)
        return super().insert(*args, **kwargs)

    @classmethod
    def insert_many(cls, *args, **kwargs):
        _check(cls)
        return super().insert_many(*args, **kwargs)

    @classmethod
    def insert_from(cls, *args, **kwargs):
        _check(cls)
        return super().insert_from(*args, **kwargs)

    @classmethod
    def replace(cls, *args, **kwargs):
        _check(cls)
        return super().replace(*args, **kwargs)

    @classmethod
    def replace_many(cls, *args, **kwargs):
        _check(cls)
        return super().replace_many(*args, **kwargs)

    @classmethod
    def update(cls, *args, **kwargs):
        _check(cls)
        return super().update(*args, **kwargs)

    @classmethod
    def delete(cls):
        _check(cls)
        return super().delete()
