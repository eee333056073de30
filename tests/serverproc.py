"""The real production server (``python app.py run``) as a subprocess for tests.

``DeskServer`` starts it in a session of its own on a free port, waits for
/healthz, keeps its stdout and stderr in files, and at ``stop()`` ends the whole
process group (SIGTERM, then SIGKILL after a timeout), so no worker or scheduler
outlives the test. ``running_server`` wraps that as a context manager.

Also: small /proc helpers to see the server's processes, and a urllib opener
with a cookie jar that does not follow redirects (so tests see the 302 itself).
"""
from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent

# Fast password hashing and two workers, as the brief of these tests requires.
SERVER_ENV = {
    "DESK_ARGON2_TIME_COST": "1",
    "DESK_ARGON2_MEMORY_COST": "64",
    "DESK_WORKERS": "2",
}

SETUP_LINK_RE = re.compile(r"(https?)://127\.0\.0\.1:(\d+)/setup/([A-Za-z0-9_\-]+)")
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


class DeskServer:
    """One ``app.py run`` process group. Use ``start()`` / ``stop()`` or
    ``running_server(...)``."""

    def __init__(self, data_dir: Path, args: Sequence[str] = (), env: dict | None = None,
                 log_dir: Path | None = None, https: bool = False,
                 program: Sequence[str] | None = None, cwd: Path | None = None):
        self.data_dir = Path(data_dir)
        # What runs ``run``: ``python app.py`` here, or the single executable.
        self.program = list(program or [sys.executable, "app.py"])
        self.cwd = Path(cwd or ROOT)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.log_dir = Path(log_dir or self.data_dir.parent)
        self.https = https
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._out = self._err = None

    # -- lifecycle ---------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _environment(self) -> dict:
        # Start from this environment minus any DESK_* setting the caller may
        # have (a DESK_DATABASE_URL would send the server to another database).
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
        env.update(SERVER_ENV)
        env["DESK_DATA_DIR"] = str(self.data_dir)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0, attempts: int = 3) -> "DeskServer":
        """Start and wait for /healthz; retry on another port if the chosen one
        was taken in the meantime (parallel test runs)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            self._launch(attempt)
            try:
                self.wait_ready(timeout)
                return self
            except ServerStartError:
                in_use = any(m in self.stderr for m in ("Address already in use", "is in use;"))
                self.stop()
                if not in_use or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, attempt: int) -> None:
        self._close_logs()
        stem = f"server-{self.port}-{attempt}"
        self.stdout_path = self.log_dir / f"{stem}.out"
        self.stderr_path = self.log_dir / f"{stem}.err"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        cmd = [*self.program, "run", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self._environment(),
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"server exited with {self.proc.returncode}\n{self.logs()}")
            if f"Listening at: {self.base_url} " not in self.stderr:
                # Not bound yet (or the port is someone else's): do not ask whoever
                # else might answer on it.
                time.sleep(0.1)
                continue
            try:
                status, _, body = request(self.opener(), self.base_url + "/healthz", timeout=2)
                if status == 200 and b'"ok"' in body:
                    return
                last_error = RuntimeError(f"/healthz answered {status}: {body[:200]!r}")
            except (OSError, ssl.SSLError) as exc:
                last_error = exc
            time.sleep(0.1)
        raise ServerStartError(f"/healthz not ready after {timeout}s ({last_error})\n{self.logs()}")

    def stop(self, timeout: float = 15.0) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is not None:
            pgid = proc.pid  # start_new_session: the group id is the leader's pid
            _killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(pgid, signal.SIGKILL)
                proc.wait(10)
            # Whatever of the group is left (a worker or the scheduler that
            # outlived the master) goes too.
            _killpg(pgid, signal.SIGKILL)
        self._close_logs()

    def _close_logs(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None and not fh.closed:
                fh.close()

    # -- output ------------------------------------------------------------
    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def wait_for_output(self, pattern: str | re.Pattern, stream: str = "stdout",
                        timeout: float = 10.0) -> re.Match:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(getattr(self, stream))
            if match or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert match, f"{regex.pattern!r} not in {stream} after {timeout}s\n{self.logs()}"
        return match

    # -- processes ---------------------------------------------------------
    def children(self) -> list[int]:
        return children_of(self.pid)

    def worker_pids(self) -> set[int]:
        """Gunicorn workers still running (forks of the master: same command line)."""
        master = cmdline(self.pid)
        return {pid for pid in self.children() if cmdline(pid) == master}

    # -- HTTP --------------------------------------------------------------
    def opener(self, cookies: http.cookiejar.CookieJar | None = None,
               context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
        if context is None and self.https:
            context = insecure_client_context()
        return make_opener(cookies, context)


@contextlib.contextmanager
def running_server(data_dir: Path, args: Sequence[str] = (), **kwargs) -> Iterator[DeskServer]:
    server = DeskServer(data_dir, args, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- /proc ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int


def proc_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm sits in parentheses and may itself hold spaces or parentheses.
    head, _, tail = raw.rpartition(")")
    comm = head.split("(", 1)[1]
    fields = tail.split()
    return ProcStat(pid, comm, fields[0], int(fields[1]), int(fields[2]))


def is_alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def children_of(ppid: int) -> list[int]:
    """Live (non-zombie) direct children of ``ppid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat and stat.ppid == ppid and stat.state not in ("Z", "X"):
                found.append(stat.pid)
    return sorted(found)


# -- HTTP without requests -----------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None  # hand the 3xx back to the caller as it is


def insecure_client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_opener(cookies: http.cookiejar.CookieJar | None = None,
                context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    handlers = [_NoRedirect(), urllib.request.HTTPCookieProcessor(
        cookies if cookies is not None else http.cookiejar.CookieJar())]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def request(opener: urllib.request.OpenerDirector, url: str, data: dict | None = None,
            timeout: float = 10.0):
    """(status, headers, body) for GET, or POST of ``data`` as a form; 3xx/4xx/5xx
    are returned, not raised."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def csrf_token(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    match = CSRF_RE.search(text)
    assert match, "no csrf_token hidden input in the page"
    return match.group(1)



# -- mail the server queued ------------------------------------------------------
SIGNUP_LINK_PATH = r"/signup/confirm/[A-Za-z0-9_.\-]+"


def mailed_link(database: Path, recipient: str, path_re: str = SIGNUP_LINK_PATH,
                timeout: float = 10.0) -> str:
    """The path of the newest link matching ``path_re`` in mail the server
    queued for ``recipient``, read from its SQLite database (as a person
    would read it in their inbox)."""
    import sqlite3
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            bodies = [row[0] for row in conn.execute(
                "SELECT body FROM mail_message WHERE recipient = ? ORDER BY id DESC",
                (recipient.lower(),))]
        finally:
            conn.close()
        for body in bodies:
            match = re.search(path_re, body)
            if match:
                return match.group(0)
        assert time.monotonic() < deadline, f"no link {path_re!r} mailed to {recipient}"
        time.sleep(0.2)
