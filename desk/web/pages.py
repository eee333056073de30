"""Small helpers shared by views: re-rendering a form with a service's error,
reading the page number, and the id URL converter."""
from flask import render_template
from flask import request
from werkzeug.routing import IntegerConverter

from desk.errors import DeskError

MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """The one converter for every id in a route: a positive database id in
    ASCII digits only (``[0-9]+``; werkzeug's ``int`` takes any Unicode digit,
    so ``/attachments/٣`` was attachment 3). Anything else, and numbers past the
    largest id, are simply not found (404)."""

    regex = r"[0-9]+"

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


def form_error(form, err: DeskError, template: str, **context):
    """Re-render a form with the service's message and its 4xx status; what the
    person typed stays in the form."""
    form.form_errors.append(str(err))
    return render_template(template, form=form, **context), err.status


def invalid_form(form, template: str, **context):
    """Render a form: 200 when first shown, 400 when it came back with errors."""
    status = 400 if form.is_submitted() else 200
    return render_template(template, form=form, **context), status


def page_number() -> int:
    """The ?page= number (ASCII digits), 1 when absent or odd."""
    raw = request.args.get("page", "")
    page = int(raw) if ascii_number(raw, 20) else 1
    return min(max(page, 1), 100_000)


def ascii_number(raw: str, max_digits: int = 10) -> bool:
    """Whether ``raw`` is a plain number in ASCII digits (``str.isdigit`` also
    takes ``٣`` and ``³``)."""
    return 0 < len(raw) <= max_digits and raw.isascii() and raw.isdigit()
