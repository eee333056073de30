"""The production server: gunicorn with threaded workers, TLS 1.2+ when given a
certificate, and the scheduler in its own process beside the workers."""
from __future__ import annotations

import multiprocessing
import ssl

from gunicorn.app.base import BaseApplication


class DeskServer(BaseApplication):
    def __init__(self, overrides: dict, options: dict, scheduler: bool = True):
        self.overrides = overrides
        self.options = options
        self.scheduler = scheduler
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if self.scheduler:
            self.cfg.set("when_ready", self._start_scheduler)
            self.cfg.set("on_exit", self._stop_scheduler)
        if self.options.get("certfile"):
            self.cfg.set("ssl_context", _tls12_context)

    def load(self):
        from desk import create_app
        return create_app(self.overrides)

    def _start_scheduler(self, arbiter):
        from desk.jobs import run_scheduler
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=run_scheduler, args=(self.overrides,),
                                        name="desk-scheduler", daemon=True)
        self._process.start()
        arbiter.log.info("scheduler process %s started", self._process.pid)

    def _stop_scheduler(self, arbiter):
        process = getattr(self, "_process", None)
        if process is not None and process.is_alive():
            process.terminate()
            process.join(10)


def _tls12_context(config, default_ssl_context_factory):
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def serve(overrides: dict, host: str, port: int, workers: int, threads: int,
          cert: str | None = None, key: str | None = None, scheduler: bool = True) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": "-",
        "timeout": 60,
        "graceful_timeout": 20,
    }
    if cert:
        options.update(certfile=cert, keyfile=key)
    DeskServer(overrides, options, scheduler=scheduler).run()
