"""Audit entries as plain sentences in the reader's language ("Alice changed
Priority from Low to High on ticket #12"): the one table from every action
desk records to its sentence, and the field-level old -> new lines.

It reads the facts desk.services.audit_log hands it (EntryView) and never the
database. tests/test_audit_log.py walks every action the code records and
fails on one this table does not know.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from flask_babel import format_decimal

from desk import audit
from desk import crypto
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l
from desk.web.labels import FIELD_LABELS
from desk.web.labels import MODULE_LABELS
from desk.web.labels import PRIORITY_LABELS
from desk.web.labels import STATUS_LABELS

EMPTY = "—"
MORE_FIELD_LABELS = {
    "deleted_at": _l("Deleted"), "deleted_by": _l("Deleted by"), "is_public": _l("Public"),
    "body": _l("Text"), "filename": _l("File name"), "password_hash": _l("Password"),
    "session_token": _l("Sessions"), "signature": _l("Signature"), "is_active": _l("Active"),
    "role": _l("Role"), "is_private": _l("Private"), "permissions": _l("Permissions"),
    "field_permissions": _l("Field permissions"), "ticket_scope": _l("Ticket scope"),
    "value": _l("Value"), "label": _l("Label"), "new_email": _l("New email address"),
    "reason": _l("Reason"), "anonymized_at": _l("Anonymized"), "kind": _l("Kind"),
}
# Exports of registers (modules are named by MODULE_LABELS).
EXPORT_LABELS = {"data_subject_requests": _l("data subject requests"),
                 "processing_record": _l("lines of the record of processing")}
# Values that stand for something not shown.
MASKS = {audit.SECRET: _l("(not shown)"), audit.SCRUBBED: _l("(scrubbed)"),
         audit.WITHHELD: _l("[withheld]"), crypto.ERASED: _l("[erased]")}


# -- naming the record an entry is about ------------------------------------------

def _user_record(r: dict) -> str:
    name = r.get("name") or f"#{r['id']}"
    if r.get("kind") == "agent":
        return _("agent %(name)s", name=name)
    if r.get("kind") == "end_user":
        return _("contact %(name)s", name=name)
    return _("person %(name)s", name=name)


def _custom_value_record(r: dict) -> str:
    owner = r.get("owner")
    if r["type"] == "TicketFieldValue":
        return _("%(field)s on ticket #%(id)s", field=r.get("field") or "?", id=owner or "?")
    return _("%(field)s of contact #%(id)s", field=r.get("field") or "?", id=owner or "?")


RECORDS: dict[str, Callable[[dict], str]] = {
    "Ticket": lambda r: _("ticket #%(id)s", id=r["id"]),
    "Comment": lambda r: _("comment #%(id)s", id=r["id"]),
    "Attachment": lambda r: _("attachment #%(id)s", id=r["id"]),
    "User": _user_record,
    "Department": lambda r: _("department %(name)s", name=r.get("name") or f"#{r['id']}"),
    "Role": lambda r: _("role %(name)s", name=r.get("name") or f"#{r['id']}"),
    "AgentDepartment": lambda r: _("department membership %(id)s", id=r["id"]),
    "Setting": lambda r: _("setting “%(name)s”", name=r["id"]),
    "StoredSecret": lambda r: _("stored secret “%(name)s”", name=r["id"]),
    "CustomField": lambda r: _("custom field %(name)s", name=r.get("name") or f"#{r['id']}"),
    "TicketFieldValue": _custom_value_record,
    "ContactFieldValue": _custom_value_record,
    "EmailChangeRequest": lambda r: _("email change request #%(id)s", id=r["id"]),
    "ErasureRequest": lambda r: _("erasure request #%(id)s", id=r["id"]),
    "ApiToken": lambda r: _("API token #%(id)s", id=r["id"]),
    "BulkExport": lambda r: _("bulk export #%(id)s", id=r["id"]) if r["id"] else _("a bulk export"),
    "KeyRotation": lambda r: _("key rotation #%(id)s", id=r["id"]),
    "Export": lambda r: _("export of %(module)s", module=MODULE_LABELS.get(r["id"], r["id"])),
    "region": lambda r: _("region %(name)s", name=r["id"]),
    "DataSubjectRequest": lambda r: _("data subject request #%(id)s", id=r["id"]),
    "Breach": lambda r: _("breach #%(id)s", id=r["id"]),
    "PrivacyNotice": lambda r: _("privacy notice record #%(id)s", id=r["id"]),
    "NoticeConsent": lambda r: _("privacy notice acceptance #%(id)s", id=r["id"]),
}


def record_name(view) -> str:
    """The record an entry is about, as a reader names it ("ticket #12")."""
    r = view.record
    if not r.get("id") and r["type"] not in ("BulkExport",):
        return _("a record")
    namer = RECORDS.get(r["type"])
    return namer(r) if namer else f"{r['type']} #{r['id']}"


# -- values -----------------------------------------------------------------------

def field_label(view, key: str) -> str:
    if view.record["type"] in ("TicketFieldValue", "ContactFieldValue") and key in ("value", "sealed"):
        return view.record.get("field") or str(MORE_FIELD_LABELS["value"])
    label = FIELD_LABELS.get(key) or MORE_FIELD_LABELS.get(key)
    return str(label) if label else key.replace("_", " ").capitalize()


def value_text(view, key: str, value: Any) -> str:
    """One stored value as a reader reads it."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, str) and value in MASKS:
        return str(MASKS[value])
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if key == "status":
        return str(STATUS_LABELS.get(value, value))
    if key == "priority":
        return str(PRIORITY_LABELS.get(value, value))
    if key in ("assignee", "requester", "user", "agent", "author", "uploader", "deleted_by") \
            and isinstance(value, int):
        return view.names.get("User", {}).get(value) or f"#{value}"
    if key == "department" and isinstance(value, int):
        return view.names.get("Department", {}).get(value) or f"#{value}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _hidden_value(view, key: str, pair) -> bool:
    """Encrypted custom field values are never shown, only that they changed."""
    if view.record.get("encrypted") and key in ("value", "sealed"):
        return True
    return isinstance(pair, list) and all(v == audit.SECRET for v in pair if v is not None)


def change_lines(view) -> list[str]:
    """Field-level lines: "Priority: Low → High" ("Card number: changed
    (encrypted, not shown)" for values never shown)."""
    if view.action in NO_CHANGE_LINES:
        return []
    lines = []
    for key, pair in sorted(view.changes.items()):
        if key.startswith("_") or not isinstance(pair, list) or len(pair) != 2:
            continue
        label = field_label(view, key)
        if _hidden_value(view, key, pair):
            lines.append(_("%(field)s: changed (not shown)", field=label))
        elif view.action == "create":
            lines.append(_("%(field)s: %(value)s", field=label, value=value_text(view, key, pair[1])))
        else:
            lines.append(_("%(field)s: %(old)s → %(new)s", field=label,
                           old=value_text(view, key, pair[0]), new=value_text(view, key, pair[1])))
    return lines


# -- sentences, one per recorded action ----------------------------------------------

def _who(view) -> str:
    return view.actor or _("The system")


def _detail(view, key: str, default: Any = "") -> Any:
    value = view.changes.get(key, default)
    return default if isinstance(value, str) and value in MASKS else value


def _changed(view) -> str:
    fields = [k for k, v in view.changes.items() if isinstance(v, list) and not k.startswith("_")]
    if len(fields) == 1:
        key = fields[0]
        pair = view.changes[key]
        if _hidden_value(view, key, pair):
            return _("%(actor)s changed %(field)s on %(record)s (the value is not shown)",
                     actor=_who(view), field=field_label(view, key), record=record_name(view))
        return _("%(actor)s changed %(field)s from %(old)s to %(new)s on %(record)s",
                 actor=_who(view), field=field_label(view, key), old=value_text(view, key, pair[0]),
                 new=value_text(view, key, pair[1]), record=record_name(view))
    return _("%(actor)s changed %(record)s", actor=_who(view), record=record_name(view))


def _deleted(view) -> str:
    if "deleted_at" in view.changes and view.changes["deleted_at"][1] is not None:
        return _("%(actor)s moved %(record)s to the recycle bin", actor=_who(view), record=record_name(view))
    return _("%(actor)s deleted %(record)s", actor=_who(view), record=record_name(view))


def _purged(view) -> str:
    if view.entry.actor_id is None:
        return _("The purge removed %(record)s", record=record_name(view))
    return _("%(actor)s deleted %(record)s permanently", actor=_who(view), record=record_name(view))


def _exported(view) -> str:
    kind = view.record["type"]
    if kind == "Export":
        rows = _detail(view, "rows", 0)
        module = _detail(view, "module", view.record["id"])
        label = EXPORT_LABELS.get(module) or MODULE_LABELS.get(module, module)
        return _("%(actor)s exported %(count)s %(module)s", actor=_who(view),
                 count=format_decimal(rows if isinstance(rows, int) else 0),
                 module=str(label).lower())
    if kind == "User":
        return _("%(actor)s downloaded all personal data of %(record)s", actor=_who(view),
                 record=record_name(view))
    if _detail(view, "kind") == "command":
        return _("A bulk export of everything was made from the command line")
    return _("%(actor)s started a bulk export of everything", actor=_who(view))


def _login_failed(view) -> str:
    reason = _detail(view, "reason")
    if not view.record.get("id"):
        if reason == "address_throttled":
            return _("Sign-ins from one address were throttled after many failures")
        return _("A sign-in with an unknown email address failed")
    if reason == "throttled":
        return _("A sign-in as %(record)s was refused after too many failures", record=record_name(view))
    return _("A sign-in as %(record)s failed (wrong password)", record=record_name(view))


def _region(template) -> Callable:
    """``template``: a lazy (marked, untranslated until read) message."""
    return lambda view: str(template) % {"actor": _who(view), "name": view.record["id"],
                                         "source": _detail(view, "from", EMPTY)}


def _compacted(view) -> str:
    if _detail(view, "rebuilt", True) is False:
        return _("The database files were not rebuilt after erasing %(record)s (larger than the "
                 "limit): run VACUUM in a quiet hour", record=record_name(view))
    return _("%(actor)s rebuilt the database files so that nothing erased of %(record)s lingers "
             "in them", actor=_who(view), record=record_name(view))


def _simple(template) -> Callable:
    return lambda view: str(template) % {"actor": _who(view), "record": record_name(view)}


SENTENCES: dict[str, Callable[[Any], str]] = {
    "create": _simple(_l("%(actor)s created %(record)s")),
    "update": _changed,
    "delete": _deleted,
    "restore": _simple(_l("%(actor)s restored %(record)s from the recycle bin")),
    "purge": _purged,
    "scrub": _simple(_l("%(actor)s scrubbed personal data from %(record)s")),
    "anonymize": _simple(_l("%(actor)s anonymized %(record)s")),
    "erase": _simple(_l("%(actor)s finished erasing the personal data of %(record)s")),
    "compact": _compacted,
    "revoke": _simple(_l("%(actor)s revoked %(record)s")),
    "remind": lambda v: (_simple(_l("%(actor)s reminded the administrators that %(record)s is not yet reported "
                                     "to the authority"))(v) if v.record["type"] == "Breach" else
                         _simple(_l("%(actor)s sent a reminder that %(record)s expires soon"))(v)),
    "encrypt": _simple(_l("%(actor)s encrypted %(record)s")),
    "rekey": lambda v: _("%(actor)s re-encrypted %(count)s rows of %(kind)s under the new key",
                         actor=_who(v), count=format_decimal(_detail(v, "rows", 0) or 0),
                         kind=v.record["type"]),
    "reveal": lambda v: _("%(actor)s revealed the encrypted value of %(field)s on %(record)s",
                          actor=_who(v), field=str(_detail(v, "field", "?")), record=record_name(v)),
    "export": _exported,
    "download": _simple(_l("%(actor)s downloaded %(record)s")),
    "expire": _simple(_l("%(actor)s deleted %(record)s, which had expired")),
    "login": _simple(_l("%(actor)s signed in")),
    "logout": _simple(_l("%(actor)s signed out")),
    "session_end": _simple(_l("%(actor)s signed out one of the browsers of %(record)s")),
    "sessions_end": _simple(_l("%(actor)s signed %(record)s out of every browser")),
    "login_failed": _login_failed,
    "signup": _simple(_l("%(actor)s signed up")),
    "test_mail": _simple(_l("%(actor)s sent a test mail")),
    "token_used_new_address": _simple(_l("%(record)s was used from a new address")),
    "keys-rotate-start": _simple(_l("%(actor)s started %(record)s")),
    "keys-rotate-done": _simple(_l("%(actor)s finished %(record)s")),
    "keys-rotate-pass": _simple(_l("%(actor)s finished a pass of %(record)s (old keys still in use)")),
    "region.move_requested": _region(_l("%(actor)s asked to move the help center to region %(name)s")),
    "region.move_started": _region(_l("%(actor)s started moving the help center from region %(source)s to region %(name)s")),
    "region.moved": _region(_l("The help center moved from region %(source)s to region %(name)s")),
    "region.rollback_started": _region(_l("%(actor)s started moving the help center back to region %(name)s")),
    "region.wiped": _region(_l("%(actor)s wiped the old copy in region %(name)s")),
}
# Events whose details are not field changes.
NO_CHANGE_LINES = {"export", "download", "expire", "login", "logout", "session_end", "sessions_end",
                   "login_failed", "signup",
                   "test_mail", "token_used_new_address", "keys-rotate-start", "keys-rotate-done",
                   "keys-rotate-pass", "rekey", "reveal", "erase", "purge"} | {
    a for a in SENTENCES if a.startswith("region.")}


class UnknownAction(KeyError):
    """An action no sentence describes (a test keeps this from happening)."""


def sentence(view) -> str:
    """The entry as one sentence in the reader's language."""
    try:
        describe = SENTENCES[view.action]
    except KeyError:
        raise UnknownAction(view.action) from None
    return describe(view)


def safe_sentence(view) -> str:
    """For the page: an action this version does not know (written by a newer
    one) still shows, by its code, rather than breaking the page."""
    try:
        return sentence(view)
    except UnknownAction:
        return _("%(actor)s: %(action)s on %(record)s", actor=_who(view), action=view.action,
                 record=record_name(view))
