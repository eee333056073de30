"""Moving the help center to another region's store while it keeps serving.

1. prepare: reach the target, apply migrations, refuse one that holds data;
2. copy: journal triggers on, every table from one snapshot, every file;
3. catch up: re-apply journalled changes until little is left;
4. cut over: a short write pause (writes wait at desk.db's gate), the last
   catch-up, verification of every table and file, then the switch: the old
   store says "moved" (its triggers refuse writes from then on) and every app
   process follows it to the new store (desk.services.regions.follow);
5. a PostgreSQL target then builds the trigram indexes the copy left out, by
   CREATE INDEX CONCURRENTLY while it takes writes (phase "text index":
   searches give the same results meanwhile, by reading the rows);
6. afterwards the old store stays, read-only, for the rollback window, and is
   then wiped by the scheduler.

The state lives in both stores' region_state rows, so a killed move runs again
from where it can (``--resume``) and never leaves two stores taking writes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import zlib
import signal
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Callable, Iterator

from flask import Flask

from desk import audit
from desk import policy
from desk.db import GATE_LOCK_ID
from desk.db import db
from desk.db import open_database
from desk.errors import Conflict
from desk.errors import DeskError
from desk.errors import InvalidInput
from desk.i18n import lazy_gettext as _l
from desk.migrations import migrate
from desk.models import RegionState
from desk.models import utcnow
from desk.services import regions
from desk.services import replication
from desk.services.regions import Region

LOCK_NAME = "region-move"
TEXT_INDEX_LOCK = "region-text-index"
REQUESTED = "requested"
TEXT_INDEX = "text index"  # the phase after the switch on a PostgreSQL target
COPY_PHASES = ("copy", "catch-up", "verify")
LATE_FILES_SECONDS = 2.0
CATCH_UP_ROUNDS = 10
SMALL_LAG = 200  # journalled changes left before the pause

Progress = Callable[[str, int, int], None]  # phase, done, total


def _checkpoint(name: str) -> None:
    """A named step where the crash tests kill the move (DESK_REGION_MOVE_KILL_AT)."""
    if os.environ.get("DESK_REGION_MOVE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class VerificationFailed(DeskError):
    """The copy differs from the source: nothing was switched."""


@dataclass
class Report:
    source: str
    target: str
    rows: int = 0
    files: int = 0
    seconds: float = 0.0  # the whole move, the text index after the switch included
    switch_seconds: float = 0.0  # from the start until the switch (the end of the pause)
    copy_seconds: float = 0.0  # the bulk copy of the tables alone
    phases: dict = field(default_factory=dict)  # seconds per step of the move, in order
    pause_seconds: float = 0.0
    catch_up_rounds: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def switch_rows_per_second(self) -> float:
        return self.rows / self.switch_seconds if self.switch_seconds else 0.0

    @property
    def copy_rows_per_second(self) -> float:
        return self.rows / self.copy_seconds if self.copy_seconds else 0.0


# -- state in both stores -------------------------------------------------------

def _state(database) -> dict:
    row = database.execute_sql(
        "SELECT name, status, peer_name, peer_url, peer_files, phase FROM region_state WHERE id = 1"
    ).fetchone()
    keys = ("name", "status", "peer_name", "peer_url", "peer_files", "phase")
    return dict(zip(keys, row)) if row else {}


def _set_state(database, **values) -> None:
    values["updated_at"] = utcnow()
    p = "%s" if replication.is_postgres(database) else "?"
    cols = ", ".join(f'"{k}" = {p}' for k in values)
    database.execute_sql(f"UPDATE region_state SET {cols} WHERE id = 1", list(values.values()))  # nosec B608


def _peer(region: Region) -> dict:
    files = region.files_dir + (f"|{region.storage_url}" if region.storage_url else "")
    return {"peer_name": region.name, "peer_url": regions.seal_url(region.database_url),
            "peer_files": files}


def _connect(region: Region):
    """The target's database, connected, or a clear InvalidInput."""
    if region.engine == "SQLite":
        Path(region.location).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        target = open_database(region.database_url)
        target.connect(reuse_if_open=True)
        target.execute_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot reach it"
        raise InvalidInput(_l("Cannot reach the target database (%(error)s).",
                              error=type(exc).__name__)) from None
    return target


def _holds_data(database) -> bool:
    return any(database.execute_sql(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone()  # nosec B608
               for name in ("user", "ticket", "department", "attachment"))


def status(user, config) -> dict:
    """Where this help center lives and how far a move has come (admins)."""
    policy.require(user, "settings:manage")
    return describe_move(config)


def describe_move(config) -> dict:
    """Where this help center lives and how far a move has come."""
    row = RegionState.get_or_none(RegionState.id == 1)
    info = regions.describe(config)
    info.update(status="active", phase="", peer="", wipe_after=None, percent=None)
    if row is not None:
        progress = json.loads(row.progress or "{}")
        percent = (100 * progress["done"] // progress["total"]) if progress.get("total") else None
        info.update(status=row.status, phase=row.phase, peer=row.peer_name,
                    wipe_after=row.wipe_after, percent=percent)
    return info


def request_move(user, config, name: str, confirmation: str, ip: str = "") -> None:
    """An admin asks for a move to a declared region; the scheduler runs it."""
    policy.require(user, "settings:manage")
    target = regions.named(config, name)
    if confirmation.strip() != target.name:
        raise InvalidInput(_l("Type the region's name exactly to confirm."))
    if target.database_url == config["DATABASE_URL"]:
        raise InvalidInput(_l("The help center already lives in that store."))
    row = RegionState.get(RegionState.id == 1)
    if row.phase not in ("", "done", "wiped"):
        raise Conflict(_l("A region move is already running."))
    with audit.transaction():
        RegionState.update(phase=REQUESTED, progress="{}", updated_at=utcnow(),
                           **_peer(target)).where(RegionState.id == 1).execute()
        audit.record(audit.Actor.of(user, ip), "region.move_requested", "region", target.name,
                     details={"from": config["REGION"], "to": target.name})


def run_requested(app: Flask) -> Report | None:
    """The scheduler's side of a move asked for on the settings page; also
    finishes the text index of a move whose process died after the switch
    (unless another process is building it)."""
    row = RegionState.get_or_none(RegionState.id == 1)
    if row is not None and row.phase == TEXT_INDEX:
        report = Report(row.peer_name, app.config["REGION"])
        return report if finish_text_index(app, report, wait=False) else None
    if row is None or row.phase != REQUESTED:
        return None
    return move(app, regions.peer_of(row), resume=True)


def _record_progress(phase: str, done: int, total: int) -> None:
    RegionState.update(phase=phase, progress=json.dumps({"done": done, "total": total}),
                       updated_at=utcnow()).where(RegionState.id == 1).execute()


# -- the move --------------------------------------------------------------------

def move(app: Flask, target: Region, actor: audit.Actor = audit.SYSTEM, resume: bool = False,
         progress: Progress = lambda phase, done, total: None) -> Report:
    """Move the help center from its active store to ``target`` (see module doc)."""
    source = regions.active(app.config)
    here = _state(db.obj)
    if here.get("status") == "moved" or here.get("phase") in ("switched", TEXT_INDEX):
        # Killed after the switch: only the last steps remain.
        peer = regions.open_url(here.get("peer_url") or "")
        if here.get("status") == "moved" and peer != target.database_url:
            raise Conflict(_l("This store has already moved to region %(name)s.", name=here["peer_name"]))
        if here.get("status") != "moved" and target.database_url != source.database_url:
            raise Conflict(_l("A region move is already running."))
        return _finish(app, source, target, actor, Report(source.name, target.name), progress)
    if source.database_url == target.database_url:
        raise InvalidInput(_l("The help center already lives in that store."))
    dst = _connect(target)
    # The engine reads the source on a connection of its own: its long snapshot,
    # the move's lock and the pause never mix with this process's own writes.
    src = open_database(source.database_url)
    try:
        with _move_lock(src, source) as got:
            if not got:
                raise Conflict(_l("A region move is already running."))
            return _copy_and_switch(app, source, target, src, dst, actor, resume, progress)
    finally:
        _dispose(src)
        _dispose(dst)


def _dispose(database) -> None:
    """Close a store's connections, pooled ones too (a session's locks go with them)."""
    if not database.is_closed():
        database.close()
    if hasattr(database, "close_all"):
        database.close_all()


@contextlib.contextmanager
def _move_lock(src, source: Region) -> Iterator[bool]:
    """One move at a time, released even when the process is killed: an
    advisory lock of the source's own session, or a lock on a file beside the
    SQLite database."""
    if replication.is_postgres(src):
        key = zlib.crc32(LOCK_NAME.encode())
        got = src.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        try:
            yield got
        finally:
            if got:
                src.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
        return
    path = Path(source.location + ".region-move.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _copy_and_switch(app, source, target, src, dst, actor, resume, progress) -> Report:
    report = Report(source.name, target.name)
    last = report.started

    def lap(phase: str) -> float:
        nonlocal last
        now = time.monotonic()
        report.phases[phase] = now - last
        last = now
        return report.phases[phase]

    migrate(dst)
    here = _state(src)
    copying = here.get("phase") in COPY_PHASES
    continuing = ((copying or here.get("phase") == REQUESTED)
                  and regions.open_url(here.get("peer_url") or "") == target.database_url)
    if _holds_data(dst) and not (resume and continuing):
        hint = _l(" Run it again with --resume to continue the interrupted move.") if continuing else ""
        raise Conflict(_l("The target database already holds data; choose an empty one.") + hint)
    if _state(dst).get("status") == "moved":
        raise Conflict(_l("The target store has handed its data to another store; it cannot take a move."))
    _set_state(dst, name=target.name, status="incoming", phase="", peer_name="", peer_url="",
               peer_files="")
    if not (continuing and copying):
        audit.record(actor, "region.move_started", "region", target.name,
                     details={"from": source.name, "to": target.name})
    _set_state(src, phase="copy", **_peer(target))
    replication.install_triggers(src)
    _checkpoint("after-triggers")

    source_files = regions.store_of(app.config, source)
    target_files = regions.store_of(app.config, target)
    total = sum(replication.count_rows(src).values()) + replication.count_files(source_files)
    done = 0
    counting = threading.Lock()

    def files_copied(n: int) -> None:
        nonlocal done
        with counting:
            done += n

    def step(n: int) -> None:
        files_copied(n)
        progress("copy", done, total)
        _checkpoint("mid-copy")
        if done % 50_000 < n:
            _record_progress("copy", done, total)

    # The files are copied by threads of their own while the tables are (a
    # file copy mostly waits for the disk, the tables for the databases).
    files = replication.FileSync(source_files, target_files)
    file_copy = _Background(files.sync, files_copied)
    after_copy = None
    try:
        lap("prepare")
        report.rows = replication.copy_tables(src, dst, step)
        report.copy_seconds = lap("tables")
        # SQLite rebuilds its text index now; PostgreSQL vacuums in the
        # background meanwhile (its trigram indexes wait for the switch).
        after_copy = replication.AfterCopy(dst)
        file_copy.wait()
        # The first comparison, chunk by chunk, before the catch-up: every
        # change since the copy's snapshot is in the journal, so the chunks it
        # touches are among the changed keys the pause checks again.
        _record_progress("verify", done, total)
        progress("verify", 0, 1)
        checked = replication.verify_all(src, dst)
        lap("files and first verification")
        after_copy.wait()
        lap("rest of the vacuum")
    except BaseException:
        file_copy.join()  # before the stores are closed
        if after_copy is not None:
            after_copy.join()
        raise
    _record_progress("catch-up", done, total)
    changed_since: dict[str, set] = {}
    for report.catch_up_rounds in range(1, CATCH_UP_ROUNDS + 1):
        _merge(changed_since, replication.catch_up(src, dst))
        files.sync()
        progress("catch-up", report.catch_up_rounds, CATCH_UP_ROUNDS)
        if replication.pending_changes(src) < SMALL_LAG:
            break
    lap("catch-up")
    pause: dict[str, float] = {}
    report.pause_seconds = _cut_over(app, src, dst, source, target, checked, changed_since, files, pause)
    lap("pause and switch")
    report.switch_seconds = last - report.started
    report.phases.update(pause)
    _checkpoint("after-switch")
    # An upload stores its file before its row waits at the gate: files that
    # land in the old store around the switch are copied once more.
    time.sleep(LATE_FILES_SECONDS)
    files.sync()
    lap("late files")
    report.files = len(files.seen)
    return _finish(app, source, target, actor, report, progress)


class _Background:
    """A call run by a thread of its own; ``wait`` joins it and raises what it raised."""

    def __init__(self, call, *args):
        self.error: BaseException | None = None

        def run() -> None:
            try:
                call(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to wait()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def wait(self) -> None:
        self.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _merge(into: dict[str, set], changed: dict[str, set]) -> None:
    for table, keys in changed.items():
        into.setdefault(table, set()).update(keys)


@contextlib.contextmanager
def _paused(src) -> Iterator[None]:
    """Hold every writer of the source: PostgreSQL's gate lock taken exclusively
    (writers take it shared), or SQLite's write lock."""
    if replication.is_postgres(src):
        src.execute_sql("SELECT pg_advisory_lock(%s)", (GATE_LOCK_ID,))
        try:
            yield
        finally:
            src.execute_sql("SELECT pg_advisory_unlock(%s)", (GATE_LOCK_ID,))
    else:
        with src.atomic("IMMEDIATE"):
            yield


def _cut_over(app, src, dst, source: Region, target: Region, checked, changed_since, files,
              steps: dict) -> float:
    """The write pause: last catch-up, verification, switch. Returns its
    length (and the length of each of its steps in ``steps``)."""
    started = last = time.monotonic()

    def lap(step: str) -> None:
        nonlocal last
        now = time.monotonic()
        steps[f"pause: {step}"] = now - last
        last = now

    with _paused(src):
        lap("writers held")
        _merge(changed_since, replication.catch_up(src, dst))
        lap("last catch-up")
        files.sync(delete=True)
        lap("files")
        _checkpoint("in-pause")
        problems = replication.verify_final(src, dst, checked, changed_since) + files.differences()
        lap("verification")
        if problems:
            raise VerificationFailed("; ".join(problems[:10]))
        with dst.atomic():
            replication.reset_sequences(dst)
            wipe_after = utcnow() + dt.timedelta(days=app.config["REGION_ROLLBACK_DAYS"])
            _set_state(dst, status="active", phase="switched", wipe_after=wipe_after, **_peer(source))
        # The switch: one committed row. From here the source refuses writes.
        _set_state(src, status="moved", phase="switched", **_peer(target))
    lap("switch")
    return time.monotonic() - started


def _finish(app, source: Region, target: Region, actor, report: Report,
            progress: Progress = lambda phase, done, total: None) -> Report:
    """After the switch (also when a killed move runs again): follow the move
    in this process, record it on the new store, then build the text index
    the copy left out (PostgreSQL). The move is audited at once: the data has
    moved and the new store takes writes; the index only makes searches
    faster again."""
    regions.follow(app)
    row = RegionState.get(RegionState.id == 1)
    if row.phase == "switched":
        _late_attachments(app, row)
        later = replication.missing_text_indexes(db.obj)
        with audit.transaction():
            audit.record(actor, "region.moved", "region", target.name,
                         details={"from": source.name, "to": target.name, "rows": report.rows,
                                  "files": report.files,
                                  "pause_ms": round(report.pause_seconds * 1000)})
            RegionState.update(phase=TEXT_INDEX if later else "done",
                               progress="{}").where(RegionState.id == 1).execute()
    finish_text_index(app, report, progress)
    report.seconds = time.monotonic() - report.started
    return report


def _late_attachments(app: Flask, row: RegionState) -> None:
    """Attachment files the new store's rows name that are still only in the
    old store (its peer): uploads that landed around the switch, when the
    move was killed before its late round."""
    replication.copy_named_attachments(db.obj, regions.store_of(app.config, regions.peer_of(row)),
                                       regions.store_of(app.config, regions.active(app.config)))


def finish_text_index(app: Flask, report: Report, progress: Progress = lambda phase, done, total: None,
                      wait: bool = True) -> bool:
    """The last step of a move to PostgreSQL, after the switch: build each
    trigram index the store lacks (an INVALID leftover of a killed build is
    dropped first), one after the other, by CREATE INDEX CONCURRENTLY, so the
    help center keeps taking writes; then VACUUM ANALYZE. One process at a
    time (an advisory lock of the store: ``wait`` for it, or return False
    when another holds it); a kill leaves the phase, and a rerun of the move
    (or the scheduler) builds what is missing. True when it ran."""
    row = RegionState.get_or_none(RegionState.id == 1)
    if row is None or row.phase != TEXT_INDEX:
        return False
    database = open_database(app.config["DATABASE_URL"])
    locking = replication.is_postgres(database)
    key = zlib.crc32(TEXT_INDEX_LOCK.encode())
    try:
        if locking and wait:
            database.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        elif locking and not database.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            return False
        try:
            if RegionState.get(RegionState.id == 1).phase == TEXT_INDEX:  # not finished meanwhile
                _build_text_index(database, report, progress)
        finally:
            if locking:
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        _dispose(database)
    return True


def _build_text_index(database, report: Report, progress: Progress) -> None:
    last = time.monotonic()
    todo = replication.missing_text_indexes(database)
    for done, (name, table, column) in enumerate(todo):
        _record_progress(TEXT_INDEX, done, len(todo))
        progress(TEXT_INDEX, done, len(todo))
        replication.build_text_index(database, name, table, column)
        _checkpoint("mid-text-index")
    progress(TEXT_INDEX, len(todo), len(todo))
    now = time.monotonic()
    report.phases["text index (after the switch)"], last = now - last, now
    if replication.is_postgres(database):
        # Statistics with the new indexes and the rows written since the copy.
        database.execute_sql("VACUUM ANALYZE")
    report.phases["vacuum (after the switch)"] = time.monotonic() - last
    RegionState.update(phase="done", progress="{}").where(RegionState.id == 1).execute()


# -- rollback and wipe -----------------------------------------------------------

def rollback(app: Flask, actor: audit.Actor = audit.SYSTEM, progress: Progress = lambda *a: None) -> Report:
    """Move back to the store the last move came from, while it is still kept."""
    row = RegionState.get_or_none(RegionState.id == 1)
    if row is None or not row.peer_url or row.wipe_after is None or row.status != "active":
        raise InvalidInput(_l("There is no earlier store to roll back to."))
    if row.phase not in ("", "done"):  # the text index after the switch, or a requested move
        raise Conflict(_l("A region move is already running."))
    previous = regions.peer_of(row)
    old = _connect(previous)
    if _state(old).get("status") != "moved":
        raise Conflict(_l("The earlier store is not a moved-away copy; it will not be overwritten."))
    replication.drop_triggers(old)
    with old.atomic():
        for t in reversed(replication.tables()):
            old.execute_sql(f'DELETE FROM "{t.name}"')  # nosec B608
        old.execute_sql("DELETE FROM region_journal")
        _set_state(old, status="incoming", phase="")
    _dispose(old)
    audit.record(actor, "region.rollback_started", "region", previous.name,
                 details={"from": row.name, "to": previous.name})
    return move(app, previous, actor, resume=True, progress=progress)


def wipe_expired(app: Flask, now: dt.datetime | None = None) -> str | None:
    """Wipe the old store of a move once its rollback window has passed:
    tables dropped (a one-row marker stays on PostgreSQL so stale servers
    follow), SQLite files deleted, files removed. Returns the region wiped."""
    row = RegionState.get_or_none(RegionState.id == 1)
    now = now or utcnow()
    if row is None or not row.peer_url or row.wipe_after is None or row.wipe_after > now:
        return None
    old = regions.peer_of(row)
    database = _connect(old)
    if _state(database).get("status") != "moved":
        raise Conflict(_l("The earlier store is not a moved-away copy; it will not be wiped."))
    if old.engine == "SQLite":
        _dispose(database)
        for suffix in ("", "-wal", "-shm"):
            Path(old.location + suffix).unlink(missing_ok=True)
    else:
        with database.atomic():
            for t in reversed(replication.tables()):
                database.execute_sql(f'DROP TABLE IF EXISTS "{t.name}" CASCADE')
            database.execute_sql('DROP TABLE IF EXISTS "region_journal", "schema_migration" CASCADE')
            database.execute_sql("DROP FUNCTION IF EXISTS desk_region_journal() CASCADE")
        _dispose(database)
    files = replication.remove_files(regions.store_of(app.config, old))
    RegionState.update(peer_name="", peer_url="", peer_files="", wipe_after=None,
                       phase=TEXT_INDEX if row.phase == TEXT_INDEX else "wiped",
                       ).where(RegionState.id == 1).execute()
    audit.record(audit.SYSTEM, "region.wiped", "region", old.name,
                 details={"region": old.name, "files": files})
    return old.name
