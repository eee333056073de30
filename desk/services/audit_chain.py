"""The audit chain's anchor outside the database: signed checkpoints of the
chain head, appended to the witness file and the log by a scheduled job, and
mailed to the administrators once a day when mail is configured."""
from __future__ import annotations

from flask_babel import force_locale

from desk import audit
from desk.i18n import gettext as _
from desk.services import audit_log
from desk.services import mail
from desk.services import mail_settings


def checkpoint(config: dict, force: bool = False) -> audit.Checkpoint | None:
    """A checkpoint when one is due (every N entries or M minutes of new entries)."""
    return audit.checkpoint(config["AUDIT_CHECKPOINT_ENTRIES"], config["AUDIT_CHECKPOINT_MINUTES"],
                            force=force)


def mail_checkpoint(config: dict) -> int:
    """Mail the newest checkpoint (made now if there are new entries) to every
    administrator, so a copy lives where the database's writers cannot reach;
    nothing while mail only goes to the outbox folder. Returns how many mails."""
    if mail_settings.outbox_only(config):
        return 0
    checkpoint(config, force=True)
    line = audit.last_checkpoint_line()
    if line is None:
        return 0
    admins = audit_log.admins()
    for admin in admins:
        with force_locale(admin.language or "en"):
            mail.queue(admin.email, _("desk audit checkpoint"),
                       _("The audit log's newest signed checkpoint is below. Keep this mail: "
                         "\"audit-verify\" compares the log with the witness file, and this "
                         "copy shows what the witness file held today.\n\n%(line)s\n",
                         line=line), subject_id=admin.id)
    return len(admins)
