"""API errors as RFC 9457 problem details (application/problem+json), each
kind with a stable ``type`` that the API documentation lists."""
from __future__ import annotations

import json

from flask import Flask
from flask import current_app
from flask import request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from desk.errors import DeskError
from desk.i18n import gettext as _
from desk.i18n import lazy_gettext as _l

MEDIA = "application/problem+json"
TYPE_BASE = "/api/v1/docs#problem-"

# name -> (status, title)
KINDS = {
    "invalid-json": (400, _l("The body is not valid JSON")),
    "invalid-request": (400, _l("Some fields are missing or wrong")),
    "invalid-input": (400, _l("The input breaks a rule")),
    "unauthorized": (401, _l("A valid API token is needed")),
    "forbidden": (403, _l("Not allowed")),
    "read-only-token": (403, _l("This token is read-only")),
    "not-found": (404, _l("Not found")),
    "method-not-allowed": (405, _l("Method not allowed")),
    "conflict": (409, _l("Conflict")),
    "too-large": (413, _l("Too large")),
    "unsupported-media-type": (415, _l("Send JSON (Content-Type: application/json)")),
    "rate-limited": (429, _l("Too many requests")),
    "server-error": (500, _l("Something went wrong")),
}
BY_STATUS = {400: "invalid-input", 401: "unauthorized", 403: "forbidden", 404: "not-found",
             405: "method-not-allowed", 409: "conflict", 413: "too-large",
             415: "unsupported-media-type", 429: "rate-limited"}


class ApiProblem(Exception):
    """An error the API answers as a problem document."""

    def __init__(self, kind: str, detail: str | None = None, params: list[dict] | None = None):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.params = params


def from_validation(err: ValidationError, where: str) -> ApiProblem:
    """400 naming every field that is missing or wrong (never echoing values)."""
    params = []
    for item in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in item["loc"]) or where
        params.append({"name": loc, "reason": item["msg"]})
    names = ", ".join(p["name"] for p in params)
    return ApiProblem("invalid-request", _("Check these fields: %(names)s", names=names), params)


def response(kind: str, detail: str | None = None, params: list[dict] | None = None,
             headers: dict | None = None):
    status, title = KINDS[kind]
    body = {"type": TYPE_BASE + kind, "title": str(title), "status": status}
    if detail:
        body["detail"] = str(detail)
    if params:
        body["invalid-params"] = params
    resp = current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                      mimetype=MEDIA, headers=headers or {})
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="desk"'
    return resp


def is_api_request(prefix: str) -> bool:
    return request.path == prefix or request.path.startswith(prefix + "/")


def for_domain_error(err: DeskError):
    kind = BY_STATUS.get(err.status, "invalid-input")
    # 403 says no more than that (the permission's name is for logs, not callers).
    detail = None if err.status == 403 else str(err)
    return response("too-large" if err.status == 413 else kind, detail)


def for_http_error(err: HTTPException):
    kind = BY_STATUS.get(err.code or 500, "invalid-input" if (err.code or 500) < 500 else "server-error")
    headers = {}
    if err.code == 429:
        retry = getattr(err, "retry_after", None)
        if retry:
            headers["Retry-After"] = str(retry)
    if err.code == 405 and err.valid_methods:
        headers["Allow"] = ", ".join(err.valid_methods)
    return response(kind, headers=headers)


def init_app(app: Flask, prefix: str) -> None:
    """Within the API, every error handler answers with a problem document."""
    from desk.web import errors

    @app.errorhandler(ApiProblem)
    def _problem(err: ApiProblem):
        return response(err.kind, err.detail, err.params)

    errors.add_api_answer(app, lambda: is_api_request(prefix), {
        DeskError: for_domain_error,
        HTTPException: for_http_error,
        Exception: lambda err: response("server-error"),
    })
