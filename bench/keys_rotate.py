"""Key rotation under load (issue 12): rows/s of ``app.py keys-rotate`` and the
p99 of a ticket page (which decrypts an encrypted custom field) while the
rotation runs, against the same page idle, measured in one run.

    python bench/keys_rotate.py [--scale 0.01] [--duration 8]

1. bench/generate.py builds a SQLite instance at ``--scale``; then every
   ticket gets an encrypted card number and every end user an encrypted
   passport number and a data subject key, sealed by desk.crypto itself
   (inserted in bulk like generate.py does, without audit entries: fabricated
   data has no history to audit).
2. The production server (``app.py run``) serves it; wrk loads
   /agent/tickets/<id> as the administrator: first idle, then while
   ``app.py keys-rotate`` runs (started in its own process).
3. Prints a JSON summary and writes the "Key rotation" section of
   bench/RESULTS.md (between its own markers; the rest is left alone).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from run import PY, Load, Server, Session, _env_without_desk, app_version, generate, log, loadavg, machine  # noqa: E402

START = "<!-- keys-rotate: written by bench/keys_rotate.py -->"
END = "<!-- /keys-rotate -->"
CARDS = ["4111111111111111", "4539578763621486", "5555555555554444"]


def seal_everything(data_dir: Path, url: str) -> dict:
    """Encrypted values on every ticket and end user, and their subject keys."""
    import os
    os.environ.update(DESK_DATA_DIR=str(data_dir), DESK_DATABASE_URL=url)
    from desk import create_app
    from desk import crypto
    from desk.db import db
    from desk.models import ContactFieldValue
    from desk.models import CustomField
    from desk.models import Ticket
    from desk.models import TicketFieldValue
    from desk.models import User
    from desk.models.base import _audited_write
    app = create_app()
    counts = {}
    with app.app_context():
        db.connect(reuse_if_open=True)
        token = _audited_write.set(True)
        try:
            with db.atomic():
                card = CustomField.create(module="tickets", key="card", label="Card number", type="card",
                                          encrypted=True)
                passport = CustomField.create(module="contacts", key="passport", label="Passport",
                                              type="text", encrypted=True)
            rows = []
            for n, (ticket_id,) in enumerate(Ticket.select(Ticket.id).tuples().iterator()):
                key_id, sealed = crypto.seal_field("ticket", ticket_id, "card", CARDS[n % 3])
                rows.append({"ticket": ticket_id, "field": card.id, "sealed": sealed, "key_id": key_id})
            with db.atomic():
                for i in range(0, len(rows), 1000):
                    TicketFieldValue.insert_many(rows[i:i + 1000]).execute()
            counts["ticket values"] = len(rows)
            rows = []
            people = [uid for (uid,) in User.select(User.id).where(User.kind == "end_user").tuples()]
            with db.atomic():
                for uid in people:
                    key_id, sealed = crypto.seal_field("user", uid, "passport", f"P{uid:08d}")
                    rows.append({"user": uid, "field": passport.id, "sealed": sealed, "key_id": key_id})
                    crypto.seal_for_subject(uid, "bench")  # makes the person's data key
                for i in range(0, len(rows), 1000):
                    ContactFieldValue.insert_many(rows[i:i + 1000]).execute()
            counts["contact values"] = len(rows)
            counts["subject keys"] = len(people)
        finally:
            _audited_write.reset(token)
        first = TicketFieldValue.select(TicketFieldValue.ticket).order_by(TicketFieldValue.id).scalar()
        db.close()
    counts["ticket_id"] = first
    return counts


def rotation_scenario(load: Load, server: Server, cookie: dict, ticket_id: int,
                      pause: float = 0.0) -> dict:
    path = f"/agent/tickets/{ticket_id}"
    idle = load.run(server, "ticket_page_idle", path, cookie)
    env = _env_without_desk()
    env.update(DESK_DATA_DIR=str(server.data_dir), DESK_DATABASE_URL=server.url)
    out_path = server.logs / "keys-rotate.out"
    with out_path.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen([PY, "app.py", "keys-rotate", "--pause", str(pause)], cwd=ROOT,
                                env=env, stdout=fh,
                                stderr=subprocess.DEVNULL)
        during = load.run(server, "ticket_page_during_rotation", path, cookie,
                          until=lambda: proc.poll() is not None, pair=False)
        seconds = time.perf_counter() - started
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"keys-rotate failed ({proc.returncode}): {text[-2000:]}")
    rows = int(re.search(r"done: (\d+) rows", text).group(1))
    after = load.run(server, "ticket_page_after", path, cookie, pair=False)
    return {"pause": pause, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1),
            "output": text.strip()[-300:], "idle": idle, "during": during, "after": after,
            "p99_ratio": round(during["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
            "rps_ratio": round(during["rps"] / idle["rps"], 2) if idle["rps"] else None}


def render(R: dict) -> str:
    s, i, d = R["rotation"], R["rotation"]["idle"], R["rotation"]["during"]
    lines = [
        START, "## Key rotation (issue 12)", "",
        f"Run {R['date']} (app {R['app']}) at scale {R['scale']} on {R['machine']['nproc']} CPUs, load average "
        f"{R['load_before']} before (the machine was shared with other engineers' work: only the "
        "ratios of this one run mean anything). SQLite, the production server with 2 workers, "
        f"wrk {load_clients(R)} connections on `/agent/tickets/<id>` as the administrator (the page "
        "decrypts an encrypted card number to mask it).", "",
        f"Data: {R['data']['ticket values']} encrypted ticket values, {R['data']['contact values']} "
        f"encrypted contact values, {R['data']['subject keys']} data subject keys (plus the record "
        "keys of the audit history the bench itself writes).", "",
        "| | req/s | p50 ms | p99 ms | errors |", "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in (("idle", i), ("during keys-rotate", d), ("after", s["after"])):
        lines.append(f"| {name} | {r['rps']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    lines += ["", f"- `keys-rotate`: {s['rows']} rows re-wrapped or re-sealed in {s['seconds']} s = "
              f"**{s['rows_per_s']} rows/s** (batches of 200, " + (f"`--pause {s['pause']}`" if s.get('pause') else "no pause") + "), while serving the load above.",
              f"- Page p99 during rotation / idle: **{s['p99_ratio']}x** (target: within 2x); "
              f"throughput during / idle: {s['rps_ratio']}x.", END, ""]
    return "\n".join(lines)


def load_clients(R: dict) -> int:
    return R["clients"]


def write_section(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--pair", type=float, default=0)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="keys-rotate --pause: seconds it rests between batches of 200")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args()
    out = args.out / "keys"
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "instance"
    url = f"sqlite:///{data_dir / 'desk.db'}"
    R = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "scale": args.scale,
         "machine": machine(), "load_before": loadavg(), "clients": args.clients,
         "app": app_version()}
    log(f"generating at scale {args.scale}")
    meta = generate(url, data_dir, args.scale)
    log("sealing encrypted values")
    R["data"] = seal_everything(data_dir, url)
    log(f"  {R['data']}")
    server = Server("keys", data_dir, url, 2, out).start()
    try:
        admin = Session(server.base, meta["admin_email"], meta["password"])
        load = Load(args, out)
        R["rotation"] = rotation_scenario(load, server, {"Cookie": admin.cookie}, R["data"]["ticket_id"],
                                          args.pause)
    finally:
        server.stop()
    R["load_after"] = loadavg()
    (out / "keys.json").write_text(json.dumps(R, indent=2, default=str))
    write_section(render(R), BENCH / "RESULTS.md")
    print(json.dumps({k: R["rotation"][k] for k in ("rows", "seconds", "rows_per_s", "p99_ratio",
                                                   "rps_ratio")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
