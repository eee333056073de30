"""The OpenAPI 3.1 document, made from the routes' declarations and the same
pydantic models that validate requests (so the two cannot drift apart)."""
from __future__ import annotations

import copy
import functools
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from desk.web.api import OPERATIONS
from desk.web.api import PREFIX
from desk.web.api import problems
from desk.web.api.schemas import Problem

REF = "#/components/schemas/{model}"
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _models() -> list[type[BaseModel]]:
    found = {Problem}
    for op in OPERATIONS:
        found.update(m for m in (op.body, op.response) if m is not None)
    return sorted(found, key=lambda m: m.__name__)


def _path(rule: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:[^<>:]+:)?([^<>]+)>", rule)
    return PREFIX + re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule), names


def _non_null(schema: dict) -> dict:
    """A query parameter is a value or absent, never JSON null."""
    schema = copy.deepcopy(schema)
    options = schema.pop("anyOf", None)
    if options:
        kept = [o for o in options if o.get("type") != "null"]
        schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    if schema.get("default", 0) is None:
        schema.pop("default")
    schema.pop("title", None)
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "schema": _non_null(prop), **({"description": prop["description"]}
                                           if "description" in prop else {})}
            for name, prop in schema["properties"].items()]


def _problem_response(status: int) -> dict:
    kinds = sorted(k for k, (st, _) in problems.KINDS.items() if st == status)
    return {"description": ", ".join(kinds) or "problem",
            "content": {problems.MEDIA: {"schema": {"$ref": REF.format(model="Problem")}}}}


def _operation(op) -> dict:
    path, names = _path(op.path)
    out: dict[str, Any] = {"operationId": op.endpoint, "summary": op.summary,
                           "parameters": [{"name": n, "in": "path", "required": True, "schema": ID_SCHEMA}
                                          for n in names]}
    if op.query is not None:
        out["parameters"] += _query_parameters(op.query)
    if op.body is not None:
        ref = {"$ref": REF.format(model=op.body.__name__)}
        content = {"application/json": {"schema": ref}}
        if op.multipart:
            content["multipart/form-data"] = {"schema": {"allOf": [ref, {"type": "object", "properties": {
                "attachments": {"type": "array", "items": {"type": "string", "format": "binary"}}}}]}}
        out["requestBody"] = {"required": True, "content": content}
    if op.response is not None:
        body = {op.media: {"schema": {"$ref": REF.format(model=op.response.__name__)}}}
    elif op.media == "application/json":
        body = {op.media: {"schema": {"type": "object"}}}
    else:
        body = {op.media: {"schema": {"type": "string"}}}
    out["responses"] = {str(op.status): {"description": "OK", "content": body}}
    statuses = set(op.errors) | {405, 429} | ({401} if not op.public else set())
    if op.body is not None or op.query is not None:
        statuses.add(400)
    if op.method != "GET" and not op.public:
        statuses.add(403)  # read-only tokens
    for status in sorted(statuses):
        out["responses"][str(status)] = _problem_response(status)
    if not op.public:
        out["security"] = [{"bearer": []}]
    return path, out


@functools.cache
def document() -> dict:
    """The whole OpenAPI 3.1 document."""
    _, defs = models_json_schema([(m, "serialization" if m.__name__ not in _request_names() else "validation")
                                  for m in _models()], ref_template=REF, by_alias=True)
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        path, out = _operation(op)
        paths.setdefault(path, {})[op.method.lower()] = out
    return {
        "openapi": "3.1.0",
        "info": {"title": "desk API", "version": "1",
                 "description": "Personal access tokens from /my/tokens, sent as "
                                "`Authorization: Bearer <token>`. Errors are RFC 9457 problem details."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _request_names() -> set[str]:
    return {op.body.__name__ for op in OPERATIONS if op.body is not None}
