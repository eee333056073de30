"""Translated labels for stored codes (statuses, priorities), for forms and pages."""
from flask_babel import lazy_gettext as _l

STATUS_LABELS = {"open": _l("Open"), "on_hold": _l("On hold"), "closed": _l("Closed")}
PRIORITY_LABELS = {"low": _l("Low"), "normal": _l("Normal"), "high": _l("High"), "urgent": _l("Urgent")}
