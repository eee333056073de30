"""The audit log page at 10 million entries (issue 11).

    python bench/audit_log.py [--entries 10000000] [--reuse]

Builds a SQLite instance in bench/out/audit/ (the schema from the migrations),
fills ``audit_entry`` with ``--entries`` rows in one executemany per 100,000
(the chain columns hold placeholders: the page never reads them), then times,
as an administrator and through desk.services.audit_log.page (the query,
scope, value opening and naming the page runs):

- the first page, no filter;
- a deep keyset page (``before`` = an id 90% of the way back) with an
  ``action`` filter;
- the same deep page with an ``actor`` filter;
- one record's history (``record=ticket:N``).

Each the best of five. Prints a Markdown table; add it to bench/RESULTS.md by
hand under "Audit log page" (bench/run.py rewrites that file).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "audit"
ACTIONS = ["update"] * 60 + ["create"] * 20 + ["login"] * 12 + ["delete"] * 4 + ["export"] * 2 + \
    ["restore", "purge"]
TYPES = {"update": "Ticket", "create": "Comment", "login": "User", "delete": "Ticket",
         "export": "Export", "restore": "Ticket", "purge": "Ticket"}


def fill(db, entries: int, people: int = 5000, tickets: int = 200_000) -> None:
    """``entries`` rows, oldest first, one a second from 2024-01-01."""
    rnd = random.Random(11)
    start = dt.datetime(2024, 1, 1)
    columns = ("seq", "created_at", "actor_id", "action", "record_type", "record_id",
               "subject_id", "changes", "ip", "prev_hash", "hash")
    sql = f'INSERT INTO audit_entry ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
    # Indexes are dropped while filling and rebuilt after (sorting once is far
    # faster than 10 million random B-tree inserts); the schema ends the same.
    indexes = db.execute_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                             "AND tbl_name = 'audit_entry' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        db.execute_sql(f'DROP INDEX "{name}"')
    batch = 100_000
    for first in range(1, entries + 1, batch):
        rows = []
        for seq in range(first, min(first + batch, entries + 1)):
            action = rnd.choice(ACTIONS)
            kind = TYPES[action]
            record = str(rnd.randint(1, tickets)) if kind != "Export" else "tickets"
            changes = json.dumps({"priority": ["low", "high"]} if action == "update" else
                                 {"rows": 10} if action == "export" else {})
            rows.append((seq, (start + dt.timedelta(seconds=seq)).isoformat(" "),
                         rnd.randint(1, people), action, kind, record, rnd.randint(1, people),
                         changes, "", "0" * 64, "0" * 64))
        with db.atomic():
            db.cursor().executemany(sql, rows)
        print(f"  {min(first + batch - 1, entries):,} entries", file=sys.stderr, flush=True)
    for name, sql in indexes:
        print(f"  index {name}", file=sys.stderr, flush=True)
        db.execute_sql(sql)
    db.execute_sql("UPDATE audit_head SET seq = ? WHERE id = 1", (entries,))


def best(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep an instance already filled")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "desk.db"
    if not args.reuse and path.exists():
        path.unlink()
    from desk import create_app
    from desk.db import db
    from desk.migrations import migrate
    from desk.models import AuditEntry
    from desk.services import audit_log
    from desk.services.listing import AuditFilters
    from tests import factories
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "DATA_DIR": str(OUT / "instance"),
                      "SECRET_KEY": "bench", "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 64,
                      "TESTING": True})
    with app.test_request_context():
        db.connect(reuse_if_open=True)
        migrate(db.obj)
        if not args.reuse:
            t0 = time.perf_counter()
            fill(db.obj, args.entries)
            print(f"filled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        from desk.models import User
        admin = User.get_or_none(User.email == "bench-admin@example.com") or factories.admin(
            name="Bench Admin", email="bench-admin@example.com")
        total = AuditEntry.select().count()
        deep = int(total * 0.1)
        timings = {
            "first page, no filter": lambda: audit_log.page(admin, AuditFilters()),
            f"keyset page before id {deep:,}, action=export": lambda: audit_log.page(
                admin, AuditFilters(action="export"), before=deep),
            f"keyset page before id {deep:,}, actor=42": lambda: audit_log.page(
                admin, AuditFilters(actor=42), before=deep),
            "record=ticket:4242 (its whole history)": lambda: audit_log.page(
                admin, AuditFilters(record_type="Ticket", record_id="4242")),
        }
        print(f"\n{total:,} entries, SQLite, best of 5 (desk.services.audit_log.page, 50 entries a page)\n")
        print("| page | time |\n| --- | --- |")
        for name, fn in timings.items():
            page = fn()
            print(f"| {name} ({len(page.items)} entries) | {best(fn) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
