"""A form sent twice makes one record: the new-ticket and reply forms carry a
one-time key, and the first send claims it inside its own transaction.

A second send of the same form (two quick clicks, a reload after a slow answer)
waits for the first one's transaction on the unique (user, key) index, then
finds the record the first made and answers with that. A form without a key
(a page cached from before) simply makes its record, as before.
"""
from __future__ import annotations

import datetime as dt
import re

from peewee import IntegrityError

from desk.db import db
from desk.models import SubmittedForm
from desk.models import User
from desk.models import utcnow

KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
KEEP = dt.timedelta(days=1)


def claim(user: User, key: str | None) -> tuple[bool, int | None]:
    """Claim ``key`` for ``user`` (call inside the transaction that makes the
    record): (True, None) to go ahead and make it, then ``made``; or
    (False, id) when an earlier send of this form made record ``id``."""
    if not key or not KEY_RE.fullmatch(key):
        return True, None
    SubmittedForm.delete().where(SubmittedForm.created_at < utcnow() - KEEP).execute()
    try:
        with db.atomic():  # a savepoint: a concurrent send of the same form waits here
            SubmittedForm.create(user=user.id, form_key=key)
    except IntegrityError:
        earlier = SubmittedForm.get_or_none(SubmittedForm.user == user.id,
                                            SubmittedForm.form_key == key)
        if earlier is not None and earlier.record_id is not None:
            return False, earlier.record_id
        return True, None
    return True, None


def made(user: User, key: str | None, record_id: int) -> None:
    """Remember which record the send that claimed ``key`` made."""
    if key and KEY_RE.fullmatch(key):
        (SubmittedForm.update(record_id=record_id)
         .where(SubmittedForm.user == user.id, SubmittedForm.form_key == key).execute())
