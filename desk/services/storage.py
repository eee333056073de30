"""File storage: one interface over the local folder and an S3-compatible bucket.

Every file desk keeps (attachments, outbox mail, exports, backups) is an
object named by a key such as ``attachments/3f/3f0c…``. ``of(config)`` gives
the store named by ``DESK_STORAGE_URL``: ``file:///path`` (default: the files
folder of the active region, ``DESK_FILES_DIR``, itself the data folder by default) or ``s3://bucket/prefix`` (endpoint, region and credentials from
``DESK_STORAGE_*`` or the usual AWS environment). Both stores write whole
objects or nothing, so a crash never leaves half a file under its key.
"""
from __future__ import annotations

import abc
import datetime as dt
import io
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

CHUNK = 1024 * 1024
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
PREFIX_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*/?)*")


class StorageError(OSError):
    """The store could not be reached or refused the operation."""


class ObjectMissing(StorageError, FileNotFoundError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: dt.datetime  # aware, UTC


def check_key(key: str) -> str:
    """A key made of safe path segments (no ``..``, no leading slash, no dot files)."""
    if not isinstance(key, str) or len(key) > 512 or not KEY_RE.fullmatch(key) or ".." in key:
        raise ValueError(f"bad storage key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or len(prefix) > 512 or not PREFIX_RE.fullmatch(prefix) or ".." in prefix:
        raise ValueError(f"bad storage prefix {prefix!r}")
    return prefix


class Store(abc.ABC):
    """What every store does. Keys are checked by ``check_key``."""

    kind = ""

    @abc.abstractmethod
    def put(self, key: str, stream: BinaryIO) -> int:
        """Write the stream's bytes under ``key`` (replacing it whole); returns the size."""

    @abc.abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable stream of bytes ``start`` to ``end`` (exclusive; None: to the
        end). ObjectMissing when there is no such object."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when it is already gone."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; ObjectMissing when absent."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, without any secret (for logs and messages)."""

    def put_bytes(self, key: str, data: bytes) -> int:
        return self.put(key, io.BytesIO(data))

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()


class _Window(io.RawIOBase):
    """Reads at most ``length`` bytes of an underlying stream, then EOF."""

    def __init__(self, raw, length: int | None):
        self._raw = raw
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = len(buffer) if self._left is None else min(len(buffer), self._left)
        if want <= 0:
            return 0
        data = self._raw.read(want)
        buffer[:len(data)] = data
        if self._left is not None:
            self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _reader(raw, length: int | None) -> BinaryIO:
    return io.BufferedReader(_Window(raw, length), buffer_size=CHUNK)


# -- the local folder ----------------------------------------------------------

class LocalStore(Store):
    """Objects as files under a root folder (mode 0600, folders 0700); each
    write goes to a hidden temporary name, is synced, then renamed into place."""

    kind = "file"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, stream: BinaryIO) -> int:
        target = self.path(key)
        _make_dirs(target.parent, self.root)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        try:
            fh = open(self.path(key), "rb", buffering=0)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except IsADirectoryError:
            raise ObjectMissing(key) from None
        if start:
            fh.seek(start)
        return _reader(fh, None if end is None else max(0, end - start))

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        yield from self._walk(self.root / folder if folder else self.root, prefix)

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temporary names of writes in progress
            key = Path(entry.path).relative_to(self.root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix) and KEY_RE.fullmatch(key):
                stat = entry.stat()
                yield ObjectInfo(key, stat.st_size,
                                 dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc))

    def describe(self) -> str:
        return f"file://{self.root.resolve()}"


def _make_dirs(folder: Path, root: Path) -> None:
    """Create missing folders up to ``root`` as owner-only."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder == root or folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise


def from_url(url: str, data_dir: str | Path = "instance", endpoint_url: str = "",
             region: str = "", access_key_id: str = "", secret_access_key: str = "") -> Store:
    """The store a URL names: ``file:///abs/path``, ``file://relative/path``,
    or ``s3://bucket/optional/prefix``; empty means the data folder."""
    if not url:
        return LocalStore(Path(data_dir))
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise ValueError("file:// storage URL without a path")
        return LocalStore(Path(path))
    if parts.scheme == "s3":
        from desk.services.storage_s3 import S3Store
        if not parts.netloc:
            raise ValueError("s3:// storage URL without a bucket")
        return S3Store(parts.netloc, parts.path.strip("/"), endpoint_url=endpoint_url,
                       region=region, access_key_id=access_key_id,
                       secret_access_key=secret_access_key)
    raise ValueError("DESK_STORAGE_URL must start with file:// or s3://")


_STORES: dict[tuple, Store] = {}


def of(config) -> Store:
    """The configured store (one per distinct setting, reused)."""
    settings = (config.get("STORAGE_URL", ""), str(config.get("FILES_DIR") or config["DATA_DIR"]),
                config.get("STORAGE_ENDPOINT_URL", ""), config.get("STORAGE_REGION", ""),
                config.get("STORAGE_ACCESS_KEY_ID", ""), config.get("STORAGE_SECRET_ACCESS_KEY", ""))
    store = _STORES.get(settings)
    if store is None:
        store = _STORES[settings] = from_url(*settings)
    return store


def copy(source: Store, key: str, target: Store, target_key: str | None = None) -> int:
    """Copy one object between stores (region moves, backups), streamed."""
    with source.open(key) as fh:
        return target.put(target_key or key, fh)
