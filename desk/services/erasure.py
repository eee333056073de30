"""The right to be forgotten. A person's personal data is replaced everywhere
by a placeholder ("Deleted user 42"), their files removed, mentions of them in
tickets and comments scrubbed, their keys destroyed, so history keeps its shape
while nothing in it can name them.

An erasure is a persisted request that runs in steps; each step is idempotent
and records its completion, so a crash resumes where it stopped.
"""
from __future__ import annotations

import json
import logging

from flask import current_app

from desk import audit
from desk import crypto
from desk import policy
from desk.audit import Actor
from desk.db import compact
from desk.db import db
from desk.db import is_in
from desk.db import is_sqlite
from desk.db import store_size
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.errors import NotFound
from desk.errors import PermissionDenied
from desk.i18n import lazy_gettext as _l
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import Breach
from desk.models import DataSubjectRequest
from desk.models import Comment
from desk.models import EmailChangeRequest
from desk.models import ErasureRequest
from desk.models import MailMessage
from desk.models import Ticket
from desk.models import User
from desk.models import utcnow
from desk.models.privacy import ANONYMIZE
from desk.models.privacy import DONE
from desk.models.privacy import ERASE_WITH_TICKETS
from desk.models.privacy import REQUESTED
from desk.models.privacy import RUNNING
from desk.services import attachments as files_service
from desk.services import bulk_export
from desk.services import custom_fields
from desk.services import mail
from desk.services import people
from desk.services import purge
from desk.services import search
from desk.services import sessions
from desk.services import subject_requests
from desk.services import tokens
from desk.services.identifiers import Identifiers

MODES = (ANONYMIZE, ERASE_WITH_TICKETS)
OPEN = (REQUESTED, RUNNING)
BATCH = 200
MIN_TERM = 3

log = logging.getLogger(__name__)


def placeholder(user: User) -> str:
    return f"Deleted user {user.id}"


def placeholder_email(user: User) -> str:
    return f"deleted-user-{user.id}@invalid.invalid"


def _open_request(user: User, excluding: int | None = None) -> ErasureRequest | None:
    query = ErasureRequest.select().where(ErasureRequest.user == user.id,
                                          ErasureRequest.status.in_(OPEN))
    if excluding:
        query = query.where(ErasureRequest.id != excluding)
    return query.first()


# -- asking -------------------------------------------------------------------

def request_by_person(user: User, ip: str = "") -> ErasureRequest:
    """A person asks to be forgotten; an administrator decides."""
    if _open_request(user):
        raise Conflict(_l("You already asked; an administrator will handle it."))
    with audit.transaction():
        req = audit.create(Actor.of(user, ip), ErasureRequest, user=user, requested_by=user.id)
        subject_requests.from_person(Actor.of(user, ip), user, "erasure", erasure_request_id=req.id)
    return req


def queue() -> list[ErasureRequest]:
    return list(ErasureRequest.select(ErasureRequest, User)
                .join(User, on=(ErasureRequest.user == User.id))
                .where(ErasureRequest.status.in_(OPEN)).order_by(ErasureRequest.created_at))


# -- preview and guards --------------------------------------------------------

def preview(admin: User, user_id: int) -> dict:
    """What an erasure of this person touches, for the admin to confirm."""
    policy.require(admin, "settings:manage")
    user = User.get_or_none(User.id == user_id)
    if user is None or user.anonymized_at is not None:
        raise NotFound(_l("No such person."))
    return {
        "user": user,
        "placeholder": placeholder(user),
        "tickets": Ticket.select().where(Ticket.requester == user.id).count(),
        "comments": Comment.select().where(Comment.author == user.id).count(),
        "attachments": Attachment.select().where(Attachment.uploader == user.id).count(),
        "audit_entries": AuditEntry.select().where((AuditEntry.subject_id == user.id)
                                                   | (AuditEntry.actor_id == user.id)).count(),
        "mentions": _mention_count(_identifiers(user)),
        "pending": _open_request(user),
    }


def _guard(admin: User, user: User, request_id: int | None = None) -> None:
    if admin.id == user.id:
        raise PermissionDenied(_l("You cannot erase yourself."))
    if people.is_last_admin(user):
        raise Conflict(_l("The last administrator cannot be erased."))
    other = _open_request(user, excluding=request_id)
    if other is not None and other.status == RUNNING:
        raise Conflict(_l("An erasure of this person is already running."))


def start(admin: User, user_id: int, mode: str, confirmation: str, ip: str = "") -> ErasureRequest:
    """Check the guards and the typed confirmation, persist the request, and
    run it. Takes over the person's own open request, if any."""
    policy.require(admin, "settings:manage")
    user = User.get_or_none(User.id == user_id)
    if user is None or user.anonymized_at is not None:
        raise NotFound(_l("No such person."))
    if mode not in MODES:
        raise InvalidInput(_l("Choose how to erase."))
    if (confirmation or "").strip() != placeholder(user):
        raise InvalidInput(_l("Type %(placeholder)s to confirm.", placeholder=placeholder(user)))
    _guard(admin, user)
    actor = Actor.of(admin, ip)
    with audit.transaction():
        req = _open_request(user)
        counts = {k: v for k, v in preview(admin, user_id).items() if isinstance(v, int)}
        if req is None:
            req = audit.create(actor, ErasureRequest, user=user, mode=mode, requested_by=admin.id)
        audit.update(actor, req, status=RUNNING, mode=mode, approved_by=admin.id,
                     started_at=utcnow(), preview=json.dumps(counts))
    return run(req.id)


def reject(admin: User, request_id: int, reason: str, ip: str = "") -> None:
    policy.require(admin, "settings:manage")
    req = ErasureRequest.get_or_none(ErasureRequest.id == request_id, ErasureRequest.status == REQUESTED)
    if req is None:
        raise NotFound(_l("No such open request."))
    audit.update(Actor.of(admin, ip), req, status="rejected", reason=(reason or "")[:1000])


def anonymize_now(actor: Actor, user: User, rebuild: bool = True) -> ErasureRequest:
    """Used by the purge for people past retention: no guards beyond the data.
    ``rebuild``: as for ``run``."""
    with audit.transaction():
        req = _open_request(user) or audit.create(actor, ErasureRequest, user=user, mode=ANONYMIZE)
        audit.update(actor, req, status=RUNNING, started_at=utcnow())
    return run(req.id, rebuild=rebuild)


def resume_all() -> int:
    """Finish every erasure a crash left running, and the rebuild of the
    database files one left waiting (a scheduled job). Returns how many
    requests it finished."""
    done = 0
    for req in ErasureRequest.select().where(ErasureRequest.status == RUNNING):
        run(req.id, rebuild=False)
        done += 1
    return max(done, compact_pending())  # each request run here waits for the rebuild too


# -- the steps ------------------------------------------------------------------

TERM_FIELDS = ("name", "email", "phone", "mobile")


def _known_values(user: User) -> dict[str, set[str]]:
    """Their name, email and phone numbers, now and before (from the audit
    history, while the person's key still opens it), and any address they
    asked to move to: field -> values."""
    values: dict[str, set[str]] = {f: {getattr(user, f) or ""} for f in TERM_FIELDS}
    history = AuditEntry.select().where(AuditEntry.record_type == "User",
                                        AuditEntry.record_id == str(user.id))
    for entry in history.iterator():
        for name, pair in audit.read_changes(entry).items():
            if name in TERM_FIELDS and isinstance(pair, list):
                values[name].update(v for v in pair if isinstance(v, str) and v != crypto.ERASED)
    values["email"].update(r.new_email for r in
                           EmailChangeRequest.select().where(EmailChangeRequest.user == user.id))
    return values


def _identifiers(user: User) -> Identifiers:
    values = _known_values(user)
    return Identifiers(names=values["name"], emails=values["email"],
                       phones=values["phone"] | values["mobile"],
                       keep={placeholder(user), placeholder_email(user)})


def _terms(user: User) -> list[str]:
    """The values as stored, longest first (to find files and mail naming them)."""
    values = set().union(*_known_values(user).values())
    placeholders = {placeholder(user), placeholder_email(user)}
    return sorted((v.strip() for v in values
                   if v and len(v.strip()) >= MIN_TERM and v.strip() not in placeholders),
                  key=len, reverse=True)


def _mention_count(who: Identifiers) -> int:
    """Tickets and comments the scrub will look at (found through the text index)."""
    if not who:
        return 0
    return (Ticket.select().where(_candidates(Ticket, who)).count()
            + Comment.select().where(_candidates(Comment, who)).count())


def _step_recycle(actor: Actor, req: ErasureRequest, user: User) -> None:
    """The person goes to the recycle bin (and, in that mode, their tickets)."""
    if user.deleted_at is None:
        with audit.transaction():
            audit.update(actor, user, action="delete", deleted_at=utcnow(), deleted_by=actor.user_id,
                         session_token=crypto.new_token(24))
            tokens.revoke_all(actor, user, tokens.ERASED)
            sessions.end_all(actor, user, sessions.ERASED)
    if req.mode == ERASE_WITH_TICKETS:
        for ticket in Ticket.select().where(Ticket.requester == user.id, Ticket.deleted_at.is_null()):
            audit.update(actor, ticket, action="delete", deleted_at=utcnow(), deleted_by=actor.user_id)


def _remove_attachments(actor: Actor, rows: list[Attachment]) -> None:
    """Rows now, files right after (crash-safe through FileRemoval)."""
    with audit.transaction():
        purge._note_files(rows)
        crypto.destroy_record_keys("Attachment", [r.id for r in rows])
        audit.purge(actor, Attachment, [r.id for r in rows])
    purge.remove_pending_files(current_app.config)


def _mentions_in_file(row: Attachment, needles: list[bytes], who: Identifiers) -> bool:
    """Whether a file's name or bytes name the person (text files, and text
    inside others as far as it is stored plainly)."""
    if any(n in row.filename.lower().encode() for n in needles) or who.mentions(row.filename.replace("_", " ")):
        return True
    try:
        with files_service.open_file(current_app.config, row) as fh:
            data = fh.read(files_service.CHUNK * 20).lower()
    except FileNotFoundError:
        return False
    return any(n in data for n in needles)


def _step_files(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Their own attachments go, and any file on their tickets or elsewhere
    whose name or text names them."""
    while True:
        rows = list(Attachment.select().where(Attachment.uploader == user.id).limit(BATCH))
        if not rows:
            break
        _remove_attachments(actor, rows)
    terms, who = _terms(user), _identifiers(user)
    needles = [t.lower().encode() for t in terms]
    by_name = None
    for term in terms + who.search_terms()[0]:
        c = Attachment.filename.contains(term)
        by_name = c if by_name is None else by_name | c
    on_theirs = Attachment.ticket.in_(Ticket.select(Ticket.id).where(Ticket.requester == user.id))
    candidates = on_theirs if by_name is None else (on_theirs | by_name)
    last = 0
    while True:
        rows = list(Attachment.select().where(candidates, Attachment.id > last)
                    .order_by(Attachment.id).limit(BATCH))
        if not rows:
            break
        last = rows[-1].id
        naming = [r for r in rows if _mentions_in_file(r, needles, who)]
        if naming:
            _remove_attachments(actor, naming)


def _candidates(model, who: Identifiers):
    """Rows of ``model`` that may name the person, found through the text index."""
    terms, pairs = who.search_terms()
    condition = search.mentions(model, terms)
    for first, last in pairs:
        condition = condition | (search.mentions(model, [first]) & search.mentions(model, [last]))
    return condition


TEXT = {Ticket: ("subject", "description"), Comment: ("body",)}


def _step_scrub(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Every mention of them in tickets and comments (live or recycled) gives
    way to a marker: [name removed], [email removed], [phone removed]. A thread
    is looked at whole, a batch of threads at a time: their own tickets'
    threads, and the threads where the text index finds a candidate. In a
    thread that is about them (theirs, or one that names them), a part of their
    name standing alone goes too. The audit says that text was scrubbed, never
    what it said, and the history of the thread's text is shredded."""
    who = _identifiers(user)
    if not who:
        return
    threads = (Ticket.select(Ticket.id).where(Ticket.requester == user.id)
               | Ticket.select(Ticket.id).where(_candidates(Ticket, who))
               | Comment.select(Comment.ticket).where(_candidates(Comment, who)))
    last = 0
    # The threads are found once (the text index's look-up is the costly part),
    # then once more for any thread made meanwhile, until none is new.
    while found := [row[0] for row in Ticket.select(Ticket.id)
                    .where(Ticket.id.in_(threads), Ticket.id > last)
                    .order_by(Ticket.id).tuples()]:
        for start in range(0, len(found), BATCH):
            _scrub_threads(actor, user, who, found[start:start + BATCH])
        last = found[-1]
    _scrub_registers(actor, user, who)


def _scrub_threads(actor: Actor, user: User, who: Identifiers, ids: list[int]) -> None:
    """One batch of threads (see ``_step_scrub``): read with only the columns
    the scrub needs, written in bulk in one transaction."""
    comments: dict[int, list[Comment]] = {}
    for comment in (Comment.select(Comment.id, Comment.ticket, Comment.author, Comment.body)
                    .where(is_in(Comment.ticket, ids)).order_by(Comment.id)):
        comments.setdefault(comment.ticket_id, []).append(comment)
    shred: dict[type, list[int]] = {Ticket: [], Comment: []}
    scrubbed: dict[type, list[tuple[object, dict]]] = {Ticket: [], Comment: []}
    for ticket in (Ticket.select(Ticket.id, Ticket.requester, Ticket.subject, Ticket.description)
                   .where(is_in(Ticket.id, ids)).order_by(Ticket.id)):
        thread = [ticket, *comments.get(ticket.id, [])]
        about = ticket.requester_id == user.id or any(
            who.mentions(getattr(row, name)) for row in thread for name in TEXT[type(row)])
        if not about:
            continue  # the index found a part of another word, not them
        for row in thread:
            values = {name: who.scrub(getattr(row, name), about_them=True)
                      for name in TEXT[type(row)]}
            values = {n: v for n, v in values.items() if v != getattr(row, n)}
            if values:
                scrubbed[type(row)].append((row, values))
            shred[type(row)].append(row.id)
    with audit.transaction():
        for model in (Ticket, Comment):
            audit.scrub_many(actor, model, scrubbed[model])
            crypto.destroy_record_keys(model.__name__, shred[model])


# Free text administrators type into the privacy registers.
REGISTER_TEXT = {DataSubjectRequest: ("identity_note", "notes", "extension_reason"),
                 Breach: ("description", "categories", "consequences", "measures")}


def _scrub_registers(actor: Actor, user: User, who: Identifiers) -> None:
    """The registers keep their entries (proof of what was asked and done)
    but not the person in their free text: their own requests' notes lose every
    mention, a breach's text the mentions by full name, address or phone."""
    rows = [(row, True) for row in DataSubjectRequest.select().where(DataSubjectRequest.user == user.id)]
    rows += [(row, False) for row in Breach.select()]
    with audit.transaction():
        for row, theirs in rows:
            values = {name: who.scrub(getattr(row, name) or "", about_them=theirs)
                      for name in REGISTER_TEXT[type(row)]}
            values = {n: v for n, v in values.items() if v != (getattr(row, n) or "")}
            if values:
                audit.update(actor, row, action="scrub", redact=True, **values)


def _step_traces(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Queued and sent mail, pending email changes and outbox files go."""
    terms = _terms(user)
    mail_match = (MailMessage.subject_id == user.id) | (MailMessage.recipient == user.email)
    for term in terms:
        mail_match = mail_match | MailMessage.body.contains(term) | MailMessage.subject.contains(term)
    MailMessage.delete().where(mail_match).execute()
    for change in EmailChangeRequest.select().where(EmailChangeRequest.user == user.id):
        audit.delete(actor, change)
    needles = [t.lower() for t in terms]
    config = current_app.config
    for key, raw in mail.outbox_messages(config):
        text = raw.decode("utf-8", "replace").lower()
        if any(n in text for n in needles) or _encoded_hit(raw, needles):
            mail.remove_from_outbox(config, key)


def _encoded_hit(raw: bytes, needles: list[str]) -> bool:
    """Mail bodies may be base64 or quoted-printable: look at the decoded text."""
    import email
    import email.policy
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [str(message.get("To", "")), str(message.get("Subject", ""))]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    text = "\n".join(parts).lower()
    return any(n in text for n in needles)


def _step_profile(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Every personal field takes the placeholder; sign-in becomes impossible;
    their API tokens (whose names may name them) go."""
    audit.update(actor, user, action="anonymize", name=placeholder(user),
                 email=placeholder_email(user), phone="", mobile="", title="", signature="",
                 language="", timezone="UTC", password_hash=None,
                 session_token=crypto.new_token(24), is_active=False, anonymized_at=utcnow())
    tokens.remove_all(actor, user)
    sessions.end_all(actor, user, sessions.ERASED)


def _step_keys(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Crypto-shredding: their key and the keys of what they wrote."""
    custom_fields.destroy_values_of(actor, user)
    crypto.destroy_subject_key(user.id)
    crypto.destroy_record_keys_of(user.id)


def _step_exports(actor: Actor, req: ErasureRequest, user: User) -> None:
    """Bulk exports hold everyone: delete them (running ones are made again)."""
    bulk_export.discard_for_erasure(actor)


def _compact(request_id: int) -> bool:
    """What the steps deleted or overwrote must not linger in the database
    files either (unused space of live pages, dead rows, the write-ahead log):
    rebuild the store, when it is small enough to do so without holding
    writers up for long. A larger one is rebuilt by the administrator in a
    quiet hour (VACUUM), as the log says.

    It runs after the request is done (its work committed, the person gone
    from every row), as a step of its own: ``compact_pending`` rebuilds once
    for every request waiting for it and records that per request."""
    tables = db.get_tables()
    limit = current_app.config["ERASURE_COMPACT_MAX_MB"] * 1024 * 1024
    if store_size(tables) <= limit:
        compact(tables)
        return True
    else:
        if is_sqlite():
            db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        log.warning("erasure request %s: the database is larger than ERASURE_COMPACT_MAX_MB and "
                    "was not rebuilt; run VACUUM (PostgreSQL: VACUUM FULL) in a quiet hour so "
                    "deleted values leave its files", request_id)
        return False


# The steps that remove the person's data; the request is done when they are.
STEPS = (_step_recycle, _step_files, _step_scrub, _step_traces, _step_profile, _step_keys,
         _step_exports)
# Then the rebuild of the database files, once for every request done meanwhile.
COMPACTED = len(STEPS) + 1


def compact_pending() -> int:
    """Rebuild the database files once for every done request that waits for
    it (a crash between an erasure's commit and its rebuild leaves it waiting;
    the purge anonymizes several people and rebuilds once). Each request
    records it ("compact", and its step). Returns how many requests."""
    waiting = list(ErasureRequest.select().where(ErasureRequest.status == DONE,
                                                 ErasureRequest.step == len(STEPS))
                   .order_by(ErasureRequest.id))
    if not waiting:
        return 0
    rebuilt = _compact(waiting[-1].id)
    done = 0
    with audit.transaction():
        for req in waiting:
            req = ErasureRequest.get_by_id(req.id)  # another process may have recorded it meanwhile
            if req.step != len(STEPS):
                continue
            actor = Actor(req.approved_by, "")
            audit.update(actor, req, step=COMPACTED)
            audit.record(actor, "compact", "User", req.user_id,
                         details={"request": req.id, "rebuilt": rebuilt})
            done += 1
    return done


def run(request_id: int, rebuild: bool = True) -> ErasureRequest:
    """Run (or resume) the steps of a request; each completed step is saved.
    The request is done when its data is gone (committed); then, unless
    ``rebuild`` is False (the caller rebuilds later, once for several), the
    database files are rebuilt right away (``compact_pending``)."""
    req = ErasureRequest.get_by_id(request_id)
    actor = Actor(req.approved_by, "")
    user = User.get_by_id(req.user_id)
    while req.status == RUNNING:
        if req.step < len(STEPS):  # (a request left at the end by an older version: just done)
            STEPS[req.step](actor, req, user)
        user = User.get_by_id(req.user_id)
        with audit.transaction():
            if req.step + 1 < len(STEPS):
                audit.update(actor, req, step=req.step + 1)
            else:
                audit.update(actor, req, step=len(STEPS), status=DONE, finished_at=utcnow())
                audit.record(actor, "erase", "User", user.id,
                             details={"mode": req.mode, "request": req.id})
                subject_requests.settle(actor, erasure_request_id=req.id)
    if rebuild and req.status == DONE and req.step == len(STEPS):
        compact_pending()
        req = ErasureRequest.get_by_id(request_id)
    return req
