"""gunicorn's worker model for desk on this machine, chosen by measurement.

    python bench/workers.py [--data DIR] [--rounds 2] [--duration 5]

Serves one bench instance (bench/generate.py; ``--data`` reuses one made before,
copied so the runs do not change it) with ``app.py run`` under each worker model
in turn (gthread and sync, several worker and thread counts), loads four pages
with wrk at 8 clients (the minimal page GET /login, /healthz, the heavy user's
My Tickets page 1, the agent list's default view) and writes requests/s and p99
per model to the "Worker model" section of bench/RESULTS.md. The models are
measured in rounds, in turn, forward then backward, so the machine's drift
falls on all of them alike; a figure is the mean of its rounds.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: the server, sessions and wrk)
from results import replace_section  # noqa: E402

MODELS = [  # (name, worker class, workers, threads)
    ("gthread 2 x 4 (default)", "gthread", 2, 4),
    ("gthread 2 x 1", "gthread", 2, 1),
    ("gthread 3 x 2", "gthread", 3, 2),
    ("sync 2", "sync", 2, 1),
    ("sync 4", "sync", 4, 1),
]
START, END = "<!-- workers:start -->", "<!-- workers:end -->"


def measure(model: tuple, data: Path, logs: Path, load: "bench.Load", meta: dict) -> dict:
    name, worker_class, workers, threads = model
    server = bench.Server(name.split()[0], data, f"sqlite:///{data / 'desk.db'}", workers, logs,
                          argv=["app.py", "run", "--no-scheduler"], settle=1,
                          extra_env={"DESK_WORKER_CLASS": worker_class, "DESK_THREADS": str(threads)})
    server.start()
    try:
        heavy = bench.Session(server.base, meta["heavy_email"], meta["password"])
        agent = bench.Session(server.base, meta["agent_email"], meta["password"])
        pages = {"/healthz": {}, "/login": {}, "/my/tickets": {"Cookie": heavy.cookie},
                 "/agent/tickets": {"Cookie": agent.cookie}}
        return {path: load.run(server, f"w-{path.strip('/').replace('/', '-')}", path, headers, pair=False)
                for path, headers in pages.items()}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a bench instance folder made before (bench/generate.py)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--results", default=str(bench.BENCH / "RESULTS.md"))
    args = parser.parse_args()
    out = bench.BENCH / "out" / "workers"
    shutil.rmtree(out, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    data = out / "instance"
    if args.data:
        shutil.copytree(args.data, data)
    else:
        bench.generate(f"sqlite:///{data / 'desk.db'}", data, 0.1)
    meta = json.loads((data / "bench.json").read_text())
    load = bench.Load(argparse.Namespace(clients=8, pair=0, warmup=1, duration=args.duration), out)
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    runs: dict[str, list[dict]] = {m[0]: [] for m in MODELS}
    for n in range(args.rounds):
        for model in MODELS if n % 2 == 0 else list(reversed(MODELS)):
            print(f"[{time.strftime('%H:%M:%S')}] round {n + 1}: {model[0]}", flush=True)
            runs[model[0]].append(measure(model, data, out / "logs", load, meta))
    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    (out / "results.json").write_text(json.dumps(runs, indent=2))
    write(runs, Path(args.results), args, (load_start, load_end))
    return 0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def write(runs: dict, path: Path, args, load: tuple[str, str]) -> None:
    pages = ["/login", "/healthz", "/my/tickets", "/agent/tickets"]
    lines = [START, "## Worker model (gunicorn, `bench/workers.py`)", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: each model served the same "
             f"scale-0.1 instance (SQLite, no scheduler) and wrk loaded each page for {args.duration:g} s at "
             f"8 clients, in {args.rounds} rounds (forward, then backward); mean of the rounds. Load "
             f"average {load[0]} at the start, {load[1]} at the end.", "",
             "| model | " + " | ".join(f"{p} req/s (p99 ms)" for p in pages) + " |",
             "| --- | " + " | ".join("---:" for _ in pages) + " |"]
    for name, results in runs.items():
        cells = []
        for page in pages:
            rps = _mean([r[page]["rps"] for r in results])
            p99 = _mean([r[page]["p99_ms"] for r in results])
            cells.append(f"{rps:,.0f} ({p99:.0f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", END]
    replace_section(path, "\n".join(lines), START, END)


if __name__ == "__main__":
    sys.exit(main())
