"""Hosting regions: the named data stores (a database URL plus a folder for
files) this help center may live in, which one is active, and following the
help center when a move (desk.services.region_move) hands it to another store.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import Flask
from flask import current_app

from desk import crypto
from desk import db as database
from desk.config import REGION_POINTER
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.services import storage

log = logging.getLogger("desk.regions")
_follow_lock = threading.Lock()


@dataclass(frozen=True)
class Region:
    """A named data store."""

    name: str
    database_url: str
    files_dir: str
    storage_url: str = ""  # empty: the files folder; or s3://bucket/prefix

    @property
    def engine(self) -> str:
        return "PostgreSQL" if self.database_url.startswith("postgres") else "SQLite"

    @property
    def location(self) -> str:
        """Where the data lives, without credentials."""
        parts = urlsplit(self.database_url)
        if self.engine == "SQLite":
            return self.database_url.split(":///", 1)[-1]
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}{parts.path}"


def store_of(config: Mapping[str, Any], region: Region):
    """The file store of a region (credentials of S3 stores from the settings)."""
    return storage.from_url(region.storage_url, region.files_dir,
                            config.get("STORAGE_ENDPOINT_URL", ""), config.get("STORAGE_REGION", ""),
                            config.get("STORAGE_ACCESS_KEY_ID", ""),
                            config.get("STORAGE_SECRET_ACCESS_KEY", ""))


def declared(config: Mapping[str, Any]) -> dict[str, Region]:
    """The regions of the instance file (``[regions.NAME]``), by name."""
    found = {}
    for name, spec in (config.get("REGIONS") or {}).items():
        if not isinstance(spec, dict) or not spec.get("database_url"):
            continue
        found[name] = Region(name, spec["database_url"],
                             spec.get("data_dir") or str(Path(config["DATA_DIR"]) / "regions" / name),
                             spec.get("storage_url", ""))
    return found


def named(config: Mapping[str, Any], name: str) -> Region:
    """A declared region, or InvalidInput naming the declared ones."""
    regions = declared(config)
    if name not in regions:
        raise InvalidInput(_l("No region named %(name)s is declared in desk.toml (declared: %(names)s).",
                              name=name, names=", ".join(sorted(regions)) or "-"))
    return regions[name]


def active(config: Mapping[str, Any]) -> Region:
    """The store this process serves from."""
    return Region(config["REGION"], config["DATABASE_URL"], config["FILES_DIR"],
                  config.get("STORAGE_URL", ""))


def seal_url(url: str) -> str:
    """A store's URL (which may hold a password) as kept in the other store."""
    return crypto.seal_secret("region-url", url)


def open_url(sealed: str) -> str:
    return crypto.open_secret("region-url", sealed) or ""


def write_pointer(config: Mapping[str, Any], region: Region) -> None:
    """Remember the active store in the data folder (read before any other
    setting at the next start), written atomically and owner-only."""
    path = Path(config["DATA_DIR"]) / REGION_POINTER
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"name": region.name, "database_url": region.database_url,
                   "files_dir": region.files_dir, "storage_url": region.storage_url}, fh)
    os.replace(tmp, path)


def peer_of(state) -> Region:
    """The other store named in a region_state row (files: a folder, or a
    storage URL after "|")."""
    files_dir, _, storage_url = state.peer_files.partition("|")
    return Region(state.peer_name, open_url(state.peer_url), files_dir, storage_url)


def follow(app: Flask) -> Region | None:
    """This process's store has moved: reconnect to the new one, take its
    files folder, and remember it for the next start."""
    from desk.models import RegionState
    with _follow_lock:
        state = RegionState.get_or_none(RegionState.id == 1)
        if state is None or state.status != "moved":
            return None
        target = peer_of(state)
        database.switch(target.database_url)
        app.config.update(REGION=target.name, DATABASE_URL=target.database_url,
                          FILES_DIR=target.files_dir, STORAGE_URL=target.storage_url)
        write_pointer(app.config, target)
    log.warning("desk: the help center moved to region %s; reconnected", target.name)
    return target


def init_app(app: Flask) -> None:
    """Follow a move of the store from any request, job or command."""
    database.on_store_moved(lambda: follow(current_app._get_current_object()))


def describe(config: Mapping[str, Any]) -> dict:
    """What the privacy page and settings say about where the data lives."""
    region = active(config)
    return {"name": region.name, "engine": region.engine, "location": region.location,
            "files": store_of(config, region).describe(),
            "declared": sorted(declared(config))}
