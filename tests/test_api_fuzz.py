"""Property-based fuzzing of every API route from its own OpenAPI document
(schemathesis, against the app in-process): valid and invalid input alike
(positive and negative generation), no answer is
a 5xx, and every answer matches the status codes, media types and schemas
the document declares. Run with an administrator's token (every route's
code path) and an end user's (the narrowest view)."""
from __future__ import annotations

import io
import re

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance

from desk.services import attachments as files
from desk.services import tickets as ticket_service
from desk.services import tokens
from tests import factories

EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def app(make_app):
    return make_app(API_RATE_LIMIT="100000 per minute")


@pytest.fixture(params=["admin", "end_user"])
def fuzz_token(request, ctx):
    """Some records to find, and a token of the given kind."""
    admin = factories.admin()
    customer = factories.end_user()
    dept = factories.department("Fuzz desk")
    for n in range(3):
        ticket = ticket_service.submit(customer, f"Fuzzed ticket {n}", "details", dept.id,
                                       [files.Upload(filename="f.txt", stream=io.BytesIO(b"data"))])
        ticket_service.reply(admin, ticket.id, "a note", public=False)
    who = admin if request.param == "admin" else customer
    return tokens.create(who, "fuzz")[1]


def test_every_route_answers_within_its_schema(ctx, fuzz_token):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", ctx)
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    routes = {(re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", r.rule), m)
              for r in ctx.url_map.iter_rules() if r.endpoint.startswith("api.")
              for m in r.methods if m not in ("HEAD", "OPTIONS")}
    # Schemathesis leaves out the document it was loaded from (loading it is its test).
    assert {(op.path, op.method.upper()) for op in operations} == routes - {("/api/v1/openapi.json", "GET")}
    for operation in operations:
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=CHECKS)
        fuzz()
