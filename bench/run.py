"""The desk benchmark suite (``make bench``). See bench/RESULTS.md for the latest numbers.

    python bench/run.py [--scale 0.1] [--duration 10] [--no-pg]

1. Generates a fresh SQLite instance with bench/generate.py (and a PostgreSQL
   one, database ``desk_bench``, for scenario 5; dropped at the end).
2. Starts the production server (``app.py run``: gunicorn, gthread workers,
   the scheduler beside them) and drives it with wrk at 8 concurrent
   connections for a fixed time per scenario, after a short warm-up:
     0. a bare Flask app (bench/ceiling.py, one view returning a short string)
        under the same gunicorn settings: the physical ceiling of the stack;
     1. /healthz and GET /login (a minimal page): desk's own ceiling;
     2. the heavy end user's /my/tickets page 1 and page 40;
     3. /my/tickets/<id> with 10 comments;
     4. /agent/tickets, default view and a text search (q=refund, and 金额错误);
     5. an agent reply POST (wrk Lua script with CSRF token and cookie),
        on SQLite and on PostgreSQL.
   For each: requests/s, p50, p99, errors (socket errors, timeouts and any
   response whose status is not the expected one, read from the server's
   access log) and the peak RSS of the server (gunicorn master + workers,
   summed, sampled from /proc while the load runs).
3. Batch scenarios: the heavy user's data export (time and peak RSS, against
   the sqlite3 tool dumping the same columns of the same rows), the purge of
   the recycled items (time, and My Tickets p99 while it runs vs idle), the
   query count of the list pages for 5 vs 2,000 tickets, and anonymizing the
   heavy user (last: it changes the data).
4. Writes bench/RESULTS.md (machine, date, scale, tables, ratios, targets)
   and bench/out/results.json. The section of RESULTS.md between the
   ``analysis`` markers is kept from run to run (hand-written findings).

The machine is shared: only RATIOS measured within one run mean anything.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.cookiejar
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
UA = "desk-bench/1"  # flask-login's strong session protection hashes the user agent
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
ACCESS_RE = re.compile(r'"([A-Z]+) ([^" ]*)" (\d{3}) ')
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SEARCH = "refund"
SEARCH_ZH = urllib.parse.quote("金额错误")
ANALYSIS_START = "<!-- analysis: kept between runs -->"
ANALYSIS_END = "<!-- /analysis -->"

REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the server ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def children_of(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = raw.rpartition(")")[2].split()
        if int(fields[1]) == ppid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


class Server:
    """``python app.py run`` in a session of its own; stop() ends the whole group
    (master, workers and scheduler), as tests/serverproc.py does."""

    def __init__(self, name: str, data_dir: Path, url: str, workers: int, logs: Path,
                 settle: float = 6, argv: list[str] | None = None, probe: str = "/healthz",
                 extra_env: dict | None = None):
        self.name, self.data_dir, self.url, self.workers = name, data_dir, url, workers
        self.extra_env = extra_env or {}
        self.settle = settle
        self.argv = argv or ["app.py", "run"]
        self.probe = probe
        self.logs = logs
        self.proc = None
        self.port = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
        env.update(DESK_DATA_DIR=str(self.data_dir), DESK_DATABASE_URL=self.url,
                   DESK_ARGON2_TIME_COST="1", DESK_ARGON2_MEMORY_COST="64", **self.extra_env)
        for attempt in range(3):
            self.port = free_port()
            self.out_path = self.logs / f"server-{self.name}-{self.port}.out"
            self.err_path = self.logs / f"server-{self.name}-{self.port}.err"
            with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
                self.proc = subprocess.Popen(
                    [PY, *self.argv, "--port", str(self.port), "--workers", str(self.workers)],
                    cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if f"Listening at: {self.base} " in self.err_path.read_text(errors="replace"):
                    with contextlib.suppress(OSError):
                        if http_get(self.base + self.probe)[0] == 200 and len(self.worker_pids()) >= self.workers:
                            # The scheduler runs every job once at start (mail, the
                            # hourly purge's scans...): let that pass before measuring.
                            time.sleep(self.settle)
                            return self
                time.sleep(0.2)
            in_use = "Address already in use" in self.err_path.read_text(errors="replace")
            self.stop()
            if not in_use:
                break
        raise RuntimeError(f"server {self.name} did not start:\n"
                           + self.err_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(25)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None

    def worker_pids(self) -> list[int]:
        master = cmdline(self.proc.pid)
        return [pid for pid in children_of(self.proc.pid) if cmdline(pid) == master]

    def rss_kb(self, pids: list[int]) -> int:
        return sum(read_kb(pid) for pid in [self.proc.pid, *pids])

    def log_offset(self) -> int:
        return self.out_path.stat().st_size

    def statuses_since(self, offset: int, method: str, path: str) -> dict[str, int]:
        """Response statuses of ``method path`` (query string aside) logged since ``offset``."""
        with self.out_path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        counts: dict[str, int] = {}
        for match in ACCESS_RE.finditer(text):
            if match.group(1) == method and match.group(2) == path.split("?", 1)[0]:
                counts[match.group(3)] = counts.get(match.group(3), 0) + 1
        return counts


class RssSampler:
    """Peak of (master + workers) RSS while the load runs, sampled from /proc."""

    def __init__(self, server: Server, interval: float = 0.2):
        self.server, self.interval = server, interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        pids, rescan = self.server.worker_pids(), time.monotonic() + 2
        while not self._stop.is_set():
            if time.monotonic() > rescan:
                pids, rescan = self.server.worker_pids(), time.monotonic() + 2
            self.peak = max(self.peak, self.server.rss_kb(pids))
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# -- HTTP ------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def http_get(url: str, headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(_NoRedirect())
    req = urllib.request.Request(url, headers={"User-Agent": UA, **(headers or {})})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


class Session:
    """A signed-in browser: a cookie jar, our user agent, no redirects followed."""

    def __init__(self, base: str, email: str, password: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.addheaders = [("User-Agent", UA)]
        status, body = self.request("/login")
        token = CSRF_RE.search(body.decode()).group(1)
        status, _ = self.request("/login", {"csrf_token": token, "email": email, "password": password})
        if status != 302:
            raise RuntimeError(f"sign-in as {email} answered {status}")

    def request(self, path: str, data: dict | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(urllib.request.Request(self.base + path, data=body), timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    def csrf(self, path: str) -> str:
        status, body = self.request(path)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
        return CSRF_RE.search(body.decode()).group(1)

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


# -- wrk -----------------------------------------------------------------------------

class Load:
    def __init__(self, args, out: Path):
        self.args, self.out = args, out
        self.lua_dir = out / "lua"
        self.lua_dir.mkdir(parents=True, exist_ok=True)

    def _script(self, name: str, post: dict | None) -> Path:
        text = REPORT_LUA
        if post is not None:
            body = urllib.parse.urlencode(post)
            text = (f'wrk.method = "POST"\nwrk.body = "{body}"\n'
                    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n') + text
        path = self.lua_dir / f"{name}.lua"
        path.write_text(text)
        return path

    def command(self, url: str, duration: float, script: Path, headers: dict) -> list[str]:
        cmd = ["wrk", "-t2", f"-c{self.args.clients}", f"-d{int(duration)}s", "--timeout", "30s",
               "-s", str(script)]
        for key, value in {"User-Agent": UA, **headers}.items():
            cmd += ["-H", f"{key}: {value}"]
        return cmd + [url]

    def ceiling(self, server: Server) -> dict:
        """A short run of the minimal page right before a scenario: the machine is
        shared, so each scenario is compared with a ceiling measured next to it."""
        script = self._script("paired_ceiling", None)
        proc = subprocess.run(self.command(server.base + "/login", self.args.pair, script, {}),
                              capture_output=True, text=True, check=False)
        data = json.loads(re.search(r"BENCHJSON (\{.*\})", proc.stdout).group(1))
        return {"rps": round(data["requests"] / (data["duration_us"] / 1e6), 1),
                "p50_ms": data["p50"] / 1000, "p99_ms": data["p99"] / 1000}

    def run(self, server: Server, name: str, path: str, headers: dict | None = None,
            post: dict | None = None, expect: int = 200, duration: float | None = None,
            until=None, pair: bool = True) -> dict:
        """Measure the ceiling next to it (``pair``), warm up, then load ``path``
        for ``duration`` seconds (or until ``until()`` turns true, then wrk is
        stopped with SIGINT)."""
        headers = dict(headers or {})
        adjacent = self.ceiling(server) if pair and self.args.pair else None
        script = self._script(name, post)
        url = server.base + path
        if self.args.warmup and until is None:
            subprocess.run(self.command(url, self.args.warmup, script, headers),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        offset = server.log_offset()
        duration = duration or self.args.duration
        with RssSampler(server) as rss:
            proc = subprocess.Popen(self.command(url, 3600 if until else duration, script, headers),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if until is not None:
                while not until():
                    time.sleep(0.1)
                proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate()
        time.sleep(0.5)  # let the access log catch up
        statuses = server.statuses_since(offset, "POST" if post else "GET", path)
        match = re.search(r"BENCHJSON (\{.*\})", output)
        if not match:
            raise RuntimeError(f"wrk gave no report for {name}:\n{output}")
        data = json.loads(match.group(1))
        seconds = data["duration_us"] / 1e6
        wrong = sum(n for code, n in statuses.items() if int(code) != expect)
        socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
        result = {
            "name": name, "server": server.name, "path": path, "method": "POST" if post else "GET",
            "seconds": round(seconds, 2), "requests": data["requests"],
            "rps": round(data["requests"] / seconds, 1),
            "p50_ms": data["p50"] / 1000, "p90_ms": data["p90"] / 1000, "p99_ms": data["p99"] / 1000,
            "max_ms": data["max"] / 1000, "errors": socket_errors + wrong,
            "socket_errors": socket_errors, "statuses": statuses, "expected_status": expect,
            "peak_rss_mb": round(rss.peak / 1024, 1),
        }
        result["p99_over_p50"] = round(result["p99_ms"] / result["p50_ms"], 2) if result["p50_ms"] else None
        if adjacent and adjacent["rps"]:
            result["ceiling"] = adjacent
            result["ratio_adjacent"] = round(result["rps"] / adjacent["rps"], 3)
        log(f"  {name:28} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:8.1f} ms  "
            f"p99 {result['p99_ms']:8.1f} ms  errors {result['errors']}  rss {result['peak_rss_mb']} MB"
            + (f"  (ceiling next to it {adjacent['rps']:.1f} req/s)" if adjacent else ""))
        return result


def check_page(server: Server, path: str, cookie: str, marker: str | None = None, minimum: int = 1) -> None:
    """The page answers 200 for this cookie (not a redirect to sign-in), with content."""
    status, body = http_get(server.base + path, {"Cookie": cookie} if cookie else None)
    if status != 200:
        raise RuntimeError(f"{path} answered {status} before the load")
    if marker and body.decode().count(marker) < minimum:
        raise RuntimeError(f"{path}: expected {minimum}x {marker!r}")


# -- batch helpers ------------------------------------------------------------------------

def task(name: str, data_dir: Path, url: str, out: Path, timeout: float = 900) -> dict:
    proc = subprocess.run([PY, str(BENCH / "tasks.py"), name, "--data-dir", str(data_dir),
                           "--url", url, "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=_env_without_desk())
    match = re.search(r"^BENCHJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"task {name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(match.group(1))


def _env_without_desk() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}


def generate(url: str, data_dir: Path, scale: float) -> dict:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    proc = subprocess.run([PY, str(BENCH / "generate.py"), "--url", url, "--data-dir", str(data_dir),
                           "--scale", str(scale)], cwd=ROOT, capture_output=True, text=True,
                          env=_env_without_desk())
    if proc.returncode != 0:
        raise RuntimeError(f"generate failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    for line in proc.stdout.strip().splitlines():
        log("  " + line.strip())
    meta = json.loads((data_dir / "bench.json").read_text())
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    return meta


def sqlite_csv(db_path: Path, heavy_id: int, out: Path) -> dict:
    """The sqlite3 tool's own CSV of the same columns of the same rows as the
    export's tickets.csv and comments.csv (time and peak RSS of the tool)."""
    h = int(heavy_id)
    sql = (
        "SELECT t.id, t.subject, t.description, t.status, t.priority, COALESCE(d.name, '') AS department, "
        "t.created_at, t.updated_at FROM ticket t LEFT JOIN department d ON d.id = t.department_id "
        f"WHERE t.requester_id = {h} AND t.deleted_at IS NULL ORDER BY t.id;\n"
        "SELECT c.id, c.ticket_id, a.name AS author, c.is_public, c.body, c.created_at, "
        "COALESCE((SELECT group_concat(f.id || '-' || f.filename, ';') FROM attachment f "
        "WHERE f.comment_id = c.id AND f.deleted_at IS NULL), '') AS attachments "
        "FROM comment c JOIN user a ON a.id = c.author_id "
        f"WHERE ((c.ticket_id IN (SELECT id FROM ticket WHERE requester_id = {h} AND deleted_at IS NULL) "
        f"AND c.is_public = 1) OR c.author_id = {h}) AND c.deleted_at IS NULL ORDER BY c.id;\n")
    best = None
    for _ in range(3):
        with (out / "sqlite3.csv").open("wb") as fh:
            started = time.perf_counter()
            proc = subprocess.Popen(["sqlite3", "-readonly", "-csv", "-header", str(db_path), sql],
                                    stdout=fh, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError("sqlite3 failed: " + proc.stderr.read().decode())
        lines = sum(1 for _ in (out / "sqlite3.csv").open("rb"))
        run = {"seconds": elapsed, "peak_rss_kb": usage.ru_maxrss, "bytes": (out / "sqlite3.csv").stat().st_size,
               "lines": lines}
        best = run if best is None or run["seconds"] < best["seconds"] else best
    return best


# -- PostgreSQL ---------------------------------------------------------------------------

def pg_database(admin_url: str, name: str, create: bool) -> str | None:
    try:
        import psycopg2
        conn = psycopg2.connect(admin_url, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL: scenario 5 runs on SQLite only
        log(f"PostgreSQL unreachable ({exc.__class__.__name__}); skipping it")
        return None
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if create:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


# -- the machine ----------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    sqlite = subprocess.run(["sqlite3", "-version"], capture_output=True, text=True).stdout.split()
    return {"nproc": os.cpu_count(), "ram_gb": round(mem / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "kernel": platform.release(),
            "wrk": wrk[0] if wrk else "?", "sqlite3": sqlite[0] if sqlite else "?"}


def app_version() -> str:
    """The commit the app was measured at (and whether its code had local changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "desk", "templates", "app.py"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with local changes to the app" if dirty else "")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the run ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description="desk benchmark suite")
    parser.add_argument("--scale", type=float, default=0.1, choices=(0.01, 0.1, 1.0))
    parser.add_argument("--duration", type=float, default=8, help="seconds of load per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per scenario")
    parser.add_argument("--pair", type=float, default=4,
                        help="seconds of GET /login measured right before each scenario (0: none)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG),
                        help="a PostgreSQL URL whose server may get a desk_bench database")
    parser.add_argument("--pg-scale", type=float, default=None, choices=(0.01, 0.1, 1.0),
                        help="scale of the PostgreSQL instance (default: --scale)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--keep-pg", action="store_true", help="do not drop desk_bench at the end")
    parser.add_argument("--out", default=str(BENCH / "out"))
    parser.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if not shutil.which("sqlite3"):
        print("bench: sqlite3 is missing (apt-get install -y sqlite3)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir()
    started = time.perf_counter()
    R: dict = {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "scale": args.scale, "duration": args.duration, "warmup": args.warmup, "pair": args.pair,
               "clients": args.clients, "workers": args.workers, "loadavg_start": loadavg(),
               "app_version": app_version(),
               "load": [], "batch": {}}
    load = Load(args, out)

    # -- the bare Flask ceiling ------------------------------------------------------------
    log("scenario 0: a bare Flask app with the same server settings (the physical ceiling)")
    bare = Server("flask", out, "", args.workers, logs, settle=1,
                  argv=[str(BENCH / "ceiling.py")], probe="/")
    bare.start()
    try:
        R["load"].append(load.run(bare, "flask_ceiling", "/", pair=False))
    finally:
        bare.stop()

    # -- SQLite -------------------------------------------------------------------------
    sq_dir = (out / "sqlite").resolve()
    sq_url = f"sqlite:///{sq_dir / 'desk.db'}"
    log(f"generating scale {args.scale} into SQLite")
    R["generate_sqlite"] = meta = generate(sq_url, sq_dir, args.scale)
    server = Server("sqlite", sq_dir, sq_url, args.workers, logs)
    log("starting the server on SQLite")
    server.start()
    try:
        R["load"] += sqlite_scenarios(load, server, meta, R)
    finally:
        server.stop()

    log("batch: the data export of the heavy user vs the sqlite3 tool")
    R["batch"]["export"] = export_scenario(sq_dir, sq_url, meta, out)
    log("batch: query counts and profile of the list pages (in-process)")
    R["batch"]["queries"] = task("query-counts", sq_dir, sq_url, out)
    if args.scale != 0.01:
        log("batch: the same at scale 0.01 (query counts and export memory at a second scale)")
        small_dir = (out / "small").resolve()
        small_url = f"sqlite:///{small_dir / 'desk.db'}"
        R["generate_small"] = generate(small_url, small_dir, 0.01)
        small_out = out / "small-out"
        small_out.mkdir(exist_ok=True)
        R["batch"]["queries_small"] = task("query-counts", small_dir, small_url, small_out)
        R["batch"]["export_small"] = task("export-zip", small_dir, small_url, small_out / "export.zip")
    log("batch: anonymizing the heavy user")
    R["batch"]["anonymize"] = task("anonymize", sq_dir, sq_url, out)
    log(f"  anonymize: {R['batch']['anonymize']['seconds']:.1f}s in all, the erasure "
        f"{R['batch']['anonymize'].get('erasure_seconds', 0):.2f}s")

    # -- PostgreSQL (scenario 5) ------------------------------------------------------------
    pg_url = None if args.no_pg else pg_database(args.pg_url, "desk_bench", create=True)
    if pg_url:
        try:
            pg_dir = (out / "pg").resolve()
            pg_scale = args.pg_scale or args.scale
            log(f"generating scale {pg_scale} into PostgreSQL")
            R["generate_pg"] = pg_meta = generate(pg_url, pg_dir, pg_scale)
            pg_server = Server("postgresql", pg_dir, pg_url, args.workers, logs)
            log("starting the server on PostgreSQL")
            pg_server.start()
            try:
                R["load"] += pg_scenarios(load, pg_server, pg_meta)
            finally:
                pg_server.stop()
        finally:
            if not args.keep_pg:
                pg_database(args.pg_url, "desk_bench", create=False)
    R["loadavg_end"] = loadavg()
    if app_version() != R["app_version"]:
        R["app_version"] += f" (changed to {app_version()} during the run)"
    R["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(R, indent=2, ensure_ascii=False))
    write_results(R, Path(args.results))
    log(f"done in {R['total_seconds']:.0f}s; results in {args.results}")
    return 0


def sqlite_scenarios(load: Load, server: Server, meta: dict, R: dict) -> list[dict]:
    res = []
    log("scenario 1: the ceiling")
    res.append(load.run(server, "healthz", "/healthz", pair=False))
    res.append(load.run(server, "login_page", "/login", pair=False))
    log("scenario 2: My Tickets of the heavy user")
    heavy = Session(server.base, meta["heavy_email"], meta["password"])
    cookie = {"Cookie": heavy.cookie}
    check_page(server, "/my/tickets", heavy.cookie, 'href="/my/tickets/', 25)
    check_page(server, "/my/tickets?page=40", heavy.cookie, 'href="/my/tickets/', 25)
    res.append(load.run(server, "my_tickets_p1", "/my/tickets", cookie))
    res.append(load.run(server, "my_tickets_p40", "/my/tickets?page=40", cookie))
    log("scenario 3: one ticket with 10 comments")
    thread = f"/my/tickets/{meta['thread_ticket_id']}"
    check_page(server, thread, heavy.cookie, 'class="comment"', 10)
    res.append(load.run(server, "my_ticket_10_comments", thread, cookie))
    log("scenario 4: the agent desk list")
    agent = Session(server.base, meta["agent_email"], meta["password"])
    check_page(server, "/agent/tickets", agent.cookie, 'href="/agent/tickets/', 25)
    check_page(server, f"/agent/tickets?q={SEARCH}", agent.cookie, 'href="/agent/tickets/', 1)
    res.append(load.run(server, "agent_tickets_default", "/agent/tickets", {"Cookie": agent.cookie}))
    res.append(load.run(server, "agent_tickets_search", f"/agent/tickets?q={SEARCH}", {"Cookie": agent.cookie}))
    check_page(server, f"/agent/tickets?q={SEARCH_ZH}", agent.cookie, 'href="/agent/tickets/', 1)
    res.append(load.run(server, "agent_tickets_search_zh", f"/agent/tickets?q={SEARCH_ZH}",
                        {"Cookie": agent.cookie}))
    log("scenario 5: agent reply POST (SQLite)")
    res.append(reply_scenario(load, server, meta))
    log("scenario 1 again (ceiling drift over the run)")
    res.append(load.run(server, "login_page_end", "/login", pair=False))
    log("batch: purge of the recycle bin while My Tickets is under load")
    R["batch"]["purge"] = purge_scenario(load, server, cookie)
    return res


def reply_scenario(load: Load, server: Server, meta: dict) -> dict:
    agent = Session(server.base, meta["agent_email"], meta["password"])
    ticket = meta["reply_ticket_id"]
    token = agent.csrf(f"/agent/tickets/{ticket}")
    form = {"csrf_token": token, "body": "Thanks, we are on it. 我们正在处理。", "visibility": "public"}
    status, _ = agent.request(f"/agent/tickets/{ticket}/reply", form)
    if status != 302:
        raise RuntimeError(f"a reply answered {status}")
    return load.run(server, f"agent_reply_post_{server.name}", f"/agent/tickets/{ticket}/reply",
                    {"Cookie": agent.cookie}, post=form, expect=302)


def pg_scenarios(load: Load, server: Server, meta: dict) -> list[dict]:
    res = []
    log("scenario 1 on PostgreSQL (its own ceiling)")
    res.append(load.run(server, "healthz_pg", "/healthz", pair=False))
    res.append(load.run(server, "login_page_pg", "/login", pair=False))
    log("scenario 2 page 1 on PostgreSQL (for comparison)")
    heavy = Session(server.base, meta["heavy_email"], meta["password"])
    check_page(server, "/my/tickets", heavy.cookie, 'href="/my/tickets/', 25)
    res.append(load.run(server, "my_tickets_p1_pg", "/my/tickets", {"Cookie": heavy.cookie}))
    log("scenario 5: agent reply POST (PostgreSQL)")
    res.append(reply_scenario(load, server, meta))
    return res


def purge_scenario(load: Load, server: Server, cookie: dict) -> dict:
    idle = load.run(server, "my_tickets_p1_idle", "/my/tickets", cookie)
    env = _env_without_desk()
    env.update(DESK_DATA_DIR=str(server.data_dir), DESK_DATABASE_URL=server.url, DESK_RETENTION_DAYS="1")
    out_path = server.logs / "purge.out"
    with out_path.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen([PY, "app.py", "purge"], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.DEVNULL)
        during = load.run(server, "my_tickets_p1_during_purge", "/my/tickets", cookie,
                          until=lambda: proc.poll() is not None, pair=False)
        seconds = time.perf_counter() - started
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"purge failed ({proc.returncode}): {text[-2000:]}")
    match = re.search(r"purged (\d+) tickets, (\d+) comments", text)
    log(f"  purge: {seconds:.1f}s ({match.group(0) if match else text.strip()[-200:]})")
    inside = re.search(r" in ([0-9.]+) s \(", text)
    return {"seconds": round(seconds, 2), "tickets": int(match.group(1)) if match else None,
            "purge_seconds": float(inside.group(1)) if inside else None,
            "comments": int(match.group(2)) if match else None, "output": text.strip()[-400:],
            "idle": idle, "during": during,
            "p99_ratio": round(during["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None}


def export_scenario(sq_dir: Path, sq_url: str, meta: dict, out: Path) -> dict:
    work = out / "export"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    tool = sqlite_csv(sq_dir / "desk.db", meta["heavy_user_id"], work)
    csv = min((task("export-csv", sq_dir, sq_url, work) for _ in range(2)), key=lambda r: r["seconds"])
    zipped = task("export-zip", sq_dir, sq_url, work / "export.zip")
    result = {"sqlite3": tool, "app_csv": csv, "app_zip": zipped,
              "speed_ratio_csv": round(tool["seconds"] / csv["seconds"], 3),
              "speed_ratio_zip": round(tool["seconds"] / zipped["seconds"], 3)}
    log(f"  sqlite3 {tool['seconds'] * 1000:.0f} ms, app CSV {csv['seconds'] * 1000:.0f} ms, "
        f"app ZIP {zipped['seconds'] * 1000:.0f} ms; peak RSS app {zipped['peak_rss_kb'] / 1024:.0f} MB, "
        f"sqlite3 {tool['peak_rss_kb'] / 1024:.0f} MB")
    return result


# -- RESULTS.md -----------------------------------------------------------------------------

def write_results(R: dict, path: Path) -> None:
    from results import render  # bench/results.py
    old = path.read_text() if path.exists() else ""
    analysis = others = ""
    if ANALYSIS_START in old and ANALYSIS_END in old:
        analysis = old.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip("\n")
        # What follows the analysis is written by the other benches (keys, API,
        # file store, region move, audit log page): kept as it is.
        others = old.split(ANALYSIS_END, 1)[1].strip("\n")
    text = render(R, analysis, ANALYSIS_START, ANALYSIS_END)
    path.write_text(text.rstrip("\n") + "\n\n" + others + "\n" if others else text)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
