"""Settings: defaults, then the instance file, then DESK_* environment variables.

Tests and embedders pass a mapping to ``create_app`` which wins over all three.
"""
from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Mapping



def default_data_dir() -> str:
    """``instance`` here, or next to the single executable when run from it."""
    if getattr(sys, "frozen", False):
        return str(Path(sys.executable).resolve().parent / "instance")
    return "instance"


DEFAULTS: dict[str, Any] = {
    "DATA_DIR": default_data_dir(),
    "DATABASE_URL": "",  # empty: sqlite:///<DATA_DIR>/desk.db
    "REGION": "default",
    "REGIONS": {},  # [regions.NAME] database_url = ..., data_dir = ... in desk.toml
    "FILES_DIR": "",  # empty: DATA_DIR (attachments, outbox and exports live here)
    "REGION_ROLLBACK_DAYS": 7,  # the old store of a move is kept read-only this long
    "BASE_URL": "http://127.0.0.1:5000",
    "RETENTION_DAYS": 60,
    "BULK_EXPORT_DAYS": 7,  # days a bulk export stays downloadable
    # An erasure ends by rebuilding the database (SQLite VACUUM, PostgreSQL VACUUM FULL of
    # the tables it touched) so no deleted value lingers in the file; above this size it
    # only logs that the rebuild was skipped (it blocks writers while it runs).
    "ERASURE_COMPACT_MAX_MB": 512,
    "SMTP_HOST": "",
    "SMTP_PORT": 25,
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "SMTP_STARTTLS": False,
    "SMTP_TIMEOUT": 10,
    "MAIL_FROM": "desk@localhost",
    "MASTER_KEY": "",  # keyring JSON or one base64 key; empty: <DATA_DIR>/keys.json
    "ENCRYPTION_KEYS": "",  # the older name of MASTER_KEY, still read
    "SECRET_KEY": "",  # empty: <DATA_DIR>/secret_key
    "HTTPS": False,  # set when a proxy in front terminates TLS
    "PROXY_FIX": 0,  # number of trusted proxies setting X-Forwarded-*
    "RATELIMIT_STORAGE_URI": "",  # empty: <DATA_DIR>/ratelimits.db, shared by this machine's workers
    "LOGIN_ADDRESS_LIMIT": "20 per minute",
    "API_RATE_LIMIT": "120 per minute",  # per API token
    "LOGIN_ACCOUNT_MAX_FAILURES": 5,  # wrong passwords for one address from one client, then waits
    "LOGIN_ACCOUNT_MAX_FAILURES_ALL": 20,  # ... from all clients, then short waits
    "LOGIN_ACCOUNT_WINDOW_MINUTES": 15,  # failures are counted this long
    "LOGIN_MAX_WAIT_SECONDS": 30,  # the longest wait failures elsewhere can put on a client
    "EMAIL_CHANGE_LIMIT": "5 per hour",  # email change requests per person
    "ARGON2_TIME_COST": 3,
    "ARGON2_MEMORY_COST": 65536,
    "ATTACHMENT_MAX_MB": 20,  # per file
    "UPLOAD_MAX_MB": 50,  # all files of one request
    "STORAGE_URL": "",  # file:///path or s3://bucket/prefix; empty: the data folder
    "STORAGE_ENDPOINT_URL": "",  # S3-compatible server (MinIO, Ceph...); empty: AWS
    "STORAGE_REGION": "",
    "STORAGE_ACCESS_KEY_ID": "",  # empty: the usual AWS_* environment / profile
    "STORAGE_SECRET_ACCESS_KEY": "",
    # A signed checkpoint of the audit chain goes to <DATA_DIR>/audit-witness.jsonl
    # and the log after this many new entries, or this many minutes with new entries.
    "AUDIT_CHECKPOINT_ENTRIES": 1000,
    "AUDIT_CHECKPOINT_MINUTES": 10,
    "BACKUP_DIR": "",  # scheduled backups go here; empty: none
    "BACKUP_EVERY_HOURS": 24,
    "BACKUP_KEEP": 7,  # scheduled backups kept; older ones are removed
    "WORKERS": 2,
    "THREADS": 4,
    "WORKER_CLASS": "gthread",  # gunicorn's worker model: gthread or sync (bench/workers.py)
}

LANGUAGES = ("en", "zh_Hans")
# Written in the data folder when the help center moved to another region.
REGION_POINTER = "region.json"


def _coerce(raw: str, default: Any) -> Any:
    if isinstance(default, dict):
        return json.loads(raw)
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    return raw


def load(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the effective settings (keys without the DESK_ prefix)."""
    settings = dict(DEFAULTS)
    overrides = dict(overrides or {})
    data_dir = overrides.get("DATA_DIR") or os.environ.get("DESK_DATA_DIR") or settings["DATA_DIR"]
    config_file = Path(os.environ.get("DESK_CONFIG_FILE", Path(data_dir) / "desk.toml"))
    if config_file.is_file():
        with config_file.open("rb") as fh:
            settings.update({k.upper(): v for k, v in tomllib.load(fh).items()})
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"DESK_{key}")
        if raw is not None:
            settings[key] = _coerce(raw, default)
    settings.update(overrides)
    settings["ATTACHMENT_MAX_BYTES"] = settings["ATTACHMENT_MAX_MB"] * 2**20
    settings["ATTACHMENTS_MAX_BYTES"] = settings["UPLOAD_MAX_MB"] * 2**20
    _apply_region(settings, explicit_url="DATABASE_URL" in overrides
                  or os.environ.get("DESK_DATABASE_URL") is not None)
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = f"sqlite:///{Path(settings['DATA_DIR']) / 'desk.db'}"
    if not settings["FILES_DIR"]:
        settings["FILES_DIR"] = settings["DATA_DIR"]
    return settings


def _apply_region(settings: dict[str, Any], explicit_url: bool) -> None:
    """The store to use: after a region move the pointer file in the data
    folder names it; otherwise a declared region named by REGION, unless a
    database URL was given explicitly."""
    pointer = Path(settings["DATA_DIR"]) / REGION_POINTER
    if pointer.is_file():
        active = json.loads(pointer.read_text(encoding="utf-8"))
        settings.update(REGION=active["name"], DATABASE_URL=active["database_url"],
                        FILES_DIR=active["files_dir"], STORAGE_URL=active.get("storage_url", ""))
        return
    declared = settings["REGIONS"].get(settings["REGION"]) if isinstance(settings["REGIONS"], dict) else None
    if declared and not explicit_url:
        settings["DATABASE_URL"] = declared.get("database_url", "")
        settings["FILES_DIR"] = declared.get("data_dir", "") or settings["FILES_DIR"]
        settings["STORAGE_URL"] = declared.get("storage_url", "") or settings.get("STORAGE_URL", "")
