"""List filters read from a query string (the list pages and their CSV
exports read them the same way). Unknown values are dropped, not refused:
a stale bookmark still opens its list."""
from __future__ import annotations

import datetime as dt
import re

from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.models.tickets import PRIORITIES
from desk.models.tickets import STATUSES
from desk.services.listing import AUDIT_RECORD_TYPES
from desk.services.listing import TICKET_SORTS
from desk.services.listing import AuditFilters
from desk.services.listing import PeopleFilters
from desk.services.listing import TicketFilters
from desk.services.listing import search_text

MAX_ID = 2**31 - 1
TICKET_ARGS = ("status", "priority", "department", "assignee", "requester", "q", "sort", "view")


def id_arg(raw: str) -> int | None:
    """A database id from a query argument, or None for anything else."""
    if re.fullmatch(r"[0-9]{1,10}", raw or "") and 0 < int(raw) <= MAX_ID:
        return int(raw)
    return None


CUSTOM_ARG = re.compile(r"cf_([a-z][a-z0-9_]{0,39})")


def custom_filters(args) -> tuple[tuple[str, str], ...]:
    """``cf_<key>=value`` pairs (custom field filters), by key."""
    pairs = {}
    for name, value in args.items():
        match = CUSTOM_ARG.fullmatch(name)
        if match and search_text(value):
            pairs[match.group(1)] = search_text(value)
    return tuple(sorted(pairs.items()))


def picked_columns(args) -> tuple[str, ...]:
    """The custom field keys picked as extra list columns (``col=<key>``, repeated)."""
    picked = args.getlist("col") if hasattr(args, "getlist") else [args.get("col", "")]
    return tuple(dict.fromkeys(k for k in picked if k and CUSTOM_ARG.fullmatch(f"cf_{k}")))[:20]


def ticket_filters(args) -> TicketFilters:
    """The ticket list's filters from request args."""
    custom = custom_filters(args)
    chosen = custom or any(args.get(k) for k in ("status", "priority", "department", "assignee",
                                                 "requester", "q"))
    assignee = args.get("assignee", "")
    return TicketFilters(
        status=args.get("status", "") if args.get("status") in STATUSES else "",
        priority=args.get("priority", "") if args.get("priority") in PRIORITIES else "",
        department=id_arg(args.get("department", "")),
        assignee=assignee if assignee in ("me", "none") or id_arg(assignee) else "",
        requester=search_text(args.get("requester", "")),
        q=search_text(args.get("q", "")),
        sort=args.get("sort", "updated") if args.get("sort") in TICKET_SORTS else "updated",
        default_view=not chosen and args.get("view") != "all",
        custom=custom,
        columns=picked_columns(args),
    )


def ticket_args(args) -> dict:
    """The ticket list arguments to carry over to pagination and the export link
    (the filters, custom field filters, and the picked columns)."""
    kept = {k: v for k, v in args.items() if k in TICKET_ARGS or CUSTOM_ARG.fullmatch(k)}
    columns = picked_columns(args)
    if columns:
        kept["col"] = list(columns)
    return kept


def people_filters(args) -> PeopleFilters:
    """The contacts and agents lists' filters from request args."""
    return PeopleFilters(q=search_text(args.get("q", "")), custom=custom_filters(args),
                         columns=picked_columns(args))


def people_args(args) -> dict:
    """The people list arguments to carry over to pagination and the export link."""
    kept = {k: v for k, v in args.items() if (k == "q" or CUSTOM_ARG.fullmatch(k)) and v}
    columns = picked_columns(args)
    if columns:
        kept["col"] = list(columns)
    return kept


def search_arg(args) -> str:
    """The words of a list's search box (``q``)."""
    return search_text(args.get("q", ""))


def check_ticket_args(args) -> None:
    """Refuse (InvalidInput) ticket filter values a list would silently drop:
    an export must not quietly hold other rows than asked for."""
    choices = {"status": STATUSES, "priority": PRIORITIES, "sort": tuple(TICKET_SORTS),
               "view": ("all",)}
    bad = [k for k, allowed in choices.items() if args.get(k) and args.get(k) not in allowed]
    if args.get("department") and id_arg(args["department"]) is None:
        bad.append("department")
    assignee = args.get("assignee")
    if assignee and assignee not in ("me", "none") and id_arg(assignee) is None:
        bad.append("assignee")
    for name in ("q", "requester", *[k for k in args if CUSTOM_ARG.fullmatch(k)]):
        if len(args.get(name, "")) > 200:
            bad.append(name)
    if bad:
        raise InvalidInput(_l("Unknown filter values: %(names)s.", names=", ".join(sorted(bad))))


AUDIT_ARGS = ("record", "actor", "subject", "action", "since", "until")


def audit_args(args) -> dict[str, str]:
    """The audit filters set in ``args``, to carry over to pages and the export link."""
    return {k: v for k, v in args.items() if k in AUDIT_ARGS and v}


def _date(raw: str, name: str, bad: list[str]):
    if not raw:
        return None
    try:
        return dt.datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        bad.append(name)
        return None


def audit_filters(args, strict: bool = False) -> AuditFilters:
    """The audit log's filters from request args. ``until`` is a whole day
    (entries up to its end). With ``strict``, bad values are refused
    (InvalidInput) instead of dropped."""
    bad: list[str] = []
    record_type = record_id = ""
    record = args.get("record", "")
    if record:
        kind, _, rid = record.partition(":")
        if kind.lower() in AUDIT_RECORD_TYPES and (not rid or id_arg(rid)):
            record_type, record_id = AUDIT_RECORD_TYPES[kind.lower()], rid
        else:
            bad.append("record")
    people = {}
    for name in ("actor", "subject"):
        people[name] = id_arg(args.get(name, ""))
        if args.get(name) and people[name] is None:
            bad.append(name)
    action = args.get("action", "")
    if action and not re.fullmatch(r"[a-z][a-z_.\-]{0,39}", action):
        bad.append("action")
        action = ""
    since = _date(args.get("since", ""), "since", bad)
    until = _date(args.get("until", ""), "until", bad)
    if strict and bad:
        raise InvalidInput(_l("Unknown filter values: %(names)s.", names=", ".join(sorted(bad))))
    return AuditFilters(record_type=record_type, record_id=record_id, actor=people["actor"],
                        subject=people["subject"], action=action, since=since,
                        until=until + dt.timedelta(days=1) if until else None)
