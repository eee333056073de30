"""CSV exports of one module, with the filters of its list page."""
import datetime as dt

from flask import Blueprint
from flask import Response
from flask import request
from flask import stream_with_context
from flask_login import current_user

from desk.errors import InvalidInput
from desk.forms import filters as filters_from
from desk.i18n import lazy_gettext as _l
from desk.services import listing
from desk.services import module_export
from desk.web.guards import agent_required
from desk.web.guards import client_ip

bp = Blueprint("exports", __name__, url_prefix="/agent/export")
MODULES = "tickets, comments, contacts, agents, departments, audit"


def _filters(module: str, args):
    """The module's filters, read as its list page reads them; values a list
    would drop are refused here (400)."""
    if module in ("tickets", "comments"):
        filters_from.check_ticket_args(args)
        filters = filters_from.ticket_filters(args)
        unknown = listing.unknown_custom_filters(current_user, filters)
        if unknown:
            raise InvalidInput(_l("Unknown filter values: %(names)s.", names=", ".join(unknown)))
        return filters
    if module in ("contacts", "agents"):
        bad = [k for k in args if (k == "q" or k.startswith("cf_")) and len(args[k]) > 200]
        filters = filters_from.people_filters(args)
        bad += listing.unknown_custom_filters(current_user, filters, module)
        if bad:
            raise InvalidInput(_l("Unknown filter values: %(names)s.", names=", ".join(bad)))
        return filters
    if module == "audit":
        return filters_from.audit_filters(args, strict=True)
    return None


def _header_keys(args) -> bool:
    header = args.get("header", "labels")
    if header not in ("labels", "keys"):
        raise InvalidInput(_l("Use header=labels or header=keys."))
    return header == "keys"


@bp.route(f"/<any({MODULES}):module>.csv")
@agent_required
def module_csv(module: str):
    """Download one module as CSV (UTF-8 with BOM), streamed."""
    keys = _header_keys(request.args)
    stream = module_export.export_csv(current_user, module, _filters(module, request.args),
                                      keys=keys, ip=client_ip())
    name = f"{module}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(stream), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})
