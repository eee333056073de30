"""Translated labels for stored codes (statuses, priorities, permissions,
fields, built-in role names), for forms and pages."""
from flask_babel import format_decimal
from flask_babel import ngettext

from desk.i18n import lazy_gettext as _l

STATUS_LABELS = {"open": _l("Open"), "on_hold": _l("On hold"), "closed": _l("Closed")}
PRIORITY_LABELS = {"low": _l("Low"), "normal": _l("Normal"), "high": _l("High"), "urgent": _l("Urgent")}
MODULE_LABELS = {
    "tickets": _l("Tickets"), "comments": _l("Comments"), "contacts": _l("Contacts"),
    "agents": _l("Agents"), "departments": _l("Departments"), "recycle_bin": _l("Recycle bin"),
    "audit": _l("Audit log"), "exports": _l("Exports"), "settings": _l("Settings"),
    "privacy": _l("Privacy center"),
}
ACTION_LABELS = {
    "view": _l("View"), "create": _l("Create"), "edit": _l("Edit"), "delete": _l("Delete"),
    "restore": _l("Restore"), "export": _l("Export"), "reveal": _l("Reveal encrypted"),
    "manage": _l("Manage"),
}
FIELD_LABELS = {
    "subject": _l("Subject"), "description": _l("Description"), "status": _l("Status"),
    "priority": _l("Priority"), "department": _l("Department"), "assignee": _l("Assignee"),
    "requester": _l("Requester"), "name": _l("Name"), "email": _l("Email"), "phone": _l("Phone"),
    "mobile": _l("Mobile"), "title": _l("Job title"), "timezone": _l("Time zone"),
    "language": _l("Language"),
}
FIELD_TYPE_LABELS = {
    "text": _l("Text"), "long_text": _l("Long text"), "number": _l("Number"), "date": _l("Date"),
    "choice": _l("Choice list"), "checkbox": _l("Checkbox"), "email": _l("Email address"),
    "phone": _l("Phone number"), "card": _l("Card number"),
}
LEVEL_LABELS = {"edit": _l("Editable"), "read": _l("Read-only"), "hidden": _l("Hidden")}
SCOPE_LABELS = {"all": _l("All tickets"), "departments": _l("Tickets of their departments"),
                "assigned": _l("Tickets assigned to them")}
BUILTIN_ROLE_LABELS = {"Administrator": _l("Administrator"), "Agent": _l("Agent"),
                       "Light Agent": _l("Light Agent")}
REQUEST_STATUS_LABELS = {"requested": _l("Waiting for an administrator"), "running": _l("Running"),
                         "done": _l("Done"), "rejected": _l("Rejected")}

BULK_STATUS_LABELS = {"queued": _l("Waiting to start"), "running": _l("Running"), "done": _l("Ready"),
                      "failed": _l("Failed"), "expired": _l("Expired and deleted"),
                      "deleted": _l("Deleted (a person was erased)")}


def role_label(role) -> str:
    """A role's name as shown: built-in roles in the reader's language."""
    if role is None:
        return "—"
    return str(BUILTIN_ROLE_LABELS.get(role.name, role.name)) if role.builtin else role.name


def file_size(size: int) -> str:
    """A file size for people: "512 bytes", "1.5 KB", "2.3 MB" (never "0.0 KB")."""
    if size < 1024:
        return ngettext("%(num)d byte", "%(num)d bytes", size)
    if size < 1024 * 1024:
        return f"{format_decimal(size / 1024, '#,##0.#')} KB"
    return f"{format_decimal(size / 1024 / 1024, '#,##0.#')} MB"
