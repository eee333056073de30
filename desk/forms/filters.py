"""List filters read from a query string (the list pages and their CSV
exports read them the same way). Unknown values are dropped, not refused:
a stale bookmark still opens its list."""
from __future__ import annotations

import re

from desk.models.tickets import PRIORITIES
from desk.models.tickets import STATUSES
from desk.services.listing import TICKET_SORTS
from desk.services.listing import TicketFilters
from desk.services.listing import search_text

MAX_ID = 2**31 - 1
TICKET_ARGS = ("status", "priority", "department", "assignee", "requester", "q", "sort", "view")


def id_arg(raw: str) -> int | None:
    """A database id from a query argument, or None for anything else."""
    if re.fullmatch(r"[0-9]{1,10}", raw or "") and 0 < int(raw) <= MAX_ID:
        return int(raw)
    return None


def ticket_filters(args) -> TicketFilters:
    """The ticket list's filters from request args."""
    chosen = any(args.get(k) for k in ("status", "priority", "department", "assignee", "requester", "q"))
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
    )


def ticket_args(args) -> dict[str, str]:
    """The ticket list arguments to carry over to pagination and the export link."""
    return {k: v for k, v in args.items() if k in TICKET_ARGS}


def search_arg(args) -> str:
    """The words of a list's search box (``q``)."""
    return search_text(args.get("q", ""))
