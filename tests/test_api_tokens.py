"""Personal access tokens (issue 15): made and shown once, stored only as a
keyed hash, listed with their last use, revoked by hand and by every event
that ends a person's sessions, announced before they expire, audited."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from desk import audit
from desk import crypto
from desk.db import db
from desk.db import is_sqlite
from desk.models import ApiToken
from desk.models import AuditEntry
from desk.models import MailMessage
from desk.models import utcnow
from desk.services import email_change
from desk.services import erasure
from desk.services import profile
from desk.services import recycle_bin
from desk.services import tokens
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in

TOKEN_RE = re.compile(r'<code class="token-value" id="new-token">(desk_[0-9a-f]{8}_[A-Za-z0-9_-]{43})</code>')


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


def api_me(client, raw: str, ip: str = "127.0.0.1"):
    return client.get("/api/v1/me", headers=bearer(raw), environ_base={"REMOTE_ADDR": ip})


def entries(action: str, record_type: str = "ApiToken") -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.action == action,
                                          AuditEntry.record_type == record_type)
                .order_by(AuditEntry.seq))


def raw_database_text(app) -> bytes:
    """Every byte the database holds: the SQLite files (with the write-ahead
    log), or every row of every PostgreSQL table as text."""
    if is_sqlite():
        db.execute_sql("PRAGMA wal_checkpoint(FULL)")
        path = Path(app.config["DATABASE_URL"].removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    tables = [r[0] for r in db.execute_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
    return "\n".join(str(row[0]) for t in tables
                     for row in db.execute_sql(f'SELECT t::text FROM "{t}" t').fetchall()).encode()


@pytest.fixture
def owner(ctx):
    return factories.end_user(name="Tess Token", email="tess@example.com")


def test_a_token_is_shown_once_and_stored_only_as_a_keyed_hash(ctx, owner):
    browser = signed_in(ctx, owner)
    assert browser.get("/my/tokens").status_code == 200
    resp = post_form(browser, "/my/tokens", {"name": "Backup script", "days": "30"})
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    raw = TOKEN_RE.search(resp.get_data(as_text=True)).group(1)
    row = ApiToken.get(ApiToken.user == owner.id)
    assert raw.startswith(row.prefix + "_") and row.name == "Backup script" and not row.read_only
    assert row.expires_at - utcnow() > dt.timedelta(days=29, hours=23)
    # Shown once: the list afterwards names the prefix, never the token.
    page = browser.get("/my/tokens").get_data(as_text=True)
    assert row.prefix in page and raw not in page and raw.split("_", 2)[2] not in page
    # The hash is the HMAC under the keyring's key, not a plain SHA-256 of the token.
    assert row.token_hash == crypto.api_token_digest(raw)[1] != crypto.token_hash(raw)
    # It works...
    assert api_me(browser, raw).json["email"] == "tess@example.com"
    # ...and the database holds no trace of it: the search finds the prefix (so it
    # does look), but neither the token nor its secret part.
    text = raw_database_text(ctx)
    assert row.prefix.encode() in text
    assert raw.encode() not in text and raw.split("_", 2)[2].encode() not in text
    assert crypto.token_hash(raw).encode() not in text
    # Its creation is audited, without the hash.
    created = entries("create")[-1]
    assert created.actor_id == owner.id and row.token_hash not in created.changes
    assert audit.read_changes(created)["token_hash"] == [None, audit.SECRET]


def test_bad_forms_say_what_is_wrong(ctx, owner):
    browser = signed_in(ctx, owner)
    for data in ({"name": "", "days": "30"}, {"name": "x", "days": "0"}, {"name": "x", "days": "366"},
                 {"name": "x" * 101, "days": "30"}, {"name": "a\x00b", "days": "30"},
                 {"name": "x", "days": "many"}):
        resp = post_form(browser, "/my/tokens", data)
        assert resp.status_code == 400, data
    assert ApiToken.select().count() == 0
    assert post_form(browser, "/my/tokens", {"name": "Year", "days": "365", "read_only": "y"}).status_code == 201
    assert ApiToken.get().read_only


def test_unknown_revoked_and_expired_tokens_get_the_same_answer(ctx, owner, client):
    _, live = tokens.create(owner, "live")
    revoked_row, revoked = tokens.create(owner, "revoked")
    expired_row, expired = tokens.create(owner, "expired", days=1)
    tokens.revoke(owner, revoked_row.id)
    audit.update(audit.SYSTEM, expired_row, expires_at=utcnow() - dt.timedelta(seconds=1))
    unknown = live[:-4] + ("AAAA" if not live.endswith("AAAA") else "BBBB")
    assert api_me(client, live).status_code == 200
    answers = set()
    for raw in (unknown, revoked, expired, "not-a-token", ""):
        resp = client.get("/api/v1/me", headers=bearer(raw))
        assert resp.status_code == 401
        assert resp.content_type == "application/problem+json"
        answers.add((resp.get_data(), resp.headers["WWW-Authenticate"]))
    assert len(answers) == 1
    assert client.get("/api/v1/me").get_data() == answers.pop()[0]  # no header at all: same
    # The token never appears in an answer.
    for resp in (client.get("/api/v1/me", headers=bearer(revoked)),
                 client.get("/api/v1/nothing", headers=bearer(live))):
        assert revoked.encode() not in resp.get_data() and live.encode() not in resp.get_data()


def test_lists_show_last_use_and_revoking_stops_a_token_at_once(ctx, owner):
    browser = signed_in(ctx, owner)
    row, raw = tokens.create(owner, "Phone app")
    assert "Never" in browser.get("/my/tokens").get_data(as_text=True)
    assert api_me(browser, raw, ip="198.51.100.7").status_code == 200
    page = browser.get("/my/tokens").get_data(as_text=True)
    assert "198.51.100.7" in page and "Phone app" in page
    resp = post_form(browser, f"/my/tokens/{row.id}/revoke", {}, form_page="/my/tokens")
    assert resp.status_code == 302
    assert api_me(browser, raw).status_code == 401
    revoked = entries("revoke")[-1]
    assert revoked.actor_id == owner.id and audit.read_changes(revoked)["revoke_reason"][1] == "revoked"
    assert "Revoked" in browser.get("/my/tokens").get_data(as_text=True)


def test_nobody_revokes_or_sees_another_persons_token_from_their_own_page(ctx, owner):
    other = factories.end_user()
    row, raw = tokens.create(owner, "Mine")
    browser = signed_in(ctx, other)
    assert "Mine" not in browser.get("/my/tokens").get_data(as_text=True)
    resp = post_form(browser, f"/my/tokens/{row.id}/revoke", {}, form_page="/my/tokens")
    assert resp.status_code == 404
    assert api_me(browser, raw).status_code == 200


def test_admins_see_and_revoke_every_token_and_agents_may_not(ctx, owner):
    admin = factories.admin()
    agent = factories.agent()
    row, raw = tokens.create(owner, "Owner's sync")
    tokens.create(agent, "Agent's script")
    agent_browser = signed_in(ctx, agent)
    assert agent_browser.get("/agent/settings/tokens").status_code == 403
    assert post_form(agent_browser, f"/agent/settings/tokens/{row.id}/revoke", {},
                     form_page="/agent/settings/my-info").status_code == 403
    admin_browser = signed_in(ctx, admin)
    page = admin_browser.get("/agent/settings/tokens").get_data(as_text=True)
    assert "Owner&#39;s sync" in page and "Agent&#39;s script" in page and "Tess Token" in page
    resp = post_form(admin_browser, f"/agent/settings/tokens/{row.id}/revoke", {},
                     form_page="/agent/settings/tokens")
    assert resp.status_code == 302
    assert api_me(admin_browser, raw).status_code == 401
    assert entries("revoke")[-1].actor_id == admin.id


def test_use_from_a_new_address_is_audited_once(ctx, owner, client):
    _, raw = tokens.create(owner, "Laptop")
    for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"):
        assert api_me(client, raw, ip).status_code == 200
    used = entries("token_used_new_address")
    assert len(used) == 2
    # The address is personal: sealed under the owner's key in the log.
    assert all("192.0.2" not in e.ip for e in used)
    assert [crypto.open_sealed(e.ip) for e in used] == ["192.0.2.1", "192.0.2.2"]


@pytest.mark.parametrize("event", ["password", "email", "deletion", "erasure"])
def test_events_that_end_sessions_revoke_tokens(ctx, owner, event):
    admin = factories.admin()
    bystander = factories.end_user()
    _, raw = tokens.create(owner, "Sync")
    _, kept = tokens.create(bystander, "Unaffected")
    client = signed_in(ctx, bystander)
    assert api_me(client, raw).status_code == 200
    if event == "password":
        profile.change_password(owner, factories.PASSWORD, "a brand new password")
        reason = tokens.PASSWORD_CHANGED
    elif event == "email":
        req = email_change.request_change(owner, "tess.new@example.com")
        email_change.approve(admin, req.id)
        link = MailMessage.select().where(MailMessage.recipient == "tess.new@example.com").get().body
        email_change.confirm(owner, re.search(r"/confirm-email/([A-Za-z0-9_\-]+)", link).group(1))
        reason = tokens.EMAIL_CHANGED
    elif event == "deletion":
        recycle_bin.delete_person(admin, owner.id)
        reason = tokens.DELETED
    else:
        erasure.anonymize_now(audit.Actor.of(admin), owner)
        reason = None
    assert api_me(client, raw).status_code == 401
    assert api_me(client, kept).status_code == 200
    if reason:
        assert audit.read_changes(entries("revoke")[-1])["revoke_reason"][1] == reason
    else:  # erased: the tokens (whose names may name the person) are gone
        assert not ApiToken.select().where(ApiToken.user == owner.id).exists()


def test_one_reminder_before_expiry(ctx, owner):
    soon, _ = tokens.create(owner, "Expiring soon", days=5)
    tokens.create(owner, "Far off", days=60)
    gone, _ = tokens.create(owner, "Revoked", days=3)
    tokens.revoke(owner, gone.id)
    assert tokens.remind_expiring() == 1
    assert tokens.remind_expiring() == 0
    mails = list(MailMessage.select().where(MailMessage.recipient == owner.email,
                                            MailMessage.subject.contains("expires soon")))
    assert len(mails) == 1
    assert "Expiring soon" in mails[0].subject and soon.prefix in mails[0].body
    assert "/my/tokens" in mails[0].body
    assert ApiToken.get_by_id(soon.id).reminded_at is not None


def test_tokens_never_reach_the_logs(ctx, owner, caplog):
    _, raw = tokens.create(owner, "Logged?")
    client = signed_in(ctx, owner)
    with caplog.at_level("DEBUG"):
        client.get("/api/v1/me", headers=bearer(raw))
        client.get("/api/v1/me", headers=bearer(raw + "x"))
        client.post("/api/v1/tickets", data="{", content_type="application/json", headers=bearer(raw))
    assert raw not in caplog.text


def test_the_access_log_names_a_token_by_its_prefix_only(tmp_path):
    """The production server's access log: the token's prefix, never the token."""
    import urllib.request
    from desk import create_app
    from tests.conftest import TEST_CONFIG
    from tests.serverproc import running_server
    data_dir = tmp_path / "instance"
    with running_server(data_dir) as srv:
        app = create_app(dict(TEST_CONFIG, DATA_DIR=str(data_dir), SECRET_KEY="",
                              DATABASE_URL=f"sqlite:///{data_dir / 'desk.db'}"))
        with app.app_context():
            db.connect(reuse_if_open=True)
            row, raw = tokens.create(factories.end_user(), "Logged")
            db.close()
        request = urllib.request.Request(srv.base_url + "/api/v1/me",
                                         headers={"Authorization": f"Bearer {raw}"})
        with srv.opener().open(request, timeout=30) as resp:
            assert resp.status == 200
        srv.wait_for_output(re.compile(r'"GET /api/v1/me" 200 .*' + row.prefix))
        assert raw not in srv.logs() and raw.split("_", 2)[2] not in srv.logs()
