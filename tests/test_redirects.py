"""No open redirect: every ``next`` target is followed only when a browser would
resolve it to a page on this site; anything else lands on the landing page, and
no target (not even CR/LF) is ever a 500."""
from __future__ import annotations

from urllib.parse import urljoin
from urllib.parse import urlsplit

import pytest

from desk.web.redirects import safe_target
from tests import factories
from tests.conftest import browser
from tests.conftest import csrf_token
from tests.conftest import post_form

SITE = "http://localhost/"

# As the application receives them (after the query string's own decoding).
HOSTILE = [
    "/\t/evil.example",            # ?next=/%09/evil.example: the browser drops the tab
    "/\r\n/x",                     # ?next=/%0d%0a/x: a header injection, was a 500
    "/\n/evil.example",
    "\t//evil.example",
    "/\x0b/evil.example",
    "/\x00/evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/.//evil.example",
    " /x",
    " //evil.example",
    "/\u3000/evil.example",
    "/\u202e/evil.example",
    "https://evil.example",
    "HTTPS://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "/%2F/evil.example",           # double-encoded: ?next=/%252F/evil.example
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/%0d%0a/x",
    "/%252F/evil.example",
    "/" + "a" * 3000,
    "",
]

BENIGN = ["/my/tickets", "/my/tickets/7?page=2", "/agent/tickets?q=a%2F%2Fb&status=open",
          "/?next=//evil.example", "/my/info#contact"]


def _browser_resolves(location: str) -> tuple[str, str]:
    """(host, path) as a browser resolves a Location header: tabs and newlines
    dropped, leading C0/space trimmed, backslashes read as slashes."""
    cleaned = "".join(c for c in location if c not in "\t\r\n").lstrip("".join(map(chr, range(33))))
    parts = urlsplit(urljoin(SITE, cleaned.replace("\\", "/")))
    return parts.netloc, parts.path


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_are_refused(target):
    assert safe_target(target) is None


@pytest.mark.parametrize("target", BENIGN)
def test_local_paths_are_kept(target):
    assert safe_target(target) == target


@pytest.mark.parametrize("target", HOSTILE)
def test_sign_in_never_redirects_off_site(ctx, app, target):
    factories.end_user(email="ann@example.com")
    client = browser(app)
    resp = post_form(client, "/login", {"email": "ann@example.com", "password": factories.PASSWORD},
                     form_page="/login", query_string={"next": target})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/my/tickets"
    assert _browser_resolves(resp.headers["Location"]) == ("localhost", "/my/tickets")


@pytest.mark.parametrize("raw", ["/%09/evil.example", "/%0d%0a/x", "/%5C%5Cevil.example",
                                 "%2F%2Fevil.example", "/%E3%80%80/evil.example"])
def test_sign_in_with_the_raw_query_strings_of_the_report(ctx, app, raw):
    factories.end_user(email="ann@example.com")
    client = browser(app)
    token = csrf_token(client)
    resp = client.post("/login?next=" + raw, data={"email": "ann@example.com",
                                                   "password": factories.PASSWORD,
                                                   "csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/my/tickets"


def test_sign_in_follows_a_local_next(ctx, app):
    factories.end_user(email="ann@example.com")
    client = browser(app)
    resp = post_form(client, "/login", {"email": "ann@example.com", "password": factories.PASSWORD},
                     form_page="/login", query_string={"next": "/my/info?tab=1"})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/my/info?tab=1"


@pytest.mark.parametrize("target", HOSTILE)
def test_language_switch_never_redirects_off_site(client, target):
    resp = post_form(client, "/language", {"language": "zh_Hans", "next": target}, form_page="/")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"
    assert _browser_resolves(resp.headers["Location"]) == ("localhost", "/")


def test_language_switch_returns_to_the_page(client):
    resp = post_form(client, "/language", {"language": "zh_Hans", "next": "/login?x=1"},
                     form_page="/")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/login?x=1"
