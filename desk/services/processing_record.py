"""The record of processing activities (GDPR Art. 30), generated from what
desk actually holds: the personal fields of its models (each named by one
activity below; tests/test_processing_record.py fails when a model gains a
personal field no activity names), the custom fields defined, the retention
setting, the mail server and file store in use, the hosting region, and the
controller's details and purposes an administrator writes (settings).

The public privacy page takes the controller, data protection officer,
purposes and processors from here too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from desk import audit
from desk import policy
from desk.audit import Actor
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models import ALL_MODELS
from desk.models import CustomField
from desk.models import User
from desk.services import mail_settings
from desk.services import retention
from desk.services import settings
from desk.services.csv_export import Column
from desk.services.csv_export import write_csv

SETTING = "processing_record"
EDITABLE = ("controller_name", "controller_contact", "dpo_name", "dpo_contact", "purposes",
            "processors")
TEXT_MAX = 5000
# Columns holding personal data although their model marks no field as such:
# how a reader recognises them by name.
PERSONAL_NAMES = re.compile(r"(^|_)(email|phone|mobile|ip|user_agent|recipient|body|subject)($|_)")


@dataclass(frozen=True)
class Activity:
    """One processing activity: why, about whom, what, and the model fields
    ("Model.field") that hold it."""

    key: str
    purpose: object
    people: object
    data: object
    fields: tuple[str, ...]
    legal_basis: object


ACTIVITIES = (
    Activity("accounts", _l("Running the accounts of customers and staff, and signing them in"),
             _l("End users (customers) and agents (staff)"),
             _l("Name, email address, phone numbers, job title, signature, time zone and language"),
             ("User.name", "User.email", "User.phone", "User.mobile", "User.title", "User.signature",
              "User.timezone", "User.language"),
             _l("Contract (Art. 6(1)(b)); for staff, the employment relationship")),
    Activity("support", _l("Answering customers' requests"),
             _l("End users who ask for help, the agents who answer, anyone the conversation mentions"),
             _l("Ticket subjects and descriptions, conversations, attached files and their names, "
                "custom field values (some encrypted)"),
             ("Ticket.subject", "Ticket.description", "Ticket.requester", "Ticket.assignee",
              "Comment.body", "Comment.author", "Attachment.filename", "Attachment.uploader",
              "TicketFieldValue.value", "ContactFieldValue.value", "ContactFieldValue.user",
              "SubmittedForm.user"),
             _l("Contract (Art. 6(1)(b)) and legitimate interest in answering (Art. 6(1)(f))")),
    Activity("mail", _l("Telling people about their requests and accounts by email"),
             _l("End users and agents"), _l("Email address, the message's subject and text"),
             ("MailMessage.recipient", "MailMessage.subject", "MailMessage.body", "MailMessage.subject_id"),
             _l("Contract (Art. 6(1)(b))")),
    Activity("security", _l("Keeping the help center secure and accountable"),
             _l("Everyone who signs in or uses an API token"),
             _l("IP addresses, browser descriptions, sign-in sessions, API token names and use, "
                "the audit log of who did what"),
             ("AuditEntry.ip", "BrowserSession.user", "BrowserSession.ip", "BrowserSession.user_agent",
              "ApiToken.name", "ApiToken.user", "ApiTokenUse.last_used_ip", "AuditEntry.subject_id",
              "SubjectKey.subject_id", "RecordKey.owner_subject_id"),
             _l("Legitimate interest in security (Art. 6(1)(f)) and Art. 32")),
    Activity("team", _l("Organizing the support team"), _l("Agents"), _l("Department membership"),
             ("AgentDepartment.agent",), _l("The employment relationship")),
    Activity("rights", _l("Handling requests about personal data and personal data breaches"),
             _l("People who exercise their rights; people a breach affects"),
             _l("Email change requests, erasure requests, the register of requests with identity "
                "checks and notes, breach descriptions, which privacy notice each person accepted"),
             ("EmailChangeRequest.user", "EmailChangeRequest.new_email", "EmailChangeRequest.reason",
              "ErasureRequest.user", "DataSubjectRequest.user", "NoticeConsent.user", "DataSubjectRequest.identity_note",
              "DataSubjectRequest.notes", "DataSubjectRequest.extension_reason",
              "Breach.description", "Breach.categories", "Breach.consequences", "Breach.measures"),
             _l("Legal obligation (Art. 6(1)(c); Art. 12-22 and 33-34)")),
)

SECURITY_MEASURES = (
    _l("Passwords stored only as memory-hard (argon2id) hashes; API tokens only as hashes"),
    _l("Encrypted custom fields sealed with AES-256-GCM, bound to their record; keys outside the "
       "database, rotated online"),
    _l("Personal values in the audit log sealed under a key of each person's own, destroyed when "
       "they are erased (crypto-shredding)"),
    _l("A keyed hash chain over the audit log, verified daily"),
    _l("Roles, sharing scopes and field-level permissions on every page, export and the API"),
    _l("HTTPS with TLS 1.2 or later, HSTS and secure cookies when desk serves HTTPS itself"),
)


def personal_fields(models=None) -> set[str]:
    """Every model field that holds personal data: those the models mark as
    personal or free text, those named like an address, and links to a person."""
    found = set()
    for model in models or ALL_MODELS:
        marked = set(model.personal_fields) | set(model.text_fields)
        for name, field in model._meta.fields.items():
            links_person = getattr(field, "rel_model", None) is User
            by_name = PERSONAL_NAMES.search(name) and (not name.endswith("_id") or "subject" in name)
            if name in marked or by_name or links_person:
                found.add(f"{model.__name__}.{name}")
    return found


def named_fields() -> set[str]:
    return {f for activity in ACTIVITIES for f in activity.fields}


def details() -> dict[str, str]:
    """The controller's details, purposes and processors an administrator wrote."""
    stored = settings.get(SETTING) or {}
    return {key: stored.get(key, "") for key in EDITABLE}


def save_details(admin: User, values: dict, ip: str = "") -> None:
    """Write the controller's details, purposes and processors."""
    policy.require(admin, "privacy:edit")
    cleaned = {}
    for key in EDITABLE:
        text = (values.get(key) or "").strip()
        if len(text) > TEXT_MAX:
            raise InvalidInput(_l("A text is too long (at most %(max)d characters).", max=TEXT_MAX))
        cleaned[key] = text
    settings.put(Actor.of(admin, ip), SETTING, cleaned)


def processors(config: dict) -> list[str]:
    """Who else handles the data for the controller: the mail server and the
    file store when they are another party's, and those the administrator named."""
    found = []
    host = mail_settings.effective(config).get("SMTP_HOST")
    if host:
        found.append(str(_l("Mail server %(host)s (sends notifications)", host=host)))
    if str(config.get("STORAGE_URL", "")).startswith("s3://"):
        found.append(str(_l("Object store %(url)s (keeps attachments, encrypted)",
                            url=config["STORAGE_URL"].split("?")[0])))
    extra = details()["processors"]
    found.extend(line.strip() for line in extra.splitlines() if line.strip())
    return found


def custom_fields() -> list[CustomField]:
    return list(CustomField.select().where(CustomField.deleted_at.is_null())
                .order_by(CustomField.module, CustomField.position, CustomField.id))


def record(user: User, config: dict) -> dict:
    """The whole record, as the page and the CSV show it."""
    policy.require(user, "privacy:view")
    return public_record(config) | {"activities": ACTIVITIES, "custom_fields": custom_fields(),
                                    "security": SECURITY_MEASURES}


def public_record(config: dict) -> dict:
    """What the public privacy page says: controller, DPO, purposes, processors,
    region and retention."""
    written = details()
    return {"details": written, "processors": processors(config), "region": config.get("REGION", ""),
            "retention_days": retention.days(),
            "purposes": [line.strip() for line in written["purposes"].splitlines() if line.strip()]
            or [str(a.purpose) for a in ACTIVITIES]}


def record_csv(user: User, config: dict, ip: str = "") -> Iterator[bytes]:
    """The record as CSV (section, item, detail), audited."""
    policy.require(user, "privacy:export")
    rec = record(user, config)
    rows = list(_rows(rec))
    audit.record(Actor.of(user, ip), "export", "Export", "processing_record",
                 details={"module": "processing_record", "rows": len(rows), "format": "csv"})
    columns = [Column("section", _l("Section")), Column("item", _l("Item")), Column("detail", _l("Detail"))]
    return write_csv(columns, rows)


def _rows(rec: dict) -> Iterator[list]:
    d = rec["details"]
    yield ["controller", str(_l("Controller")), f"{d['controller_name']} {d['controller_contact']}".strip()]
    yield ["dpo", str(_l("Data protection officer")), f"{d['dpo_name']} {d['dpo_contact']}".strip()]
    for a in rec["activities"]:
        yield ["activity", str(a.purpose), "; ".join([str(a.people), str(a.data), str(a.legal_basis),
                                                      ", ".join(a.fields)])]
    for f in rec["custom_fields"]:
        yield ["custom_field", f"{f.module}: {f.label}", "encrypted" if f.encrypted else "clear"]
    yield ["retention", str(_l("Recycle bin")), str(_l("%(days)d days, then purged", days=rec["retention_days"]))]
    for p in rec["processors"]:
        yield ["processor", p, ""]
    yield ["region", str(_l("Hosting region")), rec["region"]]
    for m in rec["security"]:
        yield ["security", str(m), ""]
