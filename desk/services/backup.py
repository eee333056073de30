"""Backups: an online, consistent copy of the database (SQLite's backup API, or
``pg_dump`` on PostgreSQL) with the attachment files (read from, and restored
into, the file store: a folder or S3) and a manifest of SHA-256 sums; keys are
written apart. ``restore`` puts a checked backup into an empty
instance. ``copy_sqlite`` and ``dump_postgres`` are the database copy, also for
moving between stores."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from desk import crypto
from desk.db import db
from desk.db import is_sqlite
from desk.errors import Conflict
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.migrations import applied
from desk.services import storage

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "desk.db"
PG_FILE = "desk.pgdump"
FILES_DIR = "attachments"
CHUNK = 1024 * 1024
Progress = Callable[[str, int], None]


@dataclass
class Report:
    """What a backup or restore did."""

    path: Path
    database: str
    files: int = 0
    bytes: int = 0
    key_ids: list[str] = field(default_factory=list)


# -- the database copy ----------------------------------------------------------

def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a live SQLite database in steps of pages (SQLite's backup API: the
    copy is consistent while others write)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=2048, sleep=0.005)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def _libpq(url: str) -> tuple[str, dict]:
    """The URL without its password, and an environment holding it (so it never
    shows in the process list)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}@{host}" if user else host
    scheme = "postgresql"
    return urlunsplit((scheme, netloc, parts.path, parts.query, "")), env


def _run_pg(tool: str, args: list[str], url: str) -> None:
    dsn, env = _libpq(url)
    if shutil.which(tool) is None:
        raise Conflict(_l("%(tool)s is not installed (PostgreSQL client tools).", tool=tool))
    done = subprocess.run([tool, *args, "--dbname", dsn], env=env, capture_output=True, text=True)  # nosec B603
    if done.returncode != 0:
        raise Conflict(_l("%(tool)s failed: %(error)s", tool=tool, error=done.stderr.strip()[-500:]))


def dump_postgres(url: str, target: Path) -> None:
    """A consistent snapshot of a live PostgreSQL database (``pg_dump``, custom format)."""
    _run_pg("pg_dump", ["--format=custom", "--no-owner", "--no-privileges", "--file", str(target)], url)


def load_postgres(url: str, source: Path) -> None:
    _run_pg("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error",
                           "--single-transaction", str(source)], url)


# -- files and sums --------------------------------------------------------------

def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_from_store(store: storage.Store, target: Path, progress: Progress | None) -> int:
    """Copy the attachment objects not copied yet into ``target`` (a key is a
    relative path); returns how many were copied."""
    copied = 0
    for info in store.list(FILES_DIR + "/"):
        dest = target / info.key
        if dest.exists():
            continue
        _private_dir(dest.parent)
        try:
            with store.open(info.key) as src:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
        except FileNotFoundError:
            dest.unlink(missing_ok=True)
            continue  # removed (purged) while we listed: no longer part of the data
        copied += 1
        if progress:
            progress("files", 1)
    return copied


def _sums(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): {"sha256": _sha256(p), "size": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


# -- backup ------------------------------------------------------------------------

def work_size(config: dict) -> int:
    """Steps of a backup, for a progress bar: the files, and the database."""
    return sum(1 for _ in storage.of(config).list(FILES_DIR + "/")) + 1


def _empty_or_new(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise Conflict(_l("%(path)s already exists and is not empty.", path=str(path)))


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def backup(config: dict, out: Path, key_ids: list[str], migrations: list[int],
           progress: Progress | None = None) -> Report:
    """Write a backup of the whole instance into ``out`` (new or empty): the
    database, the attachment files and a manifest with their SHA-256 sums. It is
    written under a temporary name and renamed at the end, so a backup that
    exists is complete. Files come before and after the database copy, so every
    file the copied database names is in the backup."""
    out = Path(out)
    _empty_or_new(out)
    if _inside(out, Path(config["DATA_DIR"])):
        raise InvalidInput(_l("Write backups outside the data folder."))
    work = out.with_name(f".{out.name}.partial")
    if work.exists():
        shutil.rmtree(work)
    _private_dir(work)
    store = storage.of(config)
    _copy_from_store(store, work, progress)
    url = config["DATABASE_URL"]
    if url.startswith("sqlite"):
        kind, name = "sqlite", SQLITE_FILE
        copy_sqlite(sqlite_path(url), work / name)
    else:
        kind, name = "postgresql", PG_FILE
        dump_postgres(url, work / name)
    os.chmod(work / name, 0o600)
    if progress:
        progress("database", 1)
    _copy_from_store(store, work, progress)
    sums = _sums(work)
    manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "database": kind, "database_file": name, "migrations": migrations,
                "key_ids": key_ids, "files": sums}
    fd = os.open(work / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    if out.exists():
        out.rmdir()
    os.rename(work, out)
    attachments = [k for k in sums if k.startswith(FILES_DIR + "/")]
    return Report(out, kind, len(attachments), sum(v["size"] for v in sums.values()), key_ids)


def write_keys(keys_out: Path, backup_dir: Path | None, keyring_json: str, secret_key: str) -> Path:
    """Write the keyring and session secret (0600) into ``keys_out``, which must
    not be inside the backup: keys and backups belong in different places."""
    keys_out = Path(keys_out)
    if backup_dir is not None and (_inside(keys_out, backup_dir) or _inside(backup_dir, keys_out)):
        raise InvalidInput(_l("Keep the keys apart from the backup (another folder, better another place)."))
    _private_dir(keys_out)
    for name, text in (("keys.json", keyring_json), ("secret_key", secret_key)):
        target = keys_out / name
        if target.exists():
            raise Conflict(_l("%(path)s already exists.", path=str(target)))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return keys_out


# -- restore -----------------------------------------------------------------------

def read_manifest(source: Path) -> dict:
    """The manifest, once every file it lists is there with its SHA-256
    (InvalidInput naming the first that is not)."""
    source = Path(source)
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise InvalidInput(_l("%(path)s is not a desk backup (no readable manifest.json).",
                              path=str(source))) from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput(_l("This backup's format is not one this version reads."))
    for rel, expected in manifest["files"].items():
        path = (source / rel).resolve()
        if not _inside(path, source) or not path.is_file() or _sha256(path) != expected["sha256"]:
            raise InvalidInput(_l("The backup is damaged: %(file)s is missing or altered.", file=rel))
    return manifest


def restore(config: dict, source: Path, database_is_empty: bool,
            progress: Progress | None = None) -> Report:
    """Put a checked backup into this instance, whose database must be empty and
    whose file store may hold no attachment the backup does not (so a restore
    that was cut short can run again). Files go in first, the database last."""
    source = Path(source)
    manifest = read_manifest(source)
    store = storage.of(config)
    wanted = sorted(k for k in manifest["files"] if k.startswith(FILES_DIR + "/"))
    foreign = {info.key for info in store.list(FILES_DIR + "/")} - set(wanted)
    if not database_is_empty or foreign:
        raise Conflict(_l("This instance is not empty; restore only into a new one."))
    url = config["DATABASE_URL"]
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    if kind != manifest["database"]:
        raise Conflict(_l("This backup is of a %(kind)s database; this instance uses %(here)s.",
                          kind=manifest["database"], here=kind))
    for key in wanted:
        with (source / key).open("rb") as fh:
            store.put(key, fh)
        if progress:
            progress("files", 1)
    if kind == "sqlite":
        target = sqlite_path(url)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        partial = target.with_name(target.name + ".restoring")
        partial.unlink(missing_ok=True)
        copy_sqlite(source / manifest["database_file"], partial)
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    else:
        load_postgres(url, source / manifest["database_file"])
    size = sum(v["size"] for v in manifest["files"].values())
    return Report(source, kind, len(wanted), size, manifest.get("key_ids", []))


# -- the instance's own side (inside an app context) -------------------------------

def instance_backup(config: dict, out: Path, keys_out: Path | None = None,
                    progress: Progress | None = None) -> Report:
    """Back up this instance into ``out``; with ``keys_out``, also its keys, apart."""
    if keys_out is not None and (_inside(Path(keys_out), Path(out)) or _inside(Path(out), Path(keys_out))):
        raise InvalidInput(_l("Keep the keys apart from the backup (another folder, better another place)."))
    report = backup(config, out, crypto.key_ids(), applied(db.obj), progress)
    if keys_out is not None:
        write_keys(keys_out, report.path, crypto.keyring_json(), config["SECRET_KEY"])
    return report


def database_is_empty() -> bool:
    """No tables at all, or (SQLite, which is replaced whole) tables with no rows
    of people or audit history."""
    tables = set(db.obj.get_tables())
    if not tables - {"schema_migration"}:
        return True
    if not is_sqlite():
        return False  # PostgreSQL: pg_restore needs a database without tables
    from desk.models import AuditEntry
    from desk.models import User
    return not (User.select().exists() or AuditEntry.select().exists())


def keys_for_restore(source: Path, keys_dir: Path | None) -> tuple[str, str] | None:
    """The keyring and secret to install from ``keys_dir`` (None: keep this
    instance's). Conflict when the keys at hand cannot open the backup."""
    manifest = read_manifest(source)
    needed = set(manifest.get("key_ids", []))
    if keys_dir is None:
        have, pair = set(crypto.key_ids()), None
    else:
        try:
            keyring = (Path(keys_dir) / "keys.json").read_text()
            secret = (Path(keys_dir) / "secret_key").read_text().strip()
            have, pair = set(crypto.key_ids_in(keyring)), (keyring, secret)
        except (OSError, ValueError):
            raise InvalidInput(_l("%(path)s does not hold keys.json and secret_key of a backup.",
                                  path=str(keys_dir))) from None
    if not needed <= have:
        raise Conflict(_l("The backup's data is sealed with keys %(ids)s, which are not at hand; "
                          "give the folder written by backup --keys-out with --keys.",
                          ids=", ".join(sorted(needed - have))))
    return pair


def install_keys(data_dir: Path, pair: tuple[str, str]) -> None:
    """Replace the (new, unused) keys of an empty instance by the backup's."""
    for name, text in zip(("keys.json", "secret_key"), pair):
        target = Path(data_dir) / name
        partial = target.with_name(name + ".restoring")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(partial, target)


# -- scheduled backups --------------------------------------------------------------

SCHEDULED_PREFIX = "desk-backup-"


def _scheduled(folder: Path) -> list[Path]:
    """Complete scheduled backups in ``folder``, oldest first (names sort by time)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith(SCHEDULED_PREFIX) and (p / MANIFEST).is_file())


def scheduled_backup(config: dict, now: dt.datetime | None = None) -> Path | None:
    """When BACKUP_DIR is set and the newest backup there is older than
    BACKUP_EVERY_HOURS, make one (without keys) and keep the BACKUP_KEEP newest.
    Returns the new backup's folder, or None when none was due."""
    if not config.get("BACKUP_DIR"):
        return None
    folder = Path(config["BACKUP_DIR"])
    now = now or dt.datetime.now(dt.timezone.utc)
    existing = _scheduled(folder)
    if existing:
        made = dt.datetime.strptime(existing[-1].name[len(SCHEDULED_PREFIX):], "%Y%m%dT%H%M%SZ")
        if now.replace(tzinfo=None) - made < dt.timedelta(hours=config["BACKUP_EVERY_HOURS"]):
            return None
    _private_dir(folder)
    target = folder / f"{SCHEDULED_PREFIX}{now:%Y%m%dT%H%M%SZ}"
    instance_backup(config, target)
    for old in _scheduled(folder)[:-max(1, config["BACKUP_KEEP"])]:
        shutil.rmtree(old)
    return target
