"""The instance's files are owner-only: folders 0700, files 0600.

desk runs under the umask 077, so everything it creates (the SQLite database and
its journals, attachments, outbox mail, exports, keys) is private to the account
that runs it. Instances made before that, or files copied in by hand, are
repaired at start-up with a warning in the log that names the folder and counts,
never a file (outbox and export names are not for logs).
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

UMASK = 0o077
FOLDER_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal", "-writers")

log = logging.getLogger("desk.instance_files")


@dataclass
class Repair:
    """What one pass changed, and what it could not change."""
    folders: int = 0
    files: int = 0
    failed: int = 0


def init_app(config: dict) -> None:
    """Set the umask, create the data folder owner-only and repair what is not."""
    os.umask(UMASK)
    Path(config["DATA_DIR"]).mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    roots = _roots(config)
    for root in roots:
        _report(f"The folder {root}", make_private(root))
    loose = [path for path in sqlite_files(config["DATABASE_URL"]) if _outside(path, roots)]
    repair = Repair()
    for path in loose:
        _chmod(path, FILE_MODE, repair)
    _report("The SQLite database", repair)


def make_private(root: Path) -> Repair:
    """Make ``root`` and every folder under it 0700 and every file 0600,
    never following a symbolic link."""
    repair = Repair()
    if root.is_symlink() or not root.is_dir():
        return repair
    _chmod(root, FOLDER_MODE, repair)
    for top, dirs, names in os.walk(root, onerror=lambda exc: _failed(repair)):
        for name in dirs:
            _chmod(Path(top, name), FOLDER_MODE, repair)
        for name in names:
            _chmod(Path(top, name), FILE_MODE, repair)
    return repair


def sqlite_files(database_url: str) -> list[Path]:
    """The SQLite database file and its journals, if the URL names a file."""
    if urlsplit(database_url).scheme != "sqlite":
        return []
    base = database_url.partition("///")[2]
    if not base or base == ":memory:" or base.startswith("file:"):
        return []
    return [Path(base + suffix) for suffix in SQLITE_SIDE_FILES]


def _roots(config: dict) -> list[Path]:
    """The data folder, the files folder and a local file store, once each."""
    candidates = [config["DATA_DIR"], config.get("FILES_DIR") or config["DATA_DIR"]]
    parts = urlsplit(config.get("STORAGE_URL") or "")
    if parts.scheme == "file" and (parts.netloc or parts.path):
        candidates.append(parts.netloc + parts.path)
    roots: dict[Path, Path] = {}
    for candidate in map(Path, candidates):
        roots.setdefault(candidate.resolve(), candidate)
    return list(roots.values())


def _outside(path: Path, roots: Iterable[Path]) -> bool:
    return not any(path.resolve().is_relative_to(root.resolve()) for root in roots)


def _chmod(path: Path, mode: int, repair: Repair) -> None:
    """Give a real file or folder (never a link's target) ``mode`` if it has another."""
    try:
        info = path.lstat()
        kind_ok = stat.S_ISDIR(info.st_mode) if mode == FOLDER_MODE else stat.S_ISREG(info.st_mode)
        if not kind_ok or stat.S_IMODE(info.st_mode) == mode:
            return
        os.chmod(path, mode)
    except FileNotFoundError:
        return
    except OSError:  # another account's file: counted and reported, not fatal
        _failed(repair)
        return
    if mode == FOLDER_MODE:
        repair.folders += 1
    else:
        repair.files += 1


def _failed(repair: Repair) -> None:
    repair.failed += 1


def _report(what: str, repair: Repair) -> None:
    if repair.folders or repair.files:
        log.warning("%s was readable by other accounts on this machine: made %d folder(s) "
                    "and %d file(s) owner-only (0700/0600).", what, repair.folders, repair.files)
    if repair.failed:
        log.warning("%s: %d file(s) or folder(s) could not be made owner-only (another owner?); "
                    "fix their permissions by hand.", what, repair.failed)
