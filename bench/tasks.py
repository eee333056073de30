"""In-process bench tasks, each run by bench/run.py in a process of its own
(so its peak RSS is its own) on a generated bench instance:

    python bench/tasks.py export-zip   --data-dir D --url U   # person_zip of the heavy user
    python bench/tasks.py export-csv   --data-dir D --url U   # the export's own CSV writer only
    python bench/tasks.py query-counts --data-dir D --url U   # SQL statements per page + profile
    python bench/tasks.py anonymize    --data-dir D --url U   # erasure.anonymize_now(heavy user)
    python bench/tasks.py purge        --data-dir D --url U   # purge.purge_expired, retention 1 day

Each prints one line ``BENCHJSON {...}`` with its measurements.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UA = "desk-bench/1"


def status_kb(field: str) -> int:
    """A VmRSS / VmHWM figure of this process, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def emit(data: dict) -> None:
    print("BENCHJSON " + json.dumps(data, ensure_ascii=False), flush=True)


def make_app(args):
    os.environ.pop("DESK_DATABASE_URL", None)
    from desk import create_app
    return create_app({"DATA_DIR": args.data_dir, "DATABASE_URL": args.url,
                       "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 64})


def meta(args) -> dict:
    return json.loads((Path(args.data_dir) / "bench.json").read_text())


# -- exports -------------------------------------------------------------------

def export_zip(args) -> None:
    """The data export (Art. 15/20) of the heavy user, streamed to a file."""
    app = make_app(args)
    m = meta(args)
    from desk.db import db
    from desk.models import User
    from desk.services import export
    target = Path(args.out)
    with app.app_context():
        db.connect(reuse_if_open=True)
        user = User.get_by_id(m["heavy_user_id"])
        baseline = status_kb("VmRSS")
        started = time.perf_counter()
        size = 0
        with target.open("wb") as out:
            for chunk in export.person_zip(user, user):
                out.write(chunk)
                size += len(chunk)
        elapsed = time.perf_counter() - started
    import zipfile
    with zipfile.ZipFile(target) as archive:
        members = {i.filename: i.file_size for i in archive.infolist()}
    emit({"seconds": elapsed, "bytes": size, "baseline_rss_kb": baseline,
          "peak_rss_kb": status_kb("VmHWM"), "members": len(members),
          "tickets_csv_bytes": members.get("tickets.csv", 0),
          "comments_csv_bytes": members.get("comments.csv", 0)})


def export_csv(args) -> None:
    """Only the CSV files of that export (tickets.csv + comments.csv), written
    by the export's own code to plain files: the like-for-like comparison with
    the sqlite3 tool dumping the same columns."""
    app = make_app(args)
    m = meta(args)
    from desk.db import db
    from desk.models import User
    from desk.services import export
    out = Path(args.out)
    with app.app_context():
        db.connect(reuse_if_open=True)
        user = User.get_by_id(m["heavy_user_id"])
        baseline = status_kb("VmRSS")
        started = time.perf_counter()
        counted = [0]

        def count(rows):
            for row in rows:
                counted[0] += 1
                yield row
        with (out / "tickets.csv").open("wb") as fh:
            for chunk in export.csv_lines(export.TICKET_FIELDS,
                                          count(export._ticket_row(t, user) for t in export._tickets(user))):
                fh.write(chunk)
        names: dict[int, list[str]] = {}
        for row in export._attachments(user):
            if row.comment_id:
                names.setdefault(row.comment_id, []).append(f"{row.id}-{row.filename}")
        with (out / "comments.csv").open("wb") as fh:
            for chunk in export.csv_lines(export.COMMENT_FIELDS,
                                          count(export._comment_row(c, names) for c in export._comments(user))):
                fh.write(chunk)
        rows = counted[0]
        elapsed = time.perf_counter() - started
    emit({"seconds": elapsed, "rows": rows, "baseline_rss_kb": baseline,
          "peak_rss_kb": status_kb("VmHWM"),
          "bytes": sum(p.stat().st_size for p in (out / "tickets.csv", out / "comments.csv"))})


# -- the list page's query count and a short profile ------------------------------

class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        sql = record.msg[0] if isinstance(record.msg, tuple) else str(record.msg)
        self.statements.append(sql)


def _login(client, email: str, password: str) -> None:
    page = client.get("/login", headers={"User-Agent": UA})
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"csrf_token": token, "email": email, "password": password},
                       headers={"User-Agent": UA})
    assert resp.status_code == 302, f"login of {email} answered {resp.status_code}"


def query_counts(args) -> None:
    """SQL statements per request (peewee's logger) for the list pages, for a
    person with a handful of tickets and for the heavy user with 2,000, plus
    where the time of one request goes (SQL vs Python), and a cProfile."""
    app = make_app(args)
    m = meta(args)
    from desk.db import db
    counter = _Counter()
    logger = logging.getLogger("peewee")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    # Time spent executing each statement (peewee's execute_sql), per request.
    timings: list[tuple[str, float]] = []

    def measure(path: str, client) -> dict:
        counter.statements.clear()
        timings.clear()
        logger.addHandler(counter)
        started = time.perf_counter()
        resp = client.get(path, headers={"User-Agent": UA})
        total = time.perf_counter() - started
        logger.removeHandler(counter)
        assert resp.status_code == 200, f"{path} answered {resp.status_code}"
        return {"statements": len(counter.statements), "ms": total * 1000,
                "sql_ms": sum(t for _, t in timings) * 1000,
                "sql": [{"ms": round(t * 1000, 2), "sql": q} for q, t in timings]}

    with app.app_context():
        from desk.db import db as proxy
        database = proxy.obj
        original = type(database).execute_sql

        def timed(self, sql, params=None, *a, **kw):
            started = time.perf_counter()
            cursor = original(self, sql, params, *a, **kw)
            timings.append((sql, time.perf_counter() - started))
            return cursor
        type(database).execute_sql = timed
    from desk.models import User
    with app.app_context():
        db.connect(reuse_if_open=True)
        small = User.get_by_id(m["small_user_id"])
        small_email = small.email
        db.close()
    password = m["password"]
    results = {}
    clients = {}
    for who, email in (("small", small_email), ("heavy", m["heavy_email"]), ("agent", m["agent_email"])):
        client = app.test_client()
        _login(client, email, password)
        clients[who] = client
    clients["anonymous"] = app.test_client()
    pages = {
        "login_page": ("anonymous", "/login"),
        "my_tickets_small_p1": ("small", "/my/tickets"),
        "my_tickets_heavy_p1": ("heavy", "/my/tickets"),
        "my_tickets_heavy_p40": ("heavy", "/my/tickets?page=40"),
        "my_ticket_10_comments": ("heavy", f"/my/tickets/{m['thread_ticket_id']}"),
        "agent_tickets_default": ("agent", "/agent/tickets"),
        "agent_tickets_search": ("agent", "/agent/tickets?q=refund"),
    }
    for name, (who, path) in pages.items():
        measure(path, clients[who])  # warm
        runs = [measure(path, clients[who]) for _ in range(5)]
        best = min(runs, key=lambda r: r["ms"])
        results[name] = {"path": path, "who": who, "statements": best["statements"],
                         "ms": round(best["ms"], 2), "sql_ms": round(best["sql_ms"], 2),
                         "median_ms": round(sorted(r["ms"] for r in runs)[2], 2),
                         "sql": best["sql"]}
    # One agent reply (a write): its statements, for the reply POST scenario.
    client = clients["agent"]
    ticket = m["reply_ticket_id"]
    page = client.get(f"/agent/tickets/{ticket}", headers={"User-Agent": UA}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    counter.statements.clear()
    timings.clear()
    logger.addHandler(counter)
    started = time.perf_counter()
    resp = client.post(f"/agent/tickets/{ticket}/reply", headers={"User-Agent": UA},
                       data={"csrf_token": token, "body": "Thanks, we are on it.", "visibility": "public"})
    total = time.perf_counter() - started
    logger.removeHandler(counter)
    assert resp.status_code == 302, f"reply answered {resp.status_code}"
    results["agent_reply_post"] = {"path": f"POST /agent/tickets/{ticket}/reply", "who": "agent",
                                   "statements": len(counter.statements), "ms": round(total * 1000, 2),
                                   "median_ms": round(total * 1000, 2),
                                   "sql_ms": round(sum(t for _, t in timings) * 1000, 2),
                                   "sql": [{"ms": round(t * 1000, 2), "sql": q} for q, t in timings]}
    # A short profile of the pages, in-process (no server, one request at a time).
    profiles = {}
    for name in ("login_page", "my_tickets_heavy_p1", "agent_tickets_default", "agent_tickets_search"):
        who, path = pages[name]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(10):
            clients[who].get(path, headers={"User-Agent": UA})
        profiler.disable()
        profiles[name] = _top(_save_profile(profiler, Path(args.out) / f"profile_{name}.txt", (), 12), 12)
    emit({"pages": results, "profiles": profiles, "small_user_tickets": m["small_user_tickets"]})


def _save_profile(profiler: cProfile.Profile, path: Path, cumulative, tottime: int) -> pstats.Stats:
    """Write the profile's top functions by cumulative time (``cumulative``
    lines; none when empty) and by own time to ``path``; returns its stats."""
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    if cumulative:
        stats.sort_stats("cumulative").print_stats(cumulative)
    stats.sort_stats("tottime").print_stats(tottime)
    path.write_text(text.getvalue())
    return stats


def _top(stats: pstats.Stats, n: int) -> list[dict]:
    rows = []
    total = stats.total_tt or 1
    for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        rows.append({"func": f"{Path(filename).name}:{line}({func})", "tottime": tt,
                     "share": tt / total, "calls": nc})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:n]


# -- erasure -------------------------------------------------------------------

def anonymize(args) -> None:
    """Right to be forgotten for the heavy user (2,000 tickets), timed in its
    two parts as ``erasure.anonymize_now`` runs them one after the other: the
    erasure itself (until the request is done: every change committed) and
    then the rebuild of the database files (``erasure.compact_pending``)."""
    app = make_app(args)
    m = meta(args)
    from desk import audit
    from desk.db import db
    from desk.models import Attachment, Comment, Ticket, User
    from desk.services import erasure
    with app.app_context():
        db.connect(reuse_if_open=True)
        user = User.get_by_id(m["heavy_user_id"])
        name = user.name
        before = {
            "tickets_mentioning": Ticket.select().where(Ticket.description.contains(name)
                                                        | Ticket.subject.contains(name)).count(),
            "comments_mentioning": Comment.select().where(Comment.body.contains(name)).count(),
            "attachments_uploaded": Attachment.select().where(Attachment.uploader == user.id).count(),
        }
        steps = {}
        original = list(erasure.STEPS)

        def timed(step):
            def run(*a):
                t = time.perf_counter()
                step(*a)
                steps[step.__name__.removeprefix("_step_")] = time.perf_counter() - t
            run.__name__ = step.__name__
            return run
        erasure.STEPS = tuple(timed(step) for step in original)
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        try:
            req = erasure.anonymize_now(audit.SYSTEM, user, rebuild=False)
            erased = time.perf_counter() - started
            status = req.status
            erasure.compact_pending()
        finally:
            erasure.STEPS = tuple(original)
            if profiler:
                profiler.disable()
        elapsed = time.perf_counter() - started
        steps["compact"] = elapsed - erased
        if profiler:
            _save_profile(profiler, Path(args.out) / "profile_anonymize.txt", 50, 25)
        after = User.get_by_id(user.id)
        req = type(req).get_by_id(req.id)
        left = Ticket.select().where(Ticket.description.contains(name)).count()
        ok, chain = audit.verify()
    emit({"seconds": elapsed, "steps": steps, "erasure_seconds": erased,
          "without_rebuild": erased, "compact_seconds": elapsed - erased,
          "status": status, "compacted": req.step == erasure.COMPACTED,
          "anonymized": after.anonymized_at is not None,
          "mentions_left": left, "audit_chain_ok": ok, "audit_chain": chain, **before,
          "peak_rss_kb": status_kb("VmHWM")})


# -- the purge ---------------------------------------------------------------------

def purge_task(args) -> None:
    """The purge of the recycle bin in-process (retention 1 day: every recycled
    item of the bench data is due), without a server next to it; with
    ``--profile`` also a cProfile of it (written to <out>/profile_purge.txt).
    bench/run.py measures the same purge as a command while pages are loaded."""
    app = make_app(args)
    app.config["RETENTION_DAYS"] = 1
    from desk import audit
    from desk.db import db
    from desk.services import purge
    with app.app_context():
        db.connect(reuse_if_open=True)
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        report = purge.purge_expired(app.config)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        ok, chain = audit.verify()
    top = []
    if profiler:
        top = _top(_save_profile(profiler, Path(args.out) / "profile_purge.txt", 40, 25), 12)
    items = report.tickets + report.comments
    emit({"seconds": elapsed, "tickets": report.tickets, "comments": report.comments,
          "files": report.files, "items": items, "items_per_s": items / elapsed if elapsed else None,
          "audit_chain_ok": ok, "audit_chain": chain, "profile": top})


TASKS = {"purge": purge_task, "export-zip": export_zip, "export-csv": export_csv, "query-counts": query_counts,
         "anonymize": anonymize}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", default=".", help="a file (export-zip) or folder for output")
    parser.add_argument("--profile", action="store_true", help="purge, anonymize: also a cProfile")
    args = parser.parse_args()
    TASKS[args.task](args)


if __name__ == "__main__":
    main()
