"""File store throughput: a 20 MB attachment uploaded and downloaded through the
app (the whole WSGI stack: form parsing, policy, encryption, store) with the
local folder and with an S3-compatible bucket (moto's server on 127.0.0.1), and
the store alone without encryption, all in one run, so the ratios compare like
with like. Writes its own section of bench/RESULTS.md.

    .venv/bin/python bench/storage.py [--mb 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = "<!-- storage bench: written by bench/storage.py -->"
END = "<!-- /storage bench -->"


def drain(stream) -> bytes:
    """Read a stream to its end in 1 MB reads, as the app's streaming does."""
    parts = []
    with stream:
        while chunk := stream.read(2**20):
            parts.append(chunk)
    return b"".join(parts)


def timed(func) -> float:
    began = time.perf_counter()
    func()
    return time.perf_counter() - began


def measure(label: str, settings: dict, data: bytes, rounds: int, work: Path) -> dict:
    from desk import create_app
    from desk.db import db
    from desk.migrations import migrate
    from desk.models import Attachment
    from desk.services import storage
    from tests import factories
    from tests.conftest import FreshClient
    from tests.conftest import TEST_CONFIG
    from tests.conftest import login
    from tests.conftest import csrf_token

    folder = work / label
    config = dict(TEST_CONFIG, DATA_DIR=str(folder), DATABASE_URL=f"sqlite:///{folder / 'desk.db'}",
                  ATTACHMENT_MAX_MB=64, UPLOAD_MAX_MB=64, **settings)
    app = create_app(config)
    app.test_client_class = FreshClient
    with app.app_context():
        migrate(db.obj)
        user = factories.end_user()
        client = app.test_client()
        login(client, user.email, factories.PASSWORD)
        store = storage.of(app.config)
        up, down, raw_up, raw_down = [], [], [], []
        for n in range(rounds):
            token = csrf_token(client, "/tickets/new")
            form = {"subject": "bench", "description": "x", "csrf_token": token,
                    "attachments": [(io.BytesIO(data), "big.bin")]}
            up.append(timed(lambda: client.post("/tickets/new", data=form,
                                                content_type="multipart/form-data")))
            row = Attachment.select().order_by(Attachment.id.desc()).first()
            got = {}
            down.append(timed(lambda: got.setdefault("b", client.get(f"/attachments/{row.id}").data)))
            assert hashlib.sha256(got["b"]).hexdigest() == row.sha256
            key = f"bench/raw-{n}.bin"
            raw_up.append(timed(lambda: store.put(key, io.BytesIO(data))))
            raw_down.append(timed(lambda: drain(store.open(key))))
        db.close()
    mb = len(data) / 2**20
    rate = lambda times: mb / statistics.median(times)  # noqa: E731
    return {"label": label, "up": rate(up), "down": rate(down), "raw_up": rate(raw_up),
            "raw_down": rate(raw_down)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    from tests.objectstore import MotoServer
    data = os.urandom(args.mb * 2**20)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="desk-storage-bench-") as tmp:
        work = Path(tmp)
        moto = MotoServer(work / "moto").start()
        try:
            rows = [measure("local folder", {}, data, args.rounds, work),
                    measure("S3 bucket (moto)", moto.settings(moto.new_bucket()), data, args.rounds, work)]
        finally:
            moto.stop()
    cipher = encryption_alone(data, args.rounds)
    load_end = os.getloadavg()
    section = render(rows, cipher, args, load_start, load_end)
    print(section)
    path = Path(args.results)
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    return 0


def encryption_alone(data: bytes, rounds: int) -> dict:
    """AES-256-GCM chunk sealing and opening in memory, against a plain copy."""
    from desk import crypto
    key = crypto.new_file_key()
    blob = drain(crypto.sealing_reader(key, io.BytesIO(data)))
    mb = len(data) / 2**20
    seal = statistics.median(timed(lambda: drain(crypto.sealing_reader(key, io.BytesIO(data))))
                             for _ in range(rounds))
    opened = statistics.median(timed(lambda: drain(crypto.opening_reader(
        key, lambda a, b: io.BytesIO(blob[a:b]), len(data)))) for _ in range(rounds))
    copy = statistics.median(timed(lambda: drain(io.BufferedReader(io.BytesIO(data))))
                             for _ in range(rounds))
    return {"seal": mb / seal, "open": mb / opened, "copy": mb / copy}


def render(rows: list[dict], cipher: dict, args, load_start, load_end) -> str:
    local, bucket = rows
    lines = [START, "", "## File store: 20 MB attachment through the app", "",
             f"`bench/storage.py --mb {args.mb} --rounds {args.rounds}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs shared "
             f"with other engineers' test runs, load average {load_start[0]:.1f} at start, "
             f"{load_end[0]:.1f} at end — read the ratios, all from this one run). "
             "Through the app = Flask test client through the whole WSGI stack (multipart parsing, "
             "policy, SHA-256, AES-256-GCM sealing in 64 KiB chunks, the store); store only = the same "
             "bytes put and read through the store with no app and no encryption. Median of the rounds.",
             "", "| store | upload through app, MB/s | download through app, MB/s | store only put, MB/s "
             "| store only get, MB/s | app upload / store put | app download / store get |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['up']:.1f} | {r['down']:.1f} | {r['raw_up']:.1f} | "
                     f"{r['raw_down']:.1f} | {r['up'] / r['raw_up']:.0%} | {r['down'] / r['raw_down']:.0%} |")
    lines += ["", f"Encryption alone, in memory: seal {cipher['seal']:.0f} MB/s, open {cipher['open']:.0f} MB/s "
              f"(the same bytes read the same way without encryption: {cipher['copy']:.0f} MB/s; encryption costs "
              f"{cipher['copy'] / cipher['seal']:.1f}x / {cipher['copy'] / cipher['open']:.1f}x that).",
              "", f"Bucket against local folder, same run: upload {bucket['up'] / local['up']:.0%}, "
              f"download {bucket['down'] / local['down']:.0%} of the local speed.", "", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
