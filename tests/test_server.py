"""The real production server: ``python app.py run`` as a subprocess (gunicorn,
two workers, the scheduler process), on SQLite in a fresh data folder, and over
TLS with a self-signed certificate. No mocks: files on disk, HTTP on a socket,
processes in /proc, rows in the database."""
from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import http.cookiejar
import ipaddress
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.serverproc import ROOT
from tests.serverproc import SETUP_LINK_RE
from tests.serverproc import DeskServer
from tests.serverproc import cmdline
from tests.serverproc import csrf_token
from tests.serverproc import is_alive
from tests.serverproc import make_opener
from tests.serverproc import proc_stat
from tests.serverproc import request
from tests.serverproc import running_server

ADMIN = {"name": "Ada Admin", "email": "ada@example.com", "password": "correct horse battery"}


# -- helpers -------------------------------------------------------------------
def lease_rows(db_path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute("SELECT name, holder FROM lease ORDER BY name").fetchall()
    finally:
        conn.close()


def wait_for_lease(db_path: Path, timeout: float = 15.0, not_holder: str | None = None):
    """The scheduler lease row once it exists (and, if given, is not held by ``not_holder``)."""
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        rows = lease_rows(db_path)
        held = [r for r in rows if r[0] == "scheduler" and r[1] != not_holder]
        if held:
            return rows
        time.sleep(0.2)
    return rows


def holder_pid(holder: str) -> int:
    """The pid in a lease holder id ``host:pid:nonce``."""
    host, pid, nonce = holder.rsplit(":", 2)
    assert host == socket.gethostname() and re.fullmatch(r"[0-9a-f]{8}", nonce), holder
    return int(pid)


def scheduler_children(server: DeskServer) -> list[int]:
    """The master's children that are the scheduler (its own program, run_scheduler)."""
    return [pid for pid in server.children() if "run_scheduler" in cmdline(pid)]


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- a plain-HTTP server shared by the read-mostly tests -----------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    with running_server(base / "instance") as srv:
        yield srv


def test_first_start_creates_database_and_private_key_files(server):
    instance = server.data_dir
    db_file = instance / "desk.db"
    assert db_file.is_file()
    assert db_file.read_bytes()[:16] == b"SQLite format 3\x00"
    for name in ("secret_key", "keys.json"):
        path = instance / name
        assert path.is_file(), f"{name} missing"
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}, expected 0o600"
    assert len((instance / "secret_key").read_text().strip()) >= 32
    keyring = json.loads((instance / "keys.json").read_text())
    assert keyring["active"] in keyring["keys"]


def test_every_app_server_prints_the_same_setup_link(server):
    first = server.wait_for_output(SETUP_LINK_RE).group(3)
    with running_server(server.data_dir, ["--no-scheduler"],
                        log_dir=server.data_dir.parent / "second") as second:
        again = second.wait_for_output(SETUP_LINK_RE).group(3)
    assert again == first
    # Only sealed in the database: the token itself is not stored in clear.
    conn = sqlite3.connect(server.data_dir / "desk.db", timeout=10)
    try:
        (stored,) = conn.execute("SELECT value FROM setting WHERE key = 'setup_token'").fetchone()
    finally:
        conn.close()
    assert first not in stored and "secret:v1:" in stored


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_a_busy_port_gives_one_clear_message(tmp_path):
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
        env["DESK_DATA_DIR"] = str(tmp_path / "instance")
        done = subprocess.run([sys.executable, "app.py", "run", "--port", str(port)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"port {port} is in use; try make run PORT=" in done.stderr
    assert "serving" not in done.stdout + done.stderr
    assert "setup" not in done.stdout


def test_make_run_passes_port_and_host_through(tmp_path):
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
        env["DESK_DATA_DIR"] = str(tmp_path / "instance")
        done = subprocess.run(["make", "--no-print-directory", "-o", "translations", "run", f"PORT={port}",
                               "HOST=127.0.0.1"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert f"--host 127.0.0.1 --port {port}" in done.stdout
    assert f"port {port} is in use; try make run PORT=" in done.stderr
    assert "serving" not in done.stdout
    assert done.returncode != 0


def test_setup_link_creates_the_first_admin_once(server):
    match = server.wait_for_output(SETUP_LINK_RE)
    link = match.group(0)
    assert match.group(1) == "http" and int(match.group(2)) == server.port
    assert "No administrator yet" in server.stdout

    jar = http.cookiejar.CookieJar()
    browser = server.opener(jar)
    status, _, page = request(browser, link)
    assert status == 200
    assert b"Create the first administrator" in page
    token = csrf_token(page)

    # Without the CSRF token nothing happens and the link keeps working.
    status, _, _ = request(make_opener(), link, dict(ADMIN))
    assert status == 400
    assert request(make_opener(), link)[0] == 200

    status, headers, _ = request(browser, link, {**ADMIN, "csrf_token": token})
    assert status in (302, 303), f"setup POST answered {status}"
    location = urljoin(link, headers["Location"])
    assert location.endswith("/agent/tickets")

    # Signed in as the new administrator (the session cookie works across workers).
    status, _, page = request(browser, location)
    assert status == 200
    assert ADMIN["name"].encode() in page
    assert b"Sign out" in page

    # The link is spent, for a stranger and for the admin alike.
    assert request(make_opener(), link)[0] == 404
    assert request(browser, link)[0] == 404
    # The token itself was never stored in clear (database file nor its WAL).
    for db_part in server.data_dir.glob("desk.db*"):
        assert match.group(3).encode() not in db_part.read_bytes(), db_part.name


def test_served_by_gunicorn_not_the_development_server(server):
    status, headers, _ = request(make_opener(), server.base_url + "/healthz")
    assert status == 200
    assert headers["Server"].lower().startswith("gunicorn")
    logs = server.logs()
    assert "Starting gunicorn" in logs
    assert "Using worker: gthread" in logs
    assert "werkzeug" not in logs.lower()
    assert "development server" not in logs.lower()
    # DESK_WORKERS=2: two gunicorn workers, the ones the log says it booted.
    booted = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", server.stderr)}
    assert server.worker_pids() == booted
    assert len(booted) == 2


def test_scheduler_runs_in_exactly_one_process(server):
    db_file = server.data_dir / "desk.db"
    rows = wait_for_lease(db_file)
    assert [name for name, _ in rows] == ["scheduler"], rows
    holder = rows[0][1]
    pid = holder_pid(holder)

    # The lease holder is the master's one scheduler child: not a worker, not the master.
    workers = server.worker_pids()
    assert len(workers) == 2
    assert pid != server.pid and pid not in workers
    assert is_alive(pid)
    assert proc_stat(pid).ppid == server.pid
    assert scheduler_children(server) == [pid]
    assert f"scheduler process {pid} started" in server.stderr

    # A few seconds on, still one row and the same holder (no one else took over).
    time.sleep(2.5)
    assert lease_rows(db_file) == [("scheduler", holder)]
    assert scheduler_children(server) == [pid]
    # And nowhere else in the server's process group is there another scheduler.
    group = [p for p in _group_members(server.pid) if "run_scheduler" in cmdline(p)]
    assert group == [pid]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st and st.pgid == pgid and st.state not in ("Z", "X"):
                members.append(st.pid)
    return members


# -- scheduler lifetime (each with a server of its own) ------------------------
def test_scheduler_survives_a_worker_exiting(tmp_path):
    with running_server(tmp_path / "instance") as srv:
        rows = wait_for_lease(srv.data_dir / "desk.db")
        assert rows, srv.logs()
        scheduler = holder_pid(rows[0][1])
        workers = srv.worker_pids()
        assert len(workers) == 2
        # One worker fewer (gunicorn's TTOU), as on a scale-down or a graceful worker restart.
        os.kill(srv.pid, signal.SIGTTOU)
        assert wait_until(lambda: len(srv.worker_pids()) == 1, 10), srv.logs()
        time.sleep(1.0)
        assert is_alive(scheduler), f"scheduler {scheduler} died with a worker\n{srv.logs()}"
        assert scheduler_children(srv) == [scheduler]


def test_restarted_server_takes_over_the_scheduler_lease_at_once(tmp_path):
    data_dir = tmp_path / "instance"
    db_file = data_dir / "desk.db"
    with running_server(data_dir) as first:
        rows = wait_for_lease(db_file)
        assert rows, first.logs()
        old_holder = rows[0][1]
    # Stopped cleanly (SIGTERM to the group, as systemd does): the lease is let go ...
    assert lease_rows(db_file) == [], "scheduler lease still held after a clean stop"
    # ... so the next start's scheduler holds it at once.
    with running_server(data_dir) as second:
        rows = wait_for_lease(db_file, timeout=8, not_holder=old_holder)
        assert [r[0] for r in rows] == ["scheduler"]
        assert holder_pid(rows[0][1]) in scheduler_children(second)


# -- TLS -----------------------------------------------------------------------
def make_self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "desk test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "c.pem", directory / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed(base)
    with running_server(base / "instance", ["--cert", str(cert), "--key", str(key)],
                        https=True) as srv:
        srv.cert, srv.key = cert, key
        yield srv


def verifying_context(cert: Path, minimum=ssl.TLSVersion.TLSv1_2, maximum=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))  # verifies chain and 127.0.0.1 SAN
    ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def handshake(port: int, ctx: ssl.SSLContext) -> str:
    """Connect and complete a TLS handshake; the negotiated protocol."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()


def old_protocol_client() -> ssl.SSLContext:
    """A client that offers only TLS 1.0/1.1 (with every cipher allowed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point here
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def local_openssl_speaks_tls_1_1(cert: Path, key: Path) -> bool:
    """Control: can ``old_protocol_client`` complete a TLS 1.1 handshake with a
    permissive in-process server? If not, this OpenSSL cannot offer TLS 1.1 at all."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1
    server_ctx.load_cert_chain(cert, key)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def accept():
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                server_ctx.wrap_socket(conn, server_side=True).close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            return handshake(listener.getsockname()[1], old_protocol_client()) == "TLSv1.1"
        except (ssl.SSLError, OSError):
            return False
        finally:
            thread.join(5)


def test_tls_refuses_protocols_older_than_1_2(tls_server):
    with pytest.raises(ssl.SSLError) as refused:
        version = handshake(tls_server.port, old_protocol_client())
        pytest.fail(f"server accepted a {version} handshake")
    if local_openssl_speaks_tls_1_1(tls_server.cert, tls_server.key):
        # The client did offer TLS 1.1 (the control server took it): desk said no.
        assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value
    # Otherwise this OpenSSL cannot offer TLS 1.1 at all: no session below 1.2 either way.


def test_tls_1_2_and_newer_are_served_with_hsts(tls_server):
    assert handshake(tls_server.port, verifying_context(tls_server.cert)) in ("TLSv1.2", "TLSv1.3")
    exactly_12 = verifying_context(tls_server.cert, maximum=ssl.TLSVersion.TLSv1_2)
    assert handshake(tls_server.port, exactly_12) == "TLSv1.2"

    conn = http.client.HTTPSConnection("127.0.0.1", tls_server.port, timeout=10,
                                       context=verifying_context(tls_server.cert))
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and json.loads(body)["status"] == "ok"
        hsts = resp.getheader("Strict-Transport-Security")
        assert hsts, "no Strict-Transport-Security header over https"
        max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
        assert max_age >= 180 * 24 * 3600
    finally:
        conn.close()


def test_session_cookie_is_secure_over_https(tls_server):
    conn = http.client.HTTPSConnection("127.0.0.1", tls_server.port, timeout=10,
                                       context=verifying_context(tls_server.cert))
    try:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        page = resp.read()
        cookies = resp.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()
    assert resp.status == 200 and b"csrf_token" in page
    session = [c for c in cookies if c.startswith("session=")]
    assert len(session) == 1, cookies
    attributes = {part.strip().split("=")[0].lower() for part in session[0].split(";")[1:]}
    assert {"secure", "httponly", "samesite"} <= attributes, session[0]

    # A cookie jar agrees: it would send this cookie over https only.
    jar = http.cookiejar.CookieJar()
    opener = tls_server.opener(jar, context=verifying_context(tls_server.cert))
    assert request(opener, tls_server.base_url + "/login")[0] == 200
    assert [c.secure for c in jar if c.name == "session"] == [True]


def test_https_setup_link_uses_https(tls_server):
    match = tls_server.wait_for_output(SETUP_LINK_RE)
    assert match.group(1) == "https" and int(match.group(2)) == tls_server.port
    opener = tls_server.opener(context=verifying_context(tls_server.cert))
    assert request(opener, match.group(0))[0] == 200


def test_the_worker_model_is_a_setting_and_a_wrong_one_is_refused(tmp_path):
    """DESK_WORKER_CLASS=sync serves the pages like the default gthread
    workers; anything else is a clear usage error before anything starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    env.update(DESK_DATA_DIR=str(tmp_path / "bad"), DESK_WORKER_CLASS="eventlet")
    done = subprocess.run([sys.executable, "app.py", "run", "--port", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "DESK_WORKER_CLASS is gthread or sync" in done.stderr
    assert "serving" not in done.stdout
    server = DeskServer(tmp_path / "instance", env={"DESK_WORKER_CLASS": "sync"}).start()
    try:
        opener = make_opener()
        for path in ("/healthz", "/login", "/privacy"):
            status, _headers, _body = request(opener, server.base_url + path)
            assert status == 200, path
        assert "sync" in server.stderr or "Booting worker" in server.stderr
        assert "gthread" not in server.stderr
    finally:
        server.stop()
