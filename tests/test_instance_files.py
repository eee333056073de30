"""Instance data is owner-only: the data folder and every folder in it 0700,
every file 0600 (the database, attachments, outbox mail, exports, keys), made
so under the umask 077 and repaired at start-up on older instances."""
from __future__ import annotations

import io
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from desk.db import db
from desk.services import attachments as files
from desk.services import bulk_export
from desk.services import mail
from desk.services import tickets as ticket_service
from tests import factories

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def old_umask():
    """A process started the usual way (umask 022), as before desk set its own."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(*roots: Path) -> dict[str, int]:
    """Every folder and file under ``roots`` (links not followed) -> its mode."""
    found = {}
    for root in roots:
        found[str(root)] = stat.S_IMODE(root.lstat().st_mode)
        for top, dirs, names in os.walk(root):
            for name in dirs + names:
                path = Path(top, name)
                if not path.is_symlink():
                    found[str(path)] = stat.S_IMODE(path.lstat().st_mode)
    return found


def sqlite_files(app) -> list[Path]:
    url = app.config["DATABASE_URL"]
    if not url.startswith("sqlite:///"):
        return []
    base = url.removeprefix("sqlite:///")
    return [Path(base + s) for s in ("", "-wal", "-shm", "-writers") if Path(base + s).exists()]


def fill(app) -> None:
    """Real instance files: a ticket with an attachment, outbox mail, a bulk export."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        admin = factories.admin(name="Ada Admin")
        customer = factories.end_user(email="carl@example.com")
        ticket_service.submit(customer, "Printer", "It smokes.", None,
                              [files.Upload(filename="report.txt", stream=io.BytesIO(b"body"))])
        mail.queue("carl@example.com", "Hello", "A body.\n")
        assert mail.deliver_pending(app.config)[0] >= 1
        row = bulk_export.start(admin)
        assert bulk_export.run(row.id).status == "done"
        db.close()


def assert_private(app) -> None:
    data = Path(app.config["DATA_DIR"])
    found = modes(data)
    for path in sqlite_files(app):
        found[str(path)] = stat.S_IMODE(path.stat().st_mode)
    for kind in ("attachments", "outbox", "exports"):
        assert any(p.startswith(str(data / kind) + "/") and Path(p).is_file() for p in found), kind
    wrong = {p: oct(m) for p, m in found.items() if m != (0o700 if Path(p).is_dir() else 0o600)}
    assert wrong == {}


def test_a_new_instance_is_owner_only(make_app, old_umask, backend):
    app = make_app()
    fill(app)
    assert_private(app)
    if backend == "sqlite":
        assert sqlite_files(app)  # the database file was checked too


def test_an_old_instance_is_repaired_at_start_with_a_warning(make_app, old_umask, backend,
                                                            tmp_path, caplog):
    app = make_app()
    fill(app)
    data = Path(app.config["DATA_DIR"])
    outside = tmp_path / "not-ours.txt"
    outside.write_text("someone else's file")
    outside.chmod(0o644)
    (data / "link-to-outside").symlink_to(outside)
    for path in [data, *sqlite_files(app), *map(Path, modes(data))]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)

    caplog.set_level(logging.WARNING, logger="desk.instance_files")
    app = make_app()
    assert_private(app)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # a link is never followed
    warnings = [r.getMessage() for r in caplog.records if r.name == "desk.instance_files"]
    assert warnings and "owner-only" in warnings[0] and str(data) in warnings[0]
    assert "carl" not in " ".join(warnings) and ".eml" not in " ".join(warnings)

    caplog.clear()
    make_app()  # nothing left to repair: no warning
    assert not [r for r in caplog.records if r.name == "desk.instance_files"]


def test_the_command_line_starts_owner_only(tmp_path):
    """A real process started with the usual umask 022."""
    data = tmp_path / "instance"
    env = dict(os.environ, DESK_DATA_DIR=str(data), DESK_DATABASE_URL="",
               DESK_SECRET_KEY="", DESK_MASTER_KEY="")
    subprocess.run([sys.executable, "app.py", "init"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    found = modes(data)
    assert str(data / "desk.db") in found
    assert {p: oct(m) for p, m in found.items() if m != (0o700 if Path(p).is_dir() else 0o600)} == {}
