"""A real S3-compatible server for tests: moto's standalone server
(``moto[server]``) on 127.0.0.1, as a subprocess of the test run, no network
beyond loopback. Each test gets a bucket of its own."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from tests.smtp import free_port

ACCESS_KEY = "desk-test-access"
SECRET_KEY = "desk-test-secret-key"
REGION = "us-east-1"


class MotoServer:
    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "MotoServer":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DESK_"))}
        self._log = (self.log_dir / f"moto-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def new_bucket(self) -> str:
        name = f"desk-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, prefix: str = "files") -> dict:
        """The app settings that point desk at ``bucket`` on this server."""
        return {"STORAGE_URL": f"s3://{bucket}/{prefix}", "STORAGE_ENDPOINT_URL": self.endpoint,
                "STORAGE_REGION": REGION, "STORAGE_ACCESS_KEY_ID": ACCESS_KEY,
                "STORAGE_SECRET_ACCESS_KEY": SECRET_KEY}

    def env(self, bucket: str, prefix: str = "files") -> dict:
        return {f"DESK_{k}": v for k, v in self.settings(bucket, prefix).items()}

    def raw_objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of the bucket as stored (what an attacker with the bucket sees)."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found
