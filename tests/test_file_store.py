"""The file store: one contract, proved on the local folder and on a real
S3-compatible server (moto on 127.0.0.1); attachments, downloads with ranges,
the outbox and the purge through it; ``storage-check``."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from desk import audit
from desk.cli import cli
from desk.models import Attachment
from desk.services import attachments as files
from desk.services import mail
from desk.services import purge
from desk.services import storage
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in


@pytest.fixture
def store(store_kind, store_settings, tmp_path) -> storage.Store:
    """A bare store of each kind (no app)."""
    return storage.from_url(store_settings.get("STORAGE_URL", ""), data_dir=tmp_path / "files",
                            endpoint_url=store_settings.get("STORAGE_ENDPOINT_URL", ""),
                            region=store_settings.get("STORAGE_REGION", ""),
                            access_key_id=store_settings.get("STORAGE_ACCESS_KEY_ID", ""),
                            secret_access_key=store_settings.get("STORAGE_SECRET_ACCESS_KEY", ""))


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out ``total`` bytes in small reads,
    failing after ``fail_after`` bytes when asked to (a dropped upload)."""

    def __init__(self, total: int, fail_after: int | None = None):
        self.total, self.sent, self.fail_after = total, 0, fail_after
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), 65536, self.total - self.sent)
        data = bytes((self.sent + i) % 251 for i in range(n))
        buffer[:n] = data
        self.digest.update(data)
        self.sent += n
        return n


# -- the contract, on both stores ---------------------------------------------

def test_put_open_size_exists_delete(store):
    assert not store.exists("attachments/ab/one")
    assert store.put_bytes("attachments/ab/one", b"hello world") == 11
    assert store.exists("attachments/ab/one")
    assert store.size("attachments/ab/one") == 11
    assert store.read_bytes("attachments/ab/one") == b"hello world"
    store.put_bytes("attachments/ab/one", b"replaced")  # a put replaces the whole object
    assert store.read_bytes("attachments/ab/one") == b"replaced"
    store.delete("attachments/ab/one")
    assert not store.exists("attachments/ab/one")
    store.delete("attachments/ab/one")  # deleting again is no error
    with pytest.raises(FileNotFoundError):
        store.open("attachments/ab/one")
    with pytest.raises(FileNotFoundError):
        store.size("attachments/ab/one")


def test_open_returns_the_asked_byte_range(store):
    data = bytes(range(256)) * 10
    store.put_bytes("exports/x.bin", data)
    with store.open("exports/x.bin", 100, 300) as fh:
        assert fh.read() == data[100:300]
    with store.open("exports/x.bin", 2500) as fh:
        assert fh.read() == data[2500:]
    with store.open("exports/x.bin", 0, 10_000) as fh:  # past the end: what there is
        assert fh.read() == data
    with store.open("exports/x.bin", 5, 5) as fh:
        assert fh.read() == b""


def test_list_by_prefix_in_key_order(store):
    for key in ("outbox/2.eml", "outbox/1.eml", "attachments/cd/b", "attachments/ab/a", "outboxes/x"):
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("outbox/")] == ["outbox/1.eml", "outbox/2.eml"]
    assert [o.key for o in store.list("attachments/")] == ["attachments/ab/a", "attachments/cd/b"]
    assert [o.key for o in store.list("attachments/a")] == ["attachments/ab/a"]
    assert [o.key for o in store.list("outbox")] == ["outbox/1.eml", "outbox/2.eml", "outboxes/x"]
    listed = {o.key: o for o in store.list("")}
    assert set(listed) == {"outbox/2.eml", "outbox/1.eml", "attachments/cd/b", "attachments/ab/a", "outboxes/x"}
    info = listed["attachments/ab/a"]
    assert info.size == len(b"attachments/ab/a")
    assert abs(dt.datetime.now(dt.timezone.utc) - info.modified) < dt.timedelta(minutes=5)
    assert list(store.list("nothing/")) == []


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a//b", ".hidden", "a/../b", "a/./b",
                                 "", "a/", "a\\b", "a/b\x00", "ä/b"])
def test_hostile_keys_are_refused(store, key):
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.exists(key)


def test_a_large_upload_streams_in_parts(store):
    """A 9 MB non-seekable stream (past the multipart threshold on S3) arrives whole."""
    source = Trickle(9 * 2**20 + 123)
    assert store.put("backups/big.bin", source) == source.total
    digest = hashlib.sha256()
    with store.open("backups/big.bin") as fh:
        while chunk := fh.read(2**20):
            digest.update(chunk)
    assert digest.hexdigest() == source.digest.hexdigest()
    assert store.size("backups/big.bin") == source.total


def test_a_failed_upload_leaves_the_old_object_or_none(store):
    store.put_bytes("attachments/ab/kept", b"old bytes")
    with pytest.raises(ConnectionResetError):
        store.put("attachments/ab/kept", Trickle(9 * 2**20, fail_after=2**20))
    assert store.read_bytes("attachments/ab/kept") == b"old bytes"
    with pytest.raises(ConnectionResetError):
        store.put("attachments/ab/new", Trickle(100_000, fail_after=65536))
    assert not store.exists("attachments/ab/new")
    assert [o.key for o in store.list("attachments/")] == ["attachments/ab/kept"]


def test_copy_between_stores(store, tmp_path):
    other = storage.LocalStore(tmp_path / "other")
    store.put_bytes("exports/a.zip", b"zip bytes")
    assert storage.copy(store, "exports/a.zip", other) == 9
    assert other.read_bytes("exports/a.zip") == b"zip bytes"


def test_local_files_are_owner_only(tmp_path):
    store = storage.LocalStore(tmp_path / "files")
    store.put_bytes("attachments/ab/secret", b"x")
    path = store.path("attachments/ab/secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_storage_urls(tmp_path):
    assert storage.from_url("", data_dir=tmp_path).root == tmp_path
    assert storage.from_url(f"file://{tmp_path}/files").root == tmp_path / "files"
    with pytest.raises(ValueError):
        storage.from_url("ftp://host/x")
    with pytest.raises(ValueError):
        storage.from_url("s3:///no-bucket")


def test_s3_describe_names_no_secret(moto_server):
    settings = moto_server.settings("some-bucket")
    store = storage.from_url(settings["STORAGE_URL"], endpoint_url=settings["STORAGE_ENDPOINT_URL"],
                             access_key_id=settings["STORAGE_ACCESS_KEY_ID"],
                             secret_access_key=settings["STORAGE_SECRET_ACCESS_KEY"])
    assert store.describe().startswith("s3://some-bucket/files/")
    assert settings["STORAGE_SECRET_ACCESS_KEY"] not in store.describe()
    with pytest.raises(storage.StorageError) as err:  # no such bucket: a store error, no secret
        store.put_bytes("outbox/x.eml", b"x")
    assert settings["STORAGE_SECRET_ACCESS_KEY"] not in str(err.value)


# -- the app on both stores ----------------------------------------------------

@pytest.fixture
def store_app(make_app, store_settings):
    return make_app(**store_settings)


def _upload(browser, data: bytes, name: str = "notes.txt"):
    resp = post_form(browser, "/tickets/new",
                     {"subject": "Files", "description": "see attached",
                      "attachments": [(io.BytesIO(data), name)]},
                     content_type="multipart/form-data")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    return Attachment.select().order_by(Attachment.id.desc()).first()


def test_attachment_round_trip_with_ranges(store_app):
    data = os.urandom(300_000)
    with store_app.app_context():
        customer = factories.end_user()
        browser = signed_in(store_app, customer)
        row = _upload(browser, data)
        assert row.size == len(data) and row.sha256 == hashlib.sha256(data).hexdigest()
        assert files.exists(store_app.config, row.stored_name)
        url = f"/attachments/{row.id}"

        whole = browser.get(url)
        assert whole.status_code == 200 and whole.data == data
        assert whole.headers["Accept-Ranges"] == "bytes"
        assert whole.headers["ETag"] == f'"{row.sha256}"'

        part = browser.get(url, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.data == data[1000:2000]
        assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        assert part.headers["Content-Length"] == "1000"

        across = browser.get(url, headers={"Range": "bytes=65000-140000"})  # over chunk edges
        assert across.status_code == 206 and across.data == data[65000:140001]

        tail = browser.get(url, headers={"Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.data == data[-500:]
        rest = browser.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
        assert rest.data == data[-10:]

        bad = browser.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
        assert bad.status_code == 416
        assert bad.headers["Content-Range"] == f"bytes */{len(data)}"

        stale = browser.get(url, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
        assert stale.status_code == 200 and stale.data == data
        fresh = browser.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{row.sha256}"'})
        assert fresh.status_code == 206 and fresh.data == data[:10]
        junk = browser.get(url, headers={"Range": "bytes=oops"})
        assert junk.status_code == 200 and junk.data == data
        assert browser.get(url, headers={"If-None-Match": f'"{row.sha256}"'}).status_code == 304


def test_another_persons_file_is_not_found_even_by_range(store_app):
    with store_app.app_context():
        owner, stranger = factories.end_user(), factories.end_user()
        row = _upload(signed_in(store_app, owner), b"mine only")
        other = signed_in(store_app, stranger)
        assert other.get(f"/attachments/{row.id}").status_code == 404
        assert other.get(f"/attachments/{row.id}", headers={"Range": "bytes=0-3"}).status_code == 404


def test_purge_removes_the_objects(store_app):
    with store_app.app_context():
        customer = factories.end_user()
        ticket = ticket_service.submit(customer, "Old", "old", uploads=[
            files.Upload("a.txt", io.BytesIO(b"aaa")), files.Upload("b.txt", io.BytesIO(b"bbb"))])
        names = [a.stored_name for a in Attachment.select().where(Attachment.ticket == ticket.id)]
        assert all(files.exists(store_app.config, n) for n in names)
        audit.update(audit.SYSTEM, ticket, deleted_at=dt.datetime(2000, 1, 1))
        report = purge.purge_expired(store_app.config)
        assert report.tickets == 1 and report.files == 2
        assert not any(files.exists(store_app.config, n) for n in names)
        assert [o.key for o in files.stored_objects(store_app.config)] == []


def test_outbox_goes_to_the_store(store_app):
    with store_app.app_context():
        factories.end_user(email="outbox-reader@example.com")
        sent, _ = mail.deliver_pending(store_app.config)
        assert sent >= 1
        messages = list(mail.outbox_messages(store_app.config))
        assert any(b"outbox-reader@example.com" in raw for _, raw in messages)


def test_an_object_store_failure_keeps_the_mail_queued(make_app, moto_server):
    """A bucket that does not exist is an outage: the mail stays pending."""
    app = make_app(**moto_server.settings("no-such-bucket-here"))
    with app.app_context():
        factories.end_user(email="waits@example.com")
        sent, failed = mail.deliver_pending(app.config)
        assert sent == 0 and failed == 1
        from desk.models import MailMessage
        assert MailMessage.select().where(MailMessage.status == "pending").count() >= 1


def test_storage_check_finds_rows_without_objects_and_objects_without_rows(store_app, monkeypatch):
    with store_app.app_context():
        customer = factories.end_user()
        ticket = ticket_service.submit(customer, "Check", "check", uploads=[
            files.Upload("a.txt", io.BytesIO(b"aaa")), files.Upload("b.txt", io.BytesIO(b"bbb")),
            files.Upload("c.txt", io.BytesIO(b"ccc"))])
        rows = list(Attachment.select().where(Attachment.ticket == ticket.id).order_by(Attachment.id))
        runner = CliRunner()
        result = runner.invoke(cli, ["storage-check"], obj={"app": store_app})
        assert result.exit_code == 0, result.output
        assert "3 attachment rows, 3 objects" in result.output and "OK" in result.output

        files.remove_file(store_app.config, rows[1].stored_name)  # a row loses its object
        stray = files.store(store_app.config, files.Upload("stray.txt", io.BytesIO(b"stray")), customer.id)
        result = runner.invoke(cli, ["storage-check"], obj={"app": store_app})
        assert result.exit_code == 1
        assert f"MISSING: attachment #{rows[1].id} has no object" in result.output
        assert "1 too recent to judge" in result.output  # a fresh object may be an upload in progress
        assert stray.stored_name not in result.output

        monkeypatch.setattr(files, "ORPHAN_AGE", dt.timedelta(seconds=-60))  # everything is old now
        result = runner.invoke(cli, ["storage-check"], obj={"app": store_app})
        assert f"ORPHAN: object {stray.stored_name} has no row" in result.output
        report = files.check(store_app.config)
        assert report.missing == [rows[1].id] and report.orphans == [stray.stored_name]
