"""Small helpers shared by views: re-rendering a form with a service's error,
reading the page number, and the id URL converter."""
from flask import render_template
from flask import request
from werkzeug.routing import IntegerConverter

from desk.errors import DeskError

MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """A positive database id; larger numbers are simply not found (404)."""

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
    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), 100_000)
