"""Attachment bytes encrypted per person: AES-256-GCM in streamed chunks under a
data key of each file, wrapped by the owner's subject key. Stored objects never
hold the clear bytes (local folder and bucket), ranges open only what they
need, tampering is caught, erasure crypto-shreds every copy, and files stored
clear before are sealed by a resumable job."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner

from desk import audit
from desk import crypto
from desk.cli import cli
from desk.models import Attachment
from desk.models import AuditEntry
from desk.models import FileRemoval
from desk.services import attachments as files
from desk.services import erasure
from desk.services import storage
from desk.services import tickets as ticket_service
from tests import factories
from tests.conftest import post_form
from tests.conftest import signed_in

CHUNK = crypto.FILE_CHUNK
SIZES = (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5)


def sealed(data: bytes, key: bytes) -> bytes:
    return b"".join(crypto.seal_file_chunks(key, io.BytesIO(data).read))


def opener(blob: bytes):
    return lambda a, b: io.BytesIO(blob[a:b])


def opened(blob: bytes, key: bytes, size: int, start=0, end=None) -> bytes:
    return b"".join(crypto.open_file_chunks(key, opener(blob), size, start, end))


# -- the chunked format ------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_seal_and_open_round_trip_and_every_range(size):
    key = crypto.new_file_key()
    data = os.urandom(size)
    blob = sealed(data, key)
    assert len(blob) == crypto.sealed_file_size(size)
    assert opened(blob, key, size) == data
    edges = sorted({0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, size - 1, size})
    for start in edges:
        for end in edges:
            if 0 <= start <= end <= size:
                assert opened(blob, key, size, start, end) == data[start:end], (start, end)


def test_two_sealings_of_the_same_bytes_differ():
    key = crypto.new_file_key()
    assert sealed(b"same", key) != sealed(b"same", key)


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop-last-chunk", "swap-chunks",
                                    "wrong-key", "header"])
def test_tampering_is_caught(damage):
    key = crypto.new_file_key()
    data = os.urandom(3 * CHUNK + 5)
    blob = bytearray(sealed(data, key))
    stride = CHUNK + 16
    head = crypto.FILE_HEADER
    if damage == "flip":
        blob[head + CHUNK + 20] ^= 1
    elif damage == "truncate":
        blob = blob[:-3]
    elif damage == "drop-last-chunk":
        blob = blob[:head + 3 * stride]
    elif damage == "swap-chunks":
        blob[head:head + 2 * stride] = blob[head + stride:head + 2 * stride] + blob[head:head + stride]
    elif damage == "wrong-key":
        key = crypto.new_file_key()
    elif damage == "header":
        blob[0] ^= 1
    size = len(data) if damage != "drop-last-chunk" else 3 * CHUNK
    with pytest.raises(crypto.FileTampered):
        opened(bytes(blob), key, size)


def test_data_keys_are_wrapped_by_the_subject_key_and_shredded_with_it(ctx):
    person = factories.end_user()
    data_key = crypto.new_file_key()
    wrapped = crypto.wrap_file_key(person.id, data_key)
    assert crypto.file_key_owner(wrapped) == person.id
    assert data_key.hex() not in wrapped
    assert crypto.unwrap_file_key(wrapped) == data_key
    rewrapped = crypto.rewrap_file_key(wrapped)
    assert rewrapped != wrapped and crypto.unwrap_file_key(rewrapped) == data_key
    forged = wrapped.replace(f"s{person.id}:", f"s{person.id + 1000}:")  # another subject's slot
    assert crypto.unwrap_file_key(forged) is None
    crypto.destroy_subject_key(person.id)
    assert crypto.unwrap_file_key(wrapped) is None and crypto.unwrap_file_key(rewrapped) is None
    with pytest.raises(ValueError):
        crypto.wrap_file_key(person.id, data_key)


# -- through the app, on both stores ---------------------------------------------------

@pytest.fixture
def store_app(make_app, store_settings):
    return make_app(**store_settings)


def raw_objects(app) -> dict[str, bytes]:
    """Every stored object's bytes exactly as the store holds them."""
    store = storage.of(app.config)
    if isinstance(store, storage.LocalStore):
        root = Path(app.config["DATA_DIR"])
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {o.key: store.read_bytes(o.key) for o in store.list("")}


def upload(browser, data: bytes, name: str):
    resp = post_form(browser, "/tickets/new",
                     {"subject": "About my file", "description": "attached",
                      "attachments": [(io.BytesIO(data), name)]},
                     content_type="multipart/form-data")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return Attachment.select().order_by(Attachment.id.desc()).first()


def test_stored_objects_never_hold_the_clear_bytes(store_app, moto_server):
    marker = f"DISTINCTIVE-{secrets.token_hex(8)}-quarterly salary table"
    data = (marker + "\n").encode() * 5000  # ~250 KB, several chunks
    with store_app.app_context():
        customer = factories.end_user()
        browser = signed_in(store_app, customer)
        row = upload(browser, data, "salaries.txt")
        assert row.data_key is not None and row.size == len(data)
        assert row.sha256 == hashlib.sha256(data).hexdigest()  # of the clear bytes
        assert browser.get(f"/attachments/{row.id}").data == data

        objects = raw_objects(store_app)
        key = files.key_of(row.stored_name)
        assert any(k.endswith(key) for k in objects)  # the object is there...
        needle = marker.encode()
        hits = [k for k, raw in objects.items() if needle in raw or needle.lower() in raw.lower()]
        assert hits == []  # ...and no stored byte shows its text
        if store_app.config.get("STORAGE_URL"):
            bucket = store_app.config["STORAGE_URL"].split("/")[2]
            as_stored = moto_server.raw_objects(bucket)
            assert as_stored and not any(needle in raw for raw in as_stored.values())
        # The audit records that a key exists, never the key.
        assert all(row.data_key not in e.changes for e in AuditEntry.select())


def test_erasure_shreds_every_copy_of_the_file(store_app):
    data = b"my passport scan " * 1000
    with store_app.app_context():
        admin = factories.admin()
        customer = factories.end_user()
        row = upload(signed_in(store_app, customer), data, "passport.txt")
        key = files.key_of(row.stored_name)
        backup_copy = storage.of(store_app.config).read_bytes(key)  # e.g. in last night's backup
        assert opened(backup_copy, crypto.unwrap_file_key(row.data_key), row.size) == data

        erasure.start(admin, customer.id, "anonymize", erasure.placeholder(customer))
        assert not storage.of(store_app.config).exists(key)  # the purge step deleted the object
        assert crypto.unwrap_file_key(row.data_key) is None  # and no key opens the old copy
        with pytest.raises(FileNotFoundError):
            files.open_file(store_app.config, row)


# -- files stored clear before encryption --------------------------------------------

def legacy_attachment(app, ticket, uploader, data: bytes) -> Attachment:
    """An attachment as desk stored it before encryption: clear bytes, no data key."""
    name = secrets.token_hex(16)
    storage.of(app.config).put_bytes(files.key_of(name), data)
    return audit.create(audit.SYSTEM, Attachment, ticket=ticket, uploader=uploader,
                        filename="old.txt", stored_name=name, size=len(data),
                        sha256=hashlib.sha256(data).hexdigest())


def test_encrypt_files_seals_what_was_stored_clear(store_app):
    with store_app.app_context():
        customer = factories.end_user()
        ticket = factories.ticket(customer)
        contents = [f"legacy file {i} CLEARTEXT-MARK".encode() * (i * 9000 + 1) for i in range(4)]
        rows = [legacy_attachment(store_app, ticket, customer, d) for d in contents]
        altered = legacy_attachment(store_app, ticket, customer, b"original")
        storage.of(store_app.config).put_bytes(files.key_of(altered.stored_name), b"tampered")
        missing = legacy_attachment(store_app, ticket, customer, b"gone")
        files.remove_file(store_app.config, missing.stored_name)
        assert files.clear_count() == 6
        browser = signed_in(store_app, customer)
        before = [browser.get(f"/attachments/{r.id}").data for r in rows]
        assert before == contents

        result = CliRunner().invoke(cli, ["encrypt-files", "--batch", "2"], obj={"app": store_app})
        assert result.exit_code == 0, result.output
        assert "4 files encrypted, 2 left clear" in result.output
        assert f"SKIPPED: attachment #{altered.id}" in result.output
        assert f"SKIPPED: attachment #{missing.id}" in result.output

        for row, data in zip(rows, contents):
            fresh = Attachment.get_by_id(row.id)
            assert fresh.data_key is not None and fresh.stored_name != row.stored_name
            assert not files.exists(store_app.config, row.stored_name)  # the clear object is gone
            assert browser.get(f"/attachments/{row.id}").data == data
            assert browser.get(f"/attachments/{row.id}", headers={"Range": "bytes=5-20"}).data == data[5:21]
        assert not any(b"CLEARTEXT-MARK" in raw for raw in raw_objects(store_app).values())
        assert Attachment.get_by_id(altered.id).data_key is None  # left for storage-check to report
        assert FileRemoval.select().count() == 0
        assert [e.action for e in AuditEntry.select().where(AuditEntry.record_type == "Attachment",
                                                            AuditEntry.action == "encrypt")] == ["encrypt"] * 4
        again = CliRunner().invoke(cli, ["encrypt-files"], obj={"app": store_app})
        assert "0 files encrypted, 2 left clear" in again.output
        assert audit.verify()[0]


def test_a_run_cut_short_is_finished_by_the_next(ctx, monkeypatch):
    """The sealed copy is written, then the process dies before the row moves:
    the next run seals the file again and the purge sweeps the stray copy."""
    customer = factories.end_user()
    ticket = factories.ticket(customer)
    row = legacy_attachment(ctx, ticket, customer, b"clear bytes " * 100)
    real_transaction = audit.transaction

    def dies(*a, **kw):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(audit, "transaction", dies)
    with pytest.raises(KeyboardInterrupt):
        files.encrypt_stored(ctx.config)
    monkeypatch.setattr(audit, "transaction", real_transaction)
    assert Attachment.get_by_id(row.id).data_key is None
    assert len(list(files.stored_objects(ctx.config))) == 2  # the clear one and a stray sealed one

    report = files.encrypt_stored(ctx.config)
    assert report.sealed == 1 and not report.skipped
    fresh = Attachment.get_by_id(row.id)
    with files.open_file(ctx.config, fresh) as fh:
        assert fh.read() == b"clear bytes " * 100
    monkeypatch.setattr(files, "ORPHAN_AGE", dt.timedelta(seconds=-60))
    from desk.services import purge
    assert purge.sweep_orphans(ctx.config) == 1
    assert [files.name_of(o.key) for o in files.stored_objects(ctx.config)] == [fresh.stored_name]
    assert files.check(ctx.config).ok
