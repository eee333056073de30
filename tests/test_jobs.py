"""Leases and the single-runner scheduler: each job runs once in the whole
deployment, however many scheduler processes share the database."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import multiprocessing
import queue
import random
import time
from pathlib import Path

import pytest

from desk import jobs
from desk.db import db
from desk.models import Lease
from desk.models import MailMessage
from desk.models import utcnow
from desk.services import leases
from desk.services import mail

TTL = dt.timedelta(seconds=60)


def expire(name: str) -> None:
    Lease.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Lease.name == name).execute()


def current(name: str) -> Lease | None:
    return Lease.get_or_none(Lease.name == name)


# --- leases.hold / release ------------------------------------------------------

def test_lease_lifecycle(ctx):
    assert leases.hold("x", "a", TTL)
    lease = current("x")
    assert lease.holder == "a"
    assert lease.expires_at > utcnow() + TTL - dt.timedelta(seconds=5)

    # Refused to another holder while unexpired, again and again.
    assert not leases.hold("x", "b", TTL)
    assert not leases.hold("x", "b", TTL)
    assert current("x").holder == "a"

    # The holder renews, pushing the expiry forward.
    first_expiry = current("x").expires_at
    time.sleep(0.01)
    assert leases.hold("x", "a", TTL)
    assert current("x").holder == "a"
    assert current("x").expires_at > first_expiry

    # Expired: the other holder takes over and the first is now refused.
    expire("x")
    assert leases.hold("x", "b", TTL)
    assert current("x").holder == "b"
    assert not leases.hold("x", "a", TTL)
    assert current("x").holder == "b"

    # Releasing someone else's lease does nothing; releasing one's own frees it.
    leases.release("x", "a")
    assert current("x").holder == "b"
    leases.release("x", "b")
    assert current("x") is None
    assert leases.hold("x", "a", TTL)
    assert current("x").holder == "a"
    assert Lease.select().count() == 1


def test_leases_are_independent_by_name(ctx):
    assert leases.hold("x", "a", TTL)
    assert leases.hold("y", "b", TTL)
    assert not leases.hold("y", "a", TTL)
    assert not leases.hold("x", "b", TTL)
    leases.release("x", "a")
    assert current("y").holder == "b"


def test_an_expired_holder_may_renew_if_nobody_took_over(ctx):
    assert leases.hold("x", "a", TTL)
    expire("x")
    assert leases.hold("x", "a", TTL)
    assert current("x").expires_at > utcnow()
    assert not leases.hold("x", "b", TTL)


# --- run_job ----------------------------------------------------------------------------

def counting_job(counter: list, name: str = "count") -> jobs.Job:
    return jobs.Job(name, lambda: counter.append(1), 15)


def test_holder_ids_are_unique():
    assert leases.local_holder() != leases.local_holder()


def test_only_one_of_two_schedulers_runs_each_job(app):
    counter = []
    job = counting_job(counter)
    a, b = leases.local_holder(), leases.local_holder()
    for _ in range(5):
        ran = [jobs.run_job(app, job, a), jobs.run_job(app, job, b)]
        assert ran == [True, False]
    for _ in range(5):  # whatever the order of calls
        assert not jobs.run_job(app, job, b)
        assert jobs.run_job(app, job, a)
    assert len(counter) == 10
    with app.app_context():
        assert current(jobs.LEASE).holder == a
        # The lease is the scheduler's, with the scheduler's TTL.
        left = current(jobs.LEASE).expires_at - utcnow()
        assert jobs.LEASE_TTL - dt.timedelta(seconds=10) < left <= jobs.LEASE_TTL


def test_the_other_scheduler_takes_over_when_the_lease_expires(app):
    counter = []
    job = counting_job(counter)
    a, b = "host-a:1:aaaa", "host-b:2:bbbb"
    assert jobs.run_job(app, job, a)
    assert not jobs.run_job(app, job, b)

    with app.app_context():  # scheduler a died: its lease runs out
        expire(jobs.LEASE)
    assert jobs.run_job(app, job, b)
    assert not jobs.run_job(app, job, a)
    assert jobs.run_job(app, job, b)
    assert len(counter) == 3

    with app.app_context():  # b shuts down cleanly, as run_scheduler does
        leases.release(jobs.LEASE, b)
    assert jobs.run_job(app, job, a)
    assert len(counter) == 4


def test_a_failing_job_does_not_stop_the_scheduler(app, caplog):
    def explode():
        raise RuntimeError("boom")

    counter = []
    holder = leases.local_holder()
    with caplog.at_level(logging.ERROR, logger="desk.jobs"):
        assert jobs.run_job(app, jobs.Job("explode", explode, 15), holder) is True
    assert "job explode failed" in caplog.text
    assert "boom" in caplog.text

    # The scheduler still holds the lease and keeps running jobs.
    assert jobs.run_job(app, counting_job(counter), holder)
    assert not jobs.run_job(app, counting_job(counter), leases.local_holder())
    assert counter == [1]


def test_a_job_failing_inside_a_database_transaction_leaves_the_connection_usable(app, caplog):
    def bad_sql():
        from desk.db import write_transaction
        with write_transaction():
            mail.queue("ann@example.com", "rolled back", "body\n")
            db.execute_sql("SELECT * FROM no_such_table")

    holder = leases.local_holder()
    with caplog.at_level(logging.ERROR, logger="desk.jobs"):
        assert jobs.run_job(app, jobs.Job("bad-sql", bad_sql, 15), holder)
    assert "job bad-sql failed" in caplog.text
    counter = []
    assert jobs.run_job(app, counting_job(counter), holder)
    assert counter == [1]
    with app.app_context():
        assert MailMessage.select().count() == 0  # the failed job's write was rolled back


def test_deliver_mail_job_sends_the_queue(app):
    with app.app_context():
        mail.queue("ann@example.com", "你好", "正文\n")
    job = next(j for j in jobs.JOBS if j.name == "deliver-mail")
    a, b = leases.local_holder(), leases.local_holder()
    assert jobs.run_job(app, job, a)
    assert not jobs.run_job(app, job, b)

    files = list((Path(app.config["DATA_DIR"]) / "outbox").glob("*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert str(msg["Subject"]) == "你好"
    with app.app_context():
        assert [m.status for m in MailMessage.select()] == ["sent"]


def test_every_job_runs_under_the_lease(app):
    holder = leases.local_holder()
    names = [job.name for job in jobs.JOBS]
    assert len(names) == len(set(names))
    assert "renew-lease" in names
    for job in jobs.JOBS:
        assert job.seconds > 0
        assert jobs.run_job(app, job, holder)
    # The renewing job runs well within the lease's lifetime.
    renew = next(j for j in jobs.JOBS if j.name == "renew-lease")
    assert dt.timedelta(seconds=renew.seconds * 2) < jobs.LEASE_TTL


# --- real concurrency: two processes contend for one lease ------------------------

def _contend(url: str, holder: str, ttl: float, duration: float, hold_pause: float,
             barrier, results) -> None:
    """Child process: call leases.hold for ``duration`` seconds and report, for each
    success, the interval in which this holder may believe it holds the lease:
    from when hold() returned until (when hold() was called + ttl)."""
    from desk.db import bind
    from desk.db import db as proxy
    from desk.services import leases as child_leases

    bind(url)
    proxy.connect()
    rng = random.Random(holder)
    held, calls, error = [], 0, None
    try:
        barrier.wait(timeout=30)
        end = time.time() + duration
        while time.time() < end:
            before = time.time()
            ok = child_leases.hold("x", holder, dt.timedelta(seconds=ttl))
            after = time.time()
            calls += 1
            if ok:
                held.append((after, before + ttl))
                # Sometimes do work for longer than the lease lasts.
                time.sleep(rng.uniform(0, hold_pause))
            else:
                time.sleep(rng.uniform(0, 0.005))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        error = repr(exc)
    finally:
        proxy.close()
        results.put((holder, calls, held, error))


def contend(url: str, ttl: float, duration: float, hold_pause: float) -> dict:
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(2)
    results = mp.Queue()
    procs = [mp.Process(target=_contend, args=(url, holder, ttl, duration, hold_pause,
                                               barrier, results))
             for holder in ("p1", "p2")]
    for proc in procs:
        proc.start()
    try:
        out = {}
        deadline = time.time() + 60
        while len(out) < len(procs):
            try:
                holder, calls, held, error = results.get(timeout=0.5)
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not crashed, f"a contending process died (exit codes {crashed})"
                assert time.time() < deadline, "contending processes did not report"
                continue
            assert error is None, f"{holder}: {error}"
            out[holder] = (calls, held)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return out


@pytest.fixture
def lease_db(app):
    """The migrated database's URL, with this process's connection closed."""
    if not db.is_closed():
        db.close()
    return app.config["DATABASE_URL"]


def test_two_processes_never_both_hold_a_long_lease(lease_db):
    out = contend(lease_db, ttl=60, duration=1.0, hold_pause=0.002)
    winners = [holder for holder, (_, held) in out.items() if held]
    assert len(winners) == 1
    loser = "p1" if winners == ["p2"] else "p2"
    assert out[loser][0] > 10  # the loser really tried, many times
    assert len(out[winners[0]][1]) > 10  # and the winner kept renewing


def test_two_processes_hand_a_short_lease_over_without_overlap(lease_db):
    ttl = 0.05
    out = contend(lease_db, ttl=ttl, duration=1.5, hold_pause=2 * ttl)
    spans = [(start, end, holder) for holder, (_, held) in out.items()
             for start, end in held]
    # The lease changed hands: both processes held it at some point.
    assert all(held for _, held in out.values()), out
    for s1, e1, h1 in spans:
        for s2, e2, h2 in spans:
            if h1 != h2:
                assert e1 <= s2 or e2 <= s1, (
                    f"{h1} believed it held the lease {s1:.4f}..{e1:.4f} "
                    f"while {h2} believed it held it {s2:.4f}..{e2:.4f}")
