"""Leases: one holder at a time for singletons such as the scheduler,
across processes and machines sharing the database."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
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


def local_holder() -> str:
    """A holder id naming this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process no longer exists (killed, crashed)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_over_if_dead(name: str) -> bool:
    """Free a lease whose holder died on this host; True if it was freed."""
    row = Lease.get_or_none(Lease.name == name)
    if row is None or not _holder_is_dead(row.holder):
        return False
    with write_transaction():
        Lease.delete().where(Lease.name == name, Lease.holder == row.holder).execute()
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
    if not hold(name, holder, ttl) and not (take_over_if_dead(name) and hold(name, holder, ttl)):
        yield None
        return
    try:
        yield lambda: hold(name, holder, ttl)
    finally:
        release(name, holder)
