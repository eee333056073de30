"""The job table and the single-runner scheduler.

The scheduler runs in one dedicated process (started by ``run``), and within
the whole deployment only the holder of the "scheduler" lease runs jobs, so
several app servers sharing one database still run each job once.
"""
from __future__ import annotations

import datetime as dt
import logging
import signal
from dataclasses import dataclass
from typing import Callable

from flask import Flask
from flask import current_app

from desk.services import attachments
from desk.services import audit_log
from desk.services import audit_chain
from desk.services import backup
from desk.services import breaches
from desk.services import custom_fields
from desk.services import bulk_export
from desk.services import leases
from desk.services import erasure
from desk.services import mail
from desk.services import purge
from desk.services import tokens
from desk.services import region_move
from desk.services import subject_requests

log = logging.getLogger("desk.jobs")

LEASE = "scheduler"
LEASE_TTL = dt.timedelta(seconds=90)


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[], object]
    seconds: int
    first_after: int = 0  # seconds after start-up of the first run


def deliver_mail() -> None:
    mail.deliver_pending(current_app.config)


def purge_expired() -> None:
    purge.purge_expired(current_app.config)


def resume_erasures() -> None:
    erasure.resume_all()


def scheduled_backup() -> None:
    backup.scheduled_backup(current_app.config)


def seal_encrypted_fields() -> None:
    custom_fields.seal_pending()
def run_bulk_exports() -> None:
    bulk_export.run_pending()


def expire_bulk_exports() -> None:
    bulk_export.expire_due()


def remind_token_expiry() -> None:
    tokens.remind_expiring()


def encrypt_files() -> None:
    attachments.encrypt_stored(current_app.config)
def wipe_old_region() -> None:
    region_move.wipe_expired(current_app._get_current_object())


def run_requested_move() -> None:
    region_move.run_requested(current_app._get_current_object())


def verify_audit_chain() -> None:
    audit_log.verify_chain()


def remind_subject_requests() -> None:
    subject_requests.remind()


def audit_checkpoint() -> None:
    audit_chain.checkpoint(current_app.config)


def mail_audit_checkpoint() -> None:
    audit_chain.mail_checkpoint(current_app.config)


def remind_breaches() -> None:
    breaches.remind()


def renew_lease() -> None:
    """Nothing of its own: running it keeps the lease alive between other jobs."""


JOBS = (
    Job("renew-lease", renew_lease, 30),
    Job("deliver-mail", deliver_mail, 15),
    Job("resume-erasures", resume_erasures, 300, first_after=60),
    Job("purge", purge_expired, 3600, first_after=300),
    Job("backup", scheduled_backup, 600, first_after=120),
    Job("seal-encrypted-fields", seal_encrypted_fields, 60, first_after=30),
    Job("token-reminders", remind_token_expiry, 3600, first_after=120),
    Job("encrypt-files", encrypt_files, 600, first_after=120),
    Job("bulk-exports", run_bulk_exports, 20, first_after=10),
    Job("expire-bulk-exports", expire_bulk_exports, 600, first_after=120),
    Job("wipe-old-region", wipe_old_region, 3600, first_after=600),
    Job("region-move", run_requested_move, 30, first_after=30),
    Job("verify-audit-chain", verify_audit_chain, 86400, first_after=900),
    Job("subject-request-reminders", remind_subject_requests, 3600, first_after=300),
    Job("audit-checkpoint", audit_checkpoint, 60, first_after=20),
    Job("mail-audit-checkpoint", mail_audit_checkpoint, 86400, first_after=3600),
    Job("breach-reminders", remind_breaches, 300, first_after=60),
)


def run_job(app: Flask, job: Job, holder: str) -> bool:
    """Run one job if this process holds the scheduler lease; True if it ran."""
    with app.app_context():
        if not leases.hold(LEASE, holder, LEASE_TTL):
            return False
        try:
            job.func()
        except Exception:  # noqa: BLE001 - a failing job must not stop the scheduler
            log.exception("job %s failed", job.name)
        return True


def run_scheduler(overrides: dict | None = None) -> None:
    """Blocking: the scheduler process's main loop."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from desk import create_app
    app = create_app(overrides)
    holder = leases.local_holder()
    scheduler = BlockingScheduler(timezone="UTC")
    now = dt.datetime.now(dt.timezone.utc)
    for job in JOBS:
        # A trigger object, not "interval": no plug-in look-up (the single executable has none).
        scheduler.add_job(run_job, IntervalTrigger(seconds=job.seconds), args=(app, job, holder),
                          id=job.name, max_instances=1, coalesce=True,
                          next_run_time=now + dt.timedelta(seconds=job.first_after))
    # SIGTERM (server shutdown) ends the loop normally, so the lease is released
    # and a restarted server takes over at once.
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("scheduler %s started", holder)
    try:
        scheduler.start()
    finally:
        with app.app_context():
            leases.release(LEASE, holder)
