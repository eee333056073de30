"""The physical ceiling of the stack on this machine: a bare Flask app (one view
returning a short string) served by gunicorn with the same settings as
``app.py run`` (desk/server.py: gthread workers, threads, the access log).

    python bench/ceiling.py --port 5001 [--workers 2 --threads 4 --worker-class gthread]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask import Flask
from gunicorn.app.base import BaseApplication

app = Flask(__name__)


@app.route("/")
def hello():
    return "ok"


class Ceiling(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from desk.server import options  # the production server's settings, unchanged
    settings = options("127.0.0.1", args.port, args.workers, args.threads)
    settings["worker_class"] = args.worker_class
    Ceiling(settings).run()


if __name__ == "__main__":
    main()
