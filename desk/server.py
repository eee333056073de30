"""The production server: gunicorn with threaded workers, TLS 1.2+ when given a
certificate, and the scheduler in its own process beside the workers."""
from __future__ import annotations

import errno
import json
import socket
import ssl
import subprocess
import sys
import threading
import time

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
        """Run the scheduler as its own program (not a fork of this process, so
        workers neither inherit nor end it), and start it again if it dies."""
        self._stopping = False
        self._spawn_scheduler(arbiter)
        threading.Thread(target=self._watch_scheduler, args=(arbiter,), daemon=True,
                         name="desk-scheduler-watch").start()

    def _spawn_scheduler(self, arbiter):
        if getattr(sys, "frozen", False):  # the single executable: its own hidden command
            command = [sys.executable, "run-scheduler", json.dumps(self.overrides)]
        else:
            code = "import json, sys; from desk.jobs import run_scheduler; run_scheduler(json.loads(sys.argv[1]))"
            command = [sys.executable, "-c", code, json.dumps(self.overrides)]
        self._process = subprocess.Popen(command)  # nosec B603
        arbiter.log.info("scheduler process %s started", self._process.pid)

    def _watch_scheduler(self, arbiter):
        while not self._stopping:
            time.sleep(2)
            if not self._stopping and self._process.poll() is not None:
                arbiter.log.warning("scheduler exited (%s); starting it again", self._process.returncode)
                self._spawn_scheduler(arbiter)

    def _stop_scheduler(self, arbiter):
        self._stopping = True
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served on (in use, not allowed), or None.
    Checked before anything is printed, so a busy port gives one clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "in use"
            return exc.strerror or str(exc)
    return None


def free_port_after(host: str, port: int) -> int:
    """The first port after ``port`` that is free on ``host`` (to suggest one)."""
    for candidate in range(port + 1, min(port + 100, 65535)):
        if port_problem(host, candidate) is None:
            return candidate
    return port + 1


def _tls12_context(config, default_ssl_context_factory):
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def options(host: str, port: int, workers: int, threads: int, worker_class: str = "gthread") -> dict:
    """gunicorn's settings (bench/ceiling.py serves its bare app with the same)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        # gunicorn runs gthread workers whenever threads > 1, whatever the class.
        "threads": 1 if worker_class == "sync" else threads,
        "worker_class": worker_class,
        "accesslog": "-",
        # No query strings or referrers in the access log: searches may name people.
        # API calls name their token by its prefix (desk.web.api), never the token.
        "access_log_format": '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss %({desk.token}e)s',
        "timeout": 60,
        "graceful_timeout": 20,
    }


def serve(overrides: dict, host: str, port: int, workers: int, threads: int,
          cert: str | None = None, key: str | None = None, scheduler: bool = True,
          worker_class: str = "gthread") -> None:
    settings = options(host, port, workers, threads, worker_class)
    if cert:
        settings.update(certfile=cert, keyfile=key)
    DeskServer(overrides, settings, scheduler=scheduler).run()
