"""The single executable (``make dist`` -> dist/desk), smoke-tested as a new
user would use it, in a fresh folder: init (the data folder appears next to the
executable), create-admin, run on a free port, /healthz, sign in, an end user
submits a ticket with an attachment and gets it back byte for byte, the admin
sees it, audit-verify, stop.

Runs when dist/desk exists (or DESK_TEST_DIST names the file); CI builds it once
before the tests and sets DESK_TEST_REQUIRE_DIST=1, so a missing file fails."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import uuid
from pathlib import Path

import pytest

from tests.serverproc import ROOT
from tests.serverproc import SERVER_ENV
from tests.serverproc import children_of
from tests.serverproc import cmdline
from tests.serverproc import csrf_token
from tests.serverproc import mailed_link
from tests.serverproc import make_opener
from tests.serverproc import request
from tests.serverproc import running_server

DIST = Path(os.environ.get("DESK_TEST_DIST", ROOT / "dist" / "desk"))
REQUIRED = os.environ.get("DESK_TEST_REQUIRE_DIST") == "1"
ADMIN = ("ada@example.com", "Ada Admin", "admin horse battery")
FILE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def executable(tmp_path_factory) -> Path:
    """A copy of the built file alone in a fresh folder."""
    if not DIST.is_file():
        message = f"no single executable at {DIST} (make dist builds it)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("desk-exe")
    target = folder / "desk"
    shutil.copy2(DIST, target)
    return target


def desk(exe: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    base.update(SERVER_ENV, **(env or {}))
    return subprocess.run([str(exe), *args], cwd=cwd or exe.parent, env=base,
                          capture_output=True, text=True, timeout=300)


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_multipart(opener, url: str, fields: dict, files: dict):
    import urllib.request
    body, content_type = multipart(fields, files)
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the one-file executable starts itself as a child)."""
    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def sign_in(opener, base: str, email: str, password: str) -> None:
    token = csrf_token(request(opener, base + "/login")[2])
    status, headers, _ = request(opener, base + "/login",
                                 {"email": email, "password": password, "csrf_token": token})
    assert status == 302, status


def test_the_single_executable_serves_a_whole_first_day(executable, tmp_path):
    folder = executable.parent
    # Run from elsewhere: the data folder still goes next to the executable.
    done = desk(executable, "init", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"database ready \(\d+ migration", done.stdout)
    assert int(re.search(r"\((\d+) migration", done.stdout).group(1)) >= 4
    data = folder / "instance"
    assert (data / "desk.db").is_file() and (data / "keys.json").is_file()
    assert not (tmp_path / "instance").exists()
    done = desk(executable, "create-admin", "--email", ADMIN[0], "--name", ADMIN[1],
                "--password", ADMIN[2])
    assert done.returncode == 0, done.stdout + done.stderr

    with running_server(data, program=[str(executable)], cwd=folder,
                        log_dir=tmp_path / "logs") as server:
        base = server.base_url
        status, _, body = request(make_opener(), base + "/healthz")
        assert status == 200 and b'"ok"' in body
        # Templates, static files and the Chinese catalogue came along.
        status, _, css = request(make_opener(), base + "/static/desk.css")
        assert status == 200 and b"--accent" in css
        chinese = make_opener()
        status, _, page = request(chinese, base + "/login")
        token = csrf_token(page)
        request(chinese, base + "/language", {"language": "zh_Hans", "next": "/login",
                                              "csrf_token": token})
        assert "登录".encode() in request(chinese, base + "/login")[2]

        # An end user signs up and submits a ticket with a file.
        customer = make_opener()
        token = csrf_token(request(customer, base + "/signup")[2])
        status, _, _ = request(customer, base + "/signup", {
            "name": "Rita Requester", "email": "rita@example.com",
            "password": "correct horse battery", "csrf_token": token})
        assert status == 200
        link = base + mailed_link(data / "desk.db", "rita@example.com")
        token = csrf_token(request(customer, link)[2])
        status, _, _ = request(customer, link, {"password": "correct horse battery",
                                                "csrf_token": token})
        assert status == 302
        token = csrf_token(request(customer, base + "/tickets/new")[2])
        status, headers, _ = post_multipart(customer, base + "/tickets/new", {
            "subject": "Printer shows a red light", "description": "Photo attached.",
            "csrf_token": token}, {"attachments": ("red.png", FILE)})
        assert status == 302, status
        ticket_url = base + headers["Location"] if headers["Location"].startswith("/") else headers["Location"]
        page = request(customer, ticket_url)[2].decode()
        file_url = re.search(r'href="(/attachments/\d+)"', page).group(1)
        status, _, got = request(customer, base + file_url)
        assert status == 200 and got == FILE

        # The administrator signs in and sees it.
        admin = make_opener()
        sign_in(admin, base, ADMIN[0], ADMIN[2])
        status, _, page = request(admin, base + "/agent/tickets?view=all")
        assert status == 200 and b"Printer shows a red light" in page
        # The scheduler runs from the same file (its own hidden command).
        assert wait_until(lambda: any("run-scheduler" in cmdline(pid)
                                      for pid in descendants(server.pid)), 30)

    done = desk(executable, "audit-verify")
    assert done.returncode == 0 and done.stdout.startswith("OK:"), done.stdout + done.stderr
