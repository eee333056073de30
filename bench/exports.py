"""Module CSV exports and the bulk export against the databases' own CSV dumps.

    python bench/exports.py [--scale 0.1] [--postgres URL] [--reuse]

Builds a bench instance (bench/generate.py) on SQLite (and PostgreSQL when
``--postgres`` or BENCH_POSTGRES_URL is reachable), then, each in a process of
its own so its peak RSS is its own:

- the app's export of ``tickets`` and ``comments`` as an administrator would
  download it (desk.services.module_export: the same query, columns and CSV
  writer as /agent/export/<module>.csv, written to a file), against
- the database's own tool dumping the very same SQL (the export's query, read
  back from it) as CSV: ``sqlite3 -csv`` and ``psql \\copy (...) TO ... CSV``;
- the bulk export command (``app.py export --out``), every module in CSV and
  JSON Lines plus every attachment.

The best of three runs each; ratios are measured in the same run. The results
replace the "Exports" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out" / "exports"
PY = sys.executable
MODULES = ("tickets", "comments")
START, END = "<!-- exports:start -->", "<!-- exports:end -->"

sys.path.insert(0, str(BENCH))
from results import replace_section  # noqa: E402  (bench/results.py)

TASK = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from desk import create_app
from desk.db import db

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

app = create_app({"DATA_DIR": sys.argv[2], "DATABASE_URL": sys.argv[3],
                  "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 64})
module, out = sys.argv[4], sys.argv[5]
with app.app_context():
    db.connect(reuse_if_open=True)
    from desk.models import User
    from desk.services import listing, module_export
    admin = User.get(User.email == "admin@bench.example")
    export = module_export.prepare(admin, module, listing.TicketFilters())
    if out == "-sql":
        sql, params = export.query.sql()
        if db.obj.__class__.__name__.startswith("Postgres") or "Pooled" in db.obj.__class__.__name__:
            cur = db.connection().cursor()
            print("BENCHJSON " + json.dumps({"sql": cur.mogrify(sql, params).decode()}))
        else:
            def quote(v):
                if v is None: return "NULL"
                if isinstance(v, (int, float)): return str(v)
                return "'" + str(v).replace("'", "''") + "'"
            parts = sql.split("?")
            text = parts[0] + "".join(quote(p) + rest for p, rest in zip(params, parts[1:]))
            print("BENCHJSON " + json.dumps({"sql": text}))
        sys.exit(0)
    base = hwm()
    started = time.perf_counter()
    size = 0
    with open(out, "wb") as fh:
        for chunk in export.csv():
            fh.write(chunk)
            size += len(chunk)
    print("BENCHJSON " + json.dumps({"seconds": time.perf_counter() - started, "rows": export.rows,
                                     "bytes": size, "peak_rss_kb": hwm(), "baseline_rss_kb": base}))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}


def run_task(data_dir: Path, url: str, module: str, out: str) -> dict:
    proc = subprocess.run([PY, "-c", TASK, str(ROOT), str(data_dir), url, module, out], cwd=ROOT,
                          capture_output=True, text=True, env=env(), timeout=3600)
    match = re.search(r"^BENCHJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"task failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(match.group(1))


def timed(cmd: list[str], out: Path, extra_env: dict | None = None) -> dict:
    with out.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE, env={**env(), **(extra_env or {})},
                                cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read().decode()[-2000:]}")
    return {"seconds": elapsed, "peak_rss_kb": usage.ru_maxrss, "bytes": out.stat().st_size}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def generate(url: str, data_dir: Path, scale: float, reuse: bool) -> dict:
    meta_path = data_dir / "bench.json"
    if reuse and meta_path.exists():
        return json.loads(meta_path.read_text())
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    log(f"generating scale {scale} at {urlsplit(url).scheme}")
    proc = subprocess.run([PY, str(BENCH / "generate.py"), "--url", url, "--data-dir", str(data_dir),
                           "--scale", str(scale)], cwd=ROOT, capture_output=True, text=True, env=env())
    if proc.returncode != 0:
        raise RuntimeError(f"generate failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return json.loads(meta_path.read_text())


def measure(kind: str, data_dir: Path, url: str, out: Path, tries: int) -> list[dict]:
    results = []
    for module in MODULES:
        sql = run_task(data_dir, url, module, "-sql")["sql"]
        app = best([run_task(data_dir, url, module, str(out / f"app-{module}.csv")) for _ in range(tries)])
        if kind == "SQLite":
            db_path = url.removeprefix("sqlite:///")
            tool = best([timed(["sqlite3", "-readonly", "-csv", db_path, sql], out / f"tool-{module}.csv")
                         for _ in range(tries)])
            tool_name = "sqlite3 -csv"
        else:
            copy = f"\\copy ({sql}) TO STDOUT WITH CSV"
            tool = best([timed(["psql", "-X", "-q", url, "-c", copy], out / f"tool-{module}.csv")
                         for _ in range(tries)])
            tool_name = "psql \\copy … csv"
        lines = sum(1 for _ in (out / f"tool-{module}.csv").open("rb"))
        results.append({"database": kind, "module": module, "rows": app["rows"], "tool": tool_name,
                        "app": app, "tool_run": tool, "tool_lines": lines})
        log(f"  {kind} {module}: {app['rows']:,} rows, app {app['seconds']:.2f} s "
            f"({app['peak_rss_kb'] / 1024:.0f} MB peak), {tool_name} {tool['seconds']:.2f} s "
            f"-> {tool['seconds'] / app['seconds']:.0%} of the tool's speed")
    bulk_out = out / "bulk.zip"
    bulk = best([timed([PY, "app.py", "export", "--out", str(bulk_out)], out / "bulk.log",
                       {"DESK_DATA_DIR": str(data_dir), "DESK_DATABASE_URL": url}) for _ in range(1)])
    verify = subprocess.run([PY, "app.py", "export", "--verify", str(bulk_out)], cwd=ROOT, env=env(),
                            capture_output=True, text=True)
    bulk["zip_bytes"] = bulk_out.stat().st_size
    bulk["verify"] = verify.stdout.strip()
    results.append({"database": kind, "module": "bulk export (ZIP)", "bulk": bulk})
    log(f"  {kind} bulk: {bulk['seconds']:.1f} s, {bulk['peak_rss_kb'] / 1024:.0f} MB peak, "
        f"{bulk['zip_bytes'] / 2**20:.0f} MB; {bulk['verify'][:60]}")
    return results


def pg_database(admin_url: str, name: str) -> str | None:
    try:
        import psycopg2
        conn = psycopg2.connect(admin_url, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL: SQLite only
        log(f"PostgreSQL unreachable ({exc.__class__.__name__}); skipping it")
        return None
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name))


def write_results(results: list[dict], scale: float, meta: dict, load: tuple[str, str]) -> None:
    lines = [START, "## Exports (module CSV and bulk export)", "",
             f"Written by `bench/exports.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"scale {scale} ({meta['sizes']['tickets']:,} tickets). The machine was shared with other "
             f"engineers' test runs (load average {load[0]} at the start, {load[1]} at the end), so read "
             "the ratios, each measured in the same run (best of three). The app's export is the code "
             "behind /agent/export/<module>.csv as an administrator (same query, columns and CSV writer: "
             "header, BOM, ISO 8601 UTC times, formula guard), written to a file; the tool dumps the very "
             "same SQL (read back from the export's query) as CSV. Peak RSS is the whole process "
             "(Python, Flask app and libraries included; the tool's is its own).", "",
             "| database | module | rows | app s | tool | tool s | app speed / tool speed | app peak RSS MB | tool peak RSS MB |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        if "bulk" in r:
            continue
        app, tool = r["app"], r["tool_run"]
        lines.append(f"| {r['database']} | {r['module']} | {r['rows']:,} | {app['seconds']:.2f} | {r['tool']} | "
                     f"{tool['seconds']:.2f} | {tool['seconds'] / app['seconds']:.0%} | "
                     f"{app['peak_rss_kb'] / 1024:.0f} | {tool['peak_rss_kb'] / 1024:.0f} |")
    lines += ["", "| database | bulk export (`app.py export --out`) | seconds | peak RSS MB | ZIP MB | verify |",
              "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in results:
        if "bulk" in r:
            b = r["bulk"]
            lines.append(f"| {r['database']} | every module as CSV + JSON Lines, every attachment | "
                         f"{b['seconds']:.1f} | {b['peak_rss_kb'] / 1024:.0f} | {b['zip_bytes'] / 2**20:.0f} | "
                         f"{b['verify'][:80]} |")
    lines += ["", END]
    replace_section(BENCH / "RESULTS.md", "\n".join(lines), START, END)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", 0.1)))
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", ""))
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep an instance generated before")
    parser.add_argument("--postgres-only", action="store_true",
                        help="measure PostgreSQL alone; print the figures, leave RESULTS.md as it is")
    args = parser.parse_args()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    out = OUT / "files"
    out.mkdir(parents=True, exist_ok=True)
    sq_dir = OUT / "sqlite"
    sq_url = f"sqlite:///{sq_dir / 'desk.db'}"
    results: list[dict] = []
    if not args.postgres_only:
        meta = generate(sq_url, sq_dir, args.scale, args.reuse)
        results = measure("SQLite", sq_dir, sq_url, out, args.tries)
    if args.postgres:
        pg_dir = OUT / "postgres"
        kept = args.reuse and (pg_dir / "bench.json").exists()
        pg_url = (urlunsplit(urlsplit(args.postgres)._replace(path="/desk_bench_exports")) if kept
                  else pg_database(args.postgres, "desk_bench_exports"))
        if pg_url:
            generate(pg_url, pg_dir, args.scale, kept)
            results += measure("PostgreSQL", pg_dir, pg_url, out, args.tries)
    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if args.postgres_only:
        print(json.dumps(results, indent=2))
        return 0
    write_results(results, args.scale, meta, (load_start, load_end))
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
