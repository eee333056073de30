"""Leases: one holder at a time for singletons such as the scheduler,
across processes and machines sharing the database."""
from __future__ import annotations

import datetime as dt

from peewee import IntegrityError

from desk.db import db
from desk.db import write_transaction
from desk.models import Lease
from desk.models import utcnow


def hold(name: str, holder: str, ttl: dt.timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder``; False if another holds it."""
    now = utcnow()
    with write_transaction():
        renewed = (Lease.update(holder=holder, expires_at=now + ttl)
                   .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
                   .execute())
        if renewed:
            return True
        try:
            with db.atomic():
                Lease.create(name=name, holder=holder, expires_at=now + ttl)
        except IntegrityError:
            return False
    return True


def release(name: str, holder: str) -> None:
    with write_transaction():
        Lease.delete().where(Lease.name == name, Lease.holder == holder).execute()
