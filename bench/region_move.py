"""Benchmark of the online region move (``make bench-region``).

    python bench/region_move.py [--scale 0.1] [--duration 8]

Generates the bench data set on SQLite (bench/generate.py), serves it with the
production server, measures the heavy user's My Tickets page with wrk while
idle, then runs ``app.py region-migrate`` to a fresh PostgreSQL database while
wrk keeps loading the same page (and a customer keeps replying, so the copy
has changes to catch up). Reports the move's rows/s until the switch and
including the trigram indexes PostgreSQL builds after it, total time, longest
write pause, the page p99 during the move (the index build included) against
idle (a ratio in one run), and whether every page answered. Writes its own section of bench/RESULTS.md
(between the ``region-move`` markers) and bench/out/region_move.json.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BENCH  # noqa: E402
from bench.run import CSRF_RE  # noqa: E402
from bench.run import DEFAULT_PG  # noqa: E402
from bench.run import PY  # noqa: E402
from bench.run import ROOT  # noqa: E402
from bench.run import Load  # noqa: E402
from bench.run import Server  # noqa: E402
from bench.run import Session  # noqa: E402
from bench.run import _env_without_desk  # noqa: E402
from bench.run import generate  # noqa: E402
from bench.run import loadavg  # noqa: E402
from bench.run import log  # noqa: E402
from bench.run import machine  # noqa: E402
from bench.run import pg_database  # noqa: E402

START, END = "<!-- region-move -->", "<!-- /region-move -->"
MOVED_RE = re.compile(r"moved from \S+ to \S+: (\d+) rows, (\d+) files in ([\d.]+) s "
                      r"\(([\d,]+) rows/s\); switched after ([\d.]+) s \(([\d,]+) rows/s\); "
                      r"longest write pause (\d+) ms; "
                      r"the tables copied in ([\d.]+) s \(([\d,]+) rows/s\)")
STEP_RE = re.compile(r"(?:^|, )(.+?) ([\d.]+) s(?=, |$)")
AFTER_SWITCH = ("text index (after the switch)", "vacuum (after the switch)")


def replier(server: Server, meta: dict, stop: threading.Event, out: dict) -> None:
    """A customer replying to their own ticket as fast as the server answers."""
    session = Session(server.base, meta["heavy_email"], meta["password"])
    path = f"/my/tickets/{meta['thread_ticket_id']}"
    longest, n, bad = 0.0, 0, 0
    while not stop.is_set():
        status, body = session.request(path)
        token = CSRF_RE.search(body.decode()).group(1)
        started = time.monotonic()
        status, _ = session.request(path, {"csrf_token": token, "body": f"bench reply {n}"})
        longest = max(longest, time.monotonic() - started)
        n += 1
        bad += status != 302
    out.update(replies=n, failed=bad, longest_reply_ms=round(longest * 1000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, choices=(0.01, 0.1, 1.0))
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--pair", type=float, default=0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--out", default=str(BENCH / "out" / "region"))
    parser.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "instance"
    url = f"sqlite:///{data_dir / 'desk.db'}"
    target = pg_database(args.pg_url, "desk_bench_region", create=True)
    if target is None:
        log("no PostgreSQL: nothing to move to")
        return 1
    R = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "scale": args.scale, "loadavg_start": loadavg()}
    log(f"generating scale {args.scale}")
    R["generate"] = meta = generate(url, data_dir, args.scale)
    load = Load(args, out)
    server = Server("region", data_dir, url, args.workers, out)
    server.start()
    try:
        heavy = Session(server.base, meta["heavy_email"], meta["password"])
        cookie = {"Cookie": heavy.cookie}
        log("idle: My Tickets page 1")
        R["idle"] = load.run(server, "my_tickets_idle", "/my/tickets", cookie, pair=False)
        log("the move, with My Tickets under load and a customer replying")
        stop, writes = threading.Event(), {}
        writer = threading.Thread(target=replier, args=(server, meta, stop, writes), daemon=True)
        writer.start()
        env = dict(_env_without_desk(), DESK_DATA_DIR=str(data_dir), DESK_DATABASE_URL=url)
        move = subprocess.Popen([PY, "app.py", "region-migrate", "--database-url", target,
                                 "--data-dir", str(out / "eu-files")], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        R["during"] = load.run(server, "my_tickets_during_move", "/my/tickets", cookie, pair=False,
                               until=lambda: move.poll() is not None)
        stdout, stderr = move.communicate()
        stop.set()
        writer.join(60)
        R["writes"] = writes
        match = MOVED_RE.search(stdout)
        if move.returncode != 0 or not match:
            raise RuntimeError(f"the move failed ({move.returncode}):\n{stdout}\n{stderr[-3000:]}")
        rows, files, seconds, rate, switch_seconds, switch_rate, pause, copy_seconds, copy_rate = match.groups()
        R["move"] = {"rows": int(rows), "files": int(files), "seconds": float(seconds),
                     "rows_per_second": int(rate.replace(",", "")), "pause_ms": int(pause),
                     "switch_seconds": float(switch_seconds),
                     "switch_rows_per_second": int(switch_rate.replace(",", "")),
                     "copy_seconds": float(copy_seconds),
                     "copy_rows_per_second": int(copy_rate.replace(",", ""))}
        steps = re.search(r"^steps: (.*)$", stdout, re.M)
        R["move"]["steps"] = steps.group(1) if steps else ""
        R["move"]["step_seconds"] = {name: float(s) for name, s in STEP_RE.findall(R["move"]["steps"])}
        log("after: My Tickets page 1, now served from PostgreSQL")
        R["after"] = load.run(server, "my_tickets_after_move", "/my/tickets", cookie, pair=False)
    finally:
        server.stop()
        pg_database(args.pg_url, "desk_bench_region", create=False)
    R["loadavg_end"] = loadavg()
    (out / "region_move.json").write_text(json.dumps(R, indent=2, default=str))
    write_section(R, Path(args.results))
    log(f"moved {R['move']['rows']:,} rows at {R['move']['rows_per_second']:,} rows/s, "
        f"pause {R['move']['pause_ms']} ms")
    return 0


def write_section(R: dict, path: Path) -> None:
    m, idle, during, after = R["move"], R["idle"], R["during"], R["after"]
    p99_ratio = during["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else 0
    after_switch = sum(m["step_seconds"].get(name, 0.0) for name in AFTER_SWITCH)
    rows = [
        ("move rate until the switch (rows/s)",
         f"{m['switch_rows_per_second']:,} ({m['switch_seconds']:.1f} s)", ">= 50,000",
         m["switch_rows_per_second"] >= 50_000),
        ("move rate including the text index after the switch (rows/s)",
         f"{m['rows_per_second']:,} ({m['seconds']:.1f} s, of which {after_switch:.1f} s "
         "text index and vacuum after the switch)", ">= 50,000", m["rows_per_second"] >= 50_000),
        ("copy phase alone (rows/s)", f"{m['copy_rows_per_second']:,} ({m['copy_seconds']:.1f} s)",
         ">= 50,000", m["copy_rows_per_second"] >= 50_000),
        ("longest write pause", f"{m['pause_ms']} ms", "< 1,000 ms", m["pause_ms"] < 1000),
        ("My Tickets p99 during the move (index build included) / idle", f"{p99_ratio:.2f}x", "<= 2x",
         p99_ratio <= 2),
        ("pages answered with an error during the move", str(during["errors"]), "0", during["errors"] == 0),
        ("customer replies that failed", str(R["writes"].get("failed")), "0", R["writes"].get("failed") == 0),
    ]
    lines = [START, "## Region move (SQLite → PostgreSQL, `make bench-region`)", "",
             f"{R['date']}, scale {R['scale']} ({R['generate'].get('rows', '?')} rows generated), "
             f"load average {R['loadavg_start']} at the start, {R['loadavg_end']} at the end. "
             "The machine was shared with other work, so only the ratios within this run mean much.", "",
             f"Moved {m['rows']:,} rows and {m['files']:,} files in {m['seconds']:.1f} s while the "
             f"heavy user's My Tickets page was loaded by wrk ({during['requests']:,} requests) and a "
             f"customer replied {R['writes'].get('replies', 0)} times (longest reply "
             f"{R['writes'].get('longest_reply_ms', 0)} ms).", "",
             f"Steps of the move (wall time): {m.get('steps') or '?'}.", "",
             "| measure | figure | target | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {figure} | {target} | {'yes' if ok else 'no'} |" for name, figure, target, ok in rows]
    lines += ["", "| My Tickets page 1 | req/s | p50 | p99 |", "| --- | --- | --- | --- |"]
    for label, r in (("idle (SQLite)", idle), ("during the move", during), ("after (PostgreSQL)", after)):
        lines.append(f"| {label} | {r['rps']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
    lines.append(END)
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
