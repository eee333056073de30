"""Fixtures: a real, freshly migrated database per test, on SQLite and (when
DESK_TEST_POSTGRES_URL is set) on PostgreSQL; the app built by create_app."""
from __future__ import annotations

import os
import re
import uuid
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import pytest
from flask import g
from flask import has_app_context
from flask.testing import FlaskClient

from desk import create_app
from desk.db import db
from desk.migrations import migrate

PG_URL = os.environ.get("DESK_TEST_POSTGRES_URL", "")
REQUIRE_PG = os.environ.get("DESK_TEST_REQUIRE_POSTGRES") == "1"

TEST_CONFIG = {
    "TESTING": True,
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_COST": 64,
    "SECRET_KEY": "test-secret",
    "MAIL_FROM": "help@desk.test",
}


def _pg_admin_connect():
    import psycopg2
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    return conn


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_database():
    """One PostgreSQL database for this test process; each test resets its schema."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("DESK_TEST_POSTGRES_URL is not set but PostgreSQL tests are required")
        pytest.skip("DESK_TEST_POSTGRES_URL not set")
    try:
        conn = _pg_admin_connect()
    except Exception as exc:  # noqa: BLE001
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"desk_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(PG_URL, name)
    from desk.db import db as proxy
    if proxy.obj is not None and not proxy.obj.is_closed():
        proxy.obj.close()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def database_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.db'}"
    url = request.getfixturevalue("pg_database")
    import psycopg2
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    conn.close()
    return url


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build an app on this test's database; extra settings as keyword arguments."""
    def factory(**overrides):
        config = dict(TEST_CONFIG, DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "instance"))
        config.update(overrides)
        app = create_app(config)
        with app.app_context():
            migrate(db.obj)
        return app
    yield factory
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()


# A test module's own settings for its app: ``APP_CONFIG = MANY_SIGN_INS``.
MANY_SIGN_INS = {"LOGIN_ADDRESS_LIMIT": "1000 per minute"}  # one address signs in many times


@pytest.fixture
def app(make_app, request):
    return make_app(**getattr(request.module, "APP_CONFIG", {}))


@pytest.fixture
def admin(ctx):
    """An administrator (modules that need another kind define their own)."""
    from tests import factories
    return factories.admin(name="Ada Admin")


def html(resp) -> str:
    return resp.get_data(as_text=True)


@pytest.fixture
def ctx(app):
    """An application context, for calling services directly."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        yield app
        if not db.is_closed():
            db.close()


class FreshClient(FlaskClient):
    """A test client whose every request starts with an empty ``g``, as in
    production, even while a test holds an app context open (``ctx``)."""

    def open(self, *args, **kwargs):
        if has_app_context():
            for name in list(vars(g)):
                delattr(g, name)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = FreshClient
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a page's form carries (as a browser would read it)."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_form(client, path: str, data: dict, form_page: str | None = None, **kwargs):
    """POST ``data`` with the CSRF token taken from ``form_page`` (default: ``path``)."""
    token = csrf_token(client, form_page or path)
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)


def login(client, email: str, password: str, **extra):
    return post_form(client, "/login", {"email": email, "password": password, **extra})


SIGNUP_LINK_RE = re.compile(r"/signup/confirm/[A-Za-z0-9_.\-]+")


def signup_link(email: str) -> str:
    """The path of the newest sign-up link mailed to ``email`` (in an app context)."""
    from desk.models import MailMessage
    for message in (MailMessage.select().where(MailMessage.recipient == email.lower())
                    .order_by(MailMessage.id.desc())):
        match = SIGNUP_LINK_RE.search(message.body)
        if match:
            return match.group(0)
    raise AssertionError(f"no sign-up link mailed to {email}")


def sign_up(client, name: str, email: str, password: str, **extra):
    """Sign up as a browser does: the form, then the link from the mail with
    the password again. Returns the last answer (302 to My Tickets)."""
    resp = post_form(client, "/signup", {"name": name, "email": email, "password": password},
                     **extra)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return post_form(client, signup_link(email), {"password": password}, **extra)


def browser(app) -> FreshClient:
    """A browser of its own (own cookies)."""
    app.test_client_class = FreshClient
    return app.test_client()


def signed_in(app, user, password: str | None = None, **extra) -> FreshClient:
    """A browser of its own, signed in as ``user``."""
    from tests import factories
    b = browser(app)
    resp = login(b, user.email, password or factories.PASSWORD, **extra)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    assert urlsplit(resp.headers["Location"]).path != "/login"
    return b


# -- file stores: the local folder and a real S3-compatible server -------------

@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's standalone S3 server on 127.0.0.1, one per test process."""
    from tests.objectstore import MotoServer
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store_kind(request):
    return request.param


@pytest.fixture
def store_settings(store_kind, request):
    """App settings for this test's file store: the data folder, or a fresh bucket."""
    if store_kind == "local":
        return {}
    server = request.getfixturevalue("moto_server")
    return server.settings(server.new_bucket())
