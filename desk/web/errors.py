"""Every error as a clear page with the right status: domain errors from
services, HTTP errors, CSRF failures, and the last-resort 500."""
from flask import Flask
from flask import render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from desk.errors import DeskError
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l

TITLES = {
    400: _l("Bad request"),
    401: _l("Please sign in"),
    403: _l("Not allowed"),
    404: _l("Not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    410: _l("Gone"),
    413: _l("Too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong"),
}

MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You do not have permission to do this."),
    404: _l("There is nothing here, or you cannot see it."),
    405: _l("This address does not accept that kind of request."),
    413: _l("The upload is larger than allowed."),
    429: _l("Too many attempts. Please wait a few minutes and try again."),
    500: _l("An unexpected error happened. Nothing you entered was lost; please try again."),
}


def error_page(status: int, message=None):
    title = TITLES.get(status, TITLES[400] if status < 500 else TITLES[500])
    text = message or MESSAGES.get(status, "")
    try:
        return render_template("errors/error.html", status=status, title=title,
                               message=text), status
    except Exception:  # noqa: BLE001 - the page itself failed: say it plainly
        return f"{status} {title}\n{text}\n", status, {"Content-Type": "text/plain; charset=utf-8"}


def add_api_answer(app: Flask, applies, answers: dict) -> None:
    """Let another part (the JSON API) answer errors of its own requests:
    ``applies()`` says whether the request is one; ``answers`` maps an
    exception class to a function making the response (first match wins)."""
    app.extensions["desk.api_errors"] = (applies, answers)


def _api_answer(app: Flask, err: Exception):
    entry = app.extensions.get("desk.api_errors")
    if entry is None or not entry[0]():
        return None
    for cls, answer in entry[1].items():
        if isinstance(err, cls):
            return answer(err)
    return None


def init_app(app: Flask) -> None:
    @app.errorhandler(DeskError)
    def _domain(err: DeskError):
        answer = _api_answer(app, err)
        if answer is not None:
            return answer
        message = str(err) if err.status != 403 else MESSAGES[403]
        return error_page(err.status, message)

    @app.errorhandler(CSRFError)
    def _csrf(err: CSRFError):
        answer = _api_answer(app, err)
        if answer is not None:
            return answer
        return error_page(400, _("The form expired or was sent from elsewhere. "
                                 "Go back, reload the page and try again."))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        if err.code in (301, 302, 303, 307, 308) or err.code is None:
            return err
        answer = _api_answer(app, err)
        if answer is not None:
            return answer
        return error_page(err.code, MESSAGES.get(err.code) or err.description)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        app.logger.exception("unhandled error")
        return _api_answer(app, err) or error_page(500)
