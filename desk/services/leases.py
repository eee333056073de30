"""Leases: one holder at a time for singletons such as the scheduler,
across processes and machines sharing the database."""
from __future__ import annotations

import contextlib
import datetime as dt
import zlib
from typing import Callable, Iterator

from peewee import IntegrityError

from desk.db import db
from desk.db import is_postgres
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


@contextlib.contextmanager
def exclusive(name: str, holder: str, ttl: dt.timedelta) -> Iterator[Callable[[], bool]]:
    """Run a long job alone across every process sharing the database.

    On PostgreSQL a session advisory lock (released even if the process dies);
    elsewhere a lease row with an expiry, renewed by calling the yielded
    function between batches (a dead holder's lease simply runs out).
    Yields None to the body when another process holds it.
    """
    if is_postgres():
        key = zlib.crc32(name.encode())
        got = db.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not got:
            yield None
            return
        try:
            yield lambda: True
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
        return
    if not hold(name, holder, ttl):
        yield None
        return
    try:
        yield lambda: hold(name, holder, ttl)
    finally:
        release(name, holder)
