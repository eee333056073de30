"""The JSON API under /api/v1: personal access tokens (Bearer), JSON in and
out, errors as RFC 9457 problem details. No cookies, no CSRF: a request is
who its token says, never who a session cookie says.

Views declare their shapes with ``route``; the same pydantic classes validate
the request and make the OpenAPI document (desk.web.api.openapi).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import g
from flask import request
from pydantic import BaseModel
from pydantic import ValidationError

from desk import audit
from desk import crypto
from desk import policy
from desk.extensions import csrf
from desk.extensions import limiter
from desk.services import tokens
from desk.web.api import problems
from desk.web.api.problems import ApiProblem

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)


@dataclass(frozen=True)
class Operation:
    """One route as the OpenAPI document describes it."""

    endpoint: str
    path: str
    method: str
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    media: str
    public: bool
    multipart: bool
    errors: tuple[int, ...]


OPERATIONS: list[Operation] = []


def route(path: str, method: str = "GET", *, body=None, query=None, response=None,
          status: int = 200, media: str = "application/json", public: bool = False,
          multipart: bool = False, errors: tuple[int, ...] = ()):
    """Register a view: authenticate (unless ``public``), validate query and
    body with the given models, and serialize the returned model."""
    def decorate(view: Callable):
        endpoint = view.__name__
        OPERATIONS.append(Operation(endpoint, path, method, (view.__doc__ or "").strip().split("\n")[0],
                                    body, query, response, status, media, public, multipart, errors))

        @wraps(view)
        def wrapper(**kwargs):
            if not public:
                _authenticate(writes=method != "GET")
            if query is not None:
                kwargs["query"] = _validated(query, _query_dict(query), "query")
            if body is not None:
                kwargs["body"] = _validated(body, _body_dict(multipart), "body")
            with audit.via(f"API token {g.api_token.prefix}" if not public else "API"):
                result = view(**kwargs)
            if isinstance(result, BaseModel):
                return current_app.response_class(
                    result.model_dump_json(exclude_unset=True, by_alias=True), status=status,
                    mimetype="application/json")
            return result
        limited = limiter.shared_limit(_rate_limit, scope="api", key_func=_rate_key)(wrapper)
        bp.add_url_rule(path, endpoint, limited, methods=[method])
        return limited
    return decorate


def _authenticate(writes: bool) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    row = tokens.authenticate(raw.strip(), request.remote_addr or "") \
        if scheme.lower() == "bearer" else None
    if row is None:
        raise ApiProblem("unauthorized")
    g.api_token = row
    request.environ["desk.token"] = row.prefix  # for the access log
    g.api_user = row.user
    if not policy.token_permits(row, writes):
        raise ApiProblem("read-only-token")


def user():
    """The person the request's token belongs to."""
    return g.api_user


def client_ip() -> str:
    return request.remote_addr or ""


def _query_dict(model: type[BaseModel]) -> dict[str, Any]:
    args = request.args
    values = {}
    for key in args:
        items = args.getlist(key)
        values[key] = items if len(items) > 1 else items[0]
    return values


def _body_dict(multipart: bool) -> dict[str, Any]:
    mimetype = request.mimetype
    if multipart and mimetype == "multipart/form-data":
        return {key: request.form.get(key) for key in request.form}
    if mimetype != "application/json":
        raise ApiProblem("unsupported-media-type")
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiProblem("invalid-json") from None
    if not isinstance(data, dict):
        raise ApiProblem("invalid-json", detail="The body must be a JSON object.")
    return data


def _validated(model: type[BaseModel], data: dict, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise problems.from_validation(err, where) from None


def _rate_key() -> str:
    """Per token: the limit is counted on the token's fingerprint, never the token."""
    header = request.headers.get("Authorization", "")
    raw = header.partition(" ")[2].strip()
    if not tokens.TOKEN_RE.fullmatch(raw):
        return "api-address:" + (request.remote_addr or "")
    return "api-token:" + crypto.api_token_digests(raw)[0][:32]


def _rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


# Once, at import: the blueprint and the extensions are module-wide objects.
# (Each route carries its own per-token limit, see ``route``: the app checks
# limits only where a view declares them.)
csrf.exempt(bp)


def init_app(app: Flask) -> None:
    """Register the API: its routes, exempt from CSRF, rate-limited per token,
    and its own error answers."""
    from desk.web.api import docs  # noqa: F401 - registers routes
    from desk.web.api import views  # noqa: F401 - registers routes
    app.register_blueprint(bp)
    problems.init_app(app, PREFIX)
