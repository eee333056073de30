"""Commands: each a thin call into services (``python app.py --help``)."""
from __future__ import annotations

import os
import sys
import time

import click

from desk import audit
from desk.errors import DeskError


def _app(ctx: click.Context, **overrides):
    """The app given by the caller (tests) or one built from settings."""
    obj = ctx.ensure_object(dict)
    if "app" not in obj:
        from desk import create_app
        obj["app"] = create_app(overrides or None)
    return obj["app"]


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """desk: a self-hosted help center whose privacy features are the product."""
    ctx.ensure_object(dict)


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the instance folder and keys, and apply schema migrations."""
    from desk.db import db
    from desk.migrations import migrate
    app = _app(ctx)
    with app.app_context():
        done = migrate(db.obj)
    click.echo(f"database ready ({len(done)} migration(s) applied)")


@cli.command("create-admin")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.pass_context
def create_admin(ctx: click.Context, email: str, name: str, password: str) -> None:
    """Create an administrator account."""
    from desk.services import people
    app = _app(ctx)
    with app.app_context():
        try:
            admin = people.create_admin(audit.SYSTEM, name, email, password)
        except DeskError as err:
            raise click.ClickException(str(err)) from None
    click.echo(f"administrator {admin.email} created (id {admin.id})")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM)")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)")
@click.option("--workers", type=int, default=None, help="worker processes (default DESK_WORKERS)")
@click.option("--no-scheduler", is_flag=True, help="serve only; another process runs the jobs")
@click.pass_context
def run(ctx, host, port, cert, key, workers, no_scheduler) -> None:
    """Serve the help center with the production server."""
    from desk.db import db
    from desk.migrations import migrate
    from desk.server import free_port_after
    from desk.server import port_problem
    from desk.server import serve
    from desk.services import setup
    if bool(cert) != bool(key):
        raise click.UsageError("--cert and --key go together")
    problem = port_problem(host, port)
    if problem == "in use":
        other = free_port_after(host, port)
        raise click.ClickException(f"port {port} is in use; try make run PORT={other} "
                                   f"(or run --port {other})")
    if problem:
        raise click.ClickException(f"cannot serve on {host}:{port}: {problem}")
    overrides = {"HTTPS": True} if cert else {}
    app = _app(ctx, **overrides)
    if app.config["WORKER_CLASS"] not in ("gthread", "sync"):
        raise click.UsageError("DESK_WORKER_CLASS is gthread or sync")
    scheme = "https" if cert else "http"
    with app.app_context():
        migrate(db.obj)
        token = setup.issue_token()
    if token:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # nosec B104
        click.echo(f"\n  No administrator yet. Create one (link works once):\n"
                   f"  {scheme}://{shown}:{port}/setup/{token}\n")
    click.echo(f"desk serving on {scheme}://{host}:{port} (region {app.config['REGION']})")
    serve(overrides, host, port, workers or app.config["WORKERS"], app.config["THREADS"],
          cert, key, scheduler=not no_scheduler, worker_class=app.config["WORKER_CLASS"])


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Fill an empty instance with a sample help center (English and Chinese)."""
    from desk.db import db
    from desk.migrations import migrate
    from desk.services import demo as demo_service
    app = _app(ctx)
    with app.app_context():
        migrate(db.obj)
        try:
            report = demo_service.fill()
        except DeskError as err:
            raise click.ClickException(str(err)) from None
    click.echo(f"demo ready: {report.tickets} tickets, {report.comments} replies and notes, "
               f"{report.files} files, {report.recycled} items in the recycle bin, "
               f"{report.erased} person erased")
    click.echo("Accounts (passwords are shown only now; note them):")
    for name, email, role, password in report.accounts:
        click.echo(f"  {role:<14} {email:<30} {password}   {name}")


@cli.command("run-scheduler", hidden=True)
@click.argument("overrides", default="{}")
def run_scheduler(overrides: str) -> None:
    """The scheduler process that ``run`` starts beside the workers (single executable)."""
    import json
    from desk.jobs import run_scheduler as scheduler_loop
    scheduler_loop(json.loads(overrides))


@cli.command("audit-verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the audit log's keyed hash chain against its head and the signed
    checkpoints of the witness file; exit 1 naming the check that failed and
    the first entry concerned."""
    app = _app(ctx)
    with app.app_context():
        result = audit.verify()
    if result.ok:
        click.echo("OK: " + result.message)
        return
    where = f", from entry #{result.from_entry}" if result.from_entry is not None else ""
    click.echo(f"BROKEN ({result.failed_check} check failed{where}): {result.message}")
    sys.exit(1)


@cli.command("send-mail")
@click.pass_context
def send_mail(ctx: click.Context) -> None:
    """Deliver queued mail now (the scheduler does this every few seconds)."""
    from desk.services import mail
    app = _app(ctx)
    with app.app_context():
        sent, failed = mail.deliver_pending(app.config, limit=1000)
    click.echo(f"{sent} sent, {failed} failed (will be retried)")


@cli.command()
@click.option("--dry-run", is_flag=True, help="only count what would be purged")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--pause", default=0.0, type=float, help="seconds to rest between batches")
@click.pass_context
def purge(ctx: click.Context, dry_run: bool, batch: int, pause: float) -> None:
    """Remove for good what waited in the recycle bin past the retention period."""
    from desk.services import purge as purge_service
    app = _app(ctx)
    with app.app_context():
        due = purge_service.due()
        total = sum(due.values())
        click.echo(f"past retention: {due['tickets']} tickets, {due['comments']} comments, "
                   f"{due['people']} people")
        if dry_run:
            click.echo("dry run: nothing removed")
            return
        started = time.monotonic()
        with click.progressbar(length=total, label="purging", file=sys.stderr) as bar:
            report = purge_service.purge_expired(app.config, batch=batch, pause=pause,
                                                 progress=lambda _name, n: bar.update(n))
        seconds = time.monotonic() - started
    if report.skipped:
        click.echo("another purge is running; nothing done")
        sys.exit(3)
    click.echo(f"purged {report.tickets} tickets, {report.comments} comments, anonymized "
               f"{report.people} people, removed {report.files} files and {report.orphans} orphans "
               f"in {seconds:.2f} s ({report.total / max(seconds, 1e-6):,.0f} items/s)")


@cli.command("storage-check")
@click.pass_context
def storage_check(ctx: click.Context) -> None:
    """Check that every attachment row has its object in the file store and every
    object its row; exit 1 naming what is wrong."""
    from desk.services import attachments
    from desk.services import storage
    app = _app(ctx)
    with app.app_context():
        click.echo(f"store: {storage.of(app.config).describe()}")
        report = attachments.check(app.config)
    click.echo(f"{report.rows} attachment rows, {report.objects} objects, {report.pending} "
               f"awaiting removal, {report.recent} too recent to judge")
    for attachment_id in report.missing:
        click.echo(f"MISSING: attachment #{attachment_id} has no object")
    for name in report.orphans:
        click.echo(f"ORPHAN: object {name} has no row (the purge removes it)")
    click.echo("OK: rows and objects match" if report.ok else "PROBLEMS found")
    if not report.ok:
        sys.exit(1)


KEYS_WARNING = ("Keep backups and keys in different places: whoever holds both can read "
                "everything, and a backup without its keys cannot be read.")


@cli.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="new or empty folder for the backup")
@click.option("--keys-out", type=click.Path(file_okay=False),
              help="folder for the keyring and session secret, apart from the backup")
@click.pass_context
def backup(ctx: click.Context, out: str, keys_out: str | None) -> None:
    """Back up the database, the attachment files and a manifest of SHA-256 sums."""
    from pathlib import Path
    from desk.services import backup as backup_service
    app = _app(ctx)
    with app.app_context():
        total = backup_service.work_size(app.config)
        with click.progressbar(length=total, label="backing up", file=sys.stderr) as bar:
            try:
                report = backup_service.instance_backup(
                    app.config, Path(out), Path(keys_out) if keys_out else None,
                    progress=lambda _what, n: bar.update(n))
            except DeskError as err:
                raise click.ClickException(str(err)) from None
    click.echo(f"backup written to {report.path}: {report.database} database, {report.files} "
               f"files, {report.bytes} bytes, manifest.json with SHA-256 sums")
    if keys_out:
        click.echo(f"keys written to {keys_out} (mode 0600)")
    else:
        click.echo("the keys are NOT in the backup; keep a copy of keys.json and secret_key "
                   "(or back them up with --keys-out DIR)")
    click.echo(KEYS_WARNING, err=True)


@cli.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--keys", "keys_dir", type=click.Path(exists=True, file_okay=False),
              help="the folder written by backup --keys-out")
@click.pass_context
def restore(ctx: click.Context, source: str, keys_dir: str | None) -> None:
    """Restore a backup into an empty instance, then check the audit chain."""
    from pathlib import Path
    from desk.db import db
    from desk.migrations import migrate
    from desk.services import backup as backup_service
    app = _app(ctx)
    try:
        with app.app_context():
            if not backup_service.database_is_empty():
                raise click.ClickException("this instance is not empty; restore only into a new one")
            keys = backup_service.keys_for_restore(Path(source), Path(keys_dir) if keys_dir else None)
        if keys is not None:
            backup_service.install_keys(Path(app.config["DATA_DIR"]), keys)
            ctx.obj.pop("app")
            app = _app(ctx)
        with app.app_context():
            report = backup_service.restore(app.config, Path(source),
                                            backup_service.database_is_empty())
            migrate(db.obj)
            ok, message = audit.verify()
    except DeskError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"restored {report.database} database and {report.files} files from {source}")
    click.echo(("audit chain OK: " if ok else "audit chain BROKEN: ") + message)
    if not ok:
        sys.exit(1)


@cli.command("keys-rotate")
@click.option("--status", "show_status", is_flag=True, help="say how far rotation is, change nothing")
@click.option("--generate", is_flag=True,
              help="keys in DESK_MASTER_KEY: print the keyring with a new active key to set on every server")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--pause", default=0.0, type=float, help="seconds to rest between batches")
@click.pass_context
def keys_rotate(ctx: click.Context, show_status: bool, generate: bool, batch: int, pause: float) -> None:
    """Rotate the master key: a new key version, every data key re-wrapped and
    every encrypted value and secret re-sealed in batches, old keys retired."""
    from desk.services import keys
    app = _app(ctx)
    with app.app_context():
        if show_status:
            _print_key_status(keys.status())
            return
        if generate:
            click.echo(keys.generated_keyring())
            return
        resuming = keys.current() is not None
        try:
            rotation = keys.start(audit.SYSTEM)
        except DeskError as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"{'resuming' if resuming else 'started'} rotation #{rotation.id} to key "
                   f"{rotation.to_key}")
        total = sum(keys.remaining().values())
        with click.progressbar(length=total, label="re-encrypting", file=sys.stderr) as bar:
            report = keys.rotate(audit.SYSTEM, batch=batch, pause=pause,
                                 progress=lambda _name, n: bar.update(n))
    click.echo(f"done: {report.rotation.done} rows on key {report.rotation.to_key}"
               + (f"; retired {', '.join(report.retired)}" if report.retired else ""))
    if report.unused:
        click.echo(f"no longer used: {', '.join(report.unused)} "
                   "(remove them from DESK_MASTER_KEY on every server)")
    if report.referenced:
        click.echo(f"still referenced: {', '.join(report.referenced)} (written meanwhile; "
                   "run keys-rotate again)")
        sys.exit(3)


def _print_key_status(info: dict) -> None:
    click.echo(f"active key: {info['active']} ({info['source']})")
    click.echo(f"keys in keyring: {', '.join(info['keys'])}")
    rotation = info["rotation"]
    if rotation is None:
        click.echo("no rotation yet")
    else:
        when = rotation.finished_at or rotation.started_at
        click.echo(f"rotation #{rotation.id} to {rotation.to_key}: {rotation.status} "
                   f"({rotation.done} rows re-encrypted; {when:%Y-%m-%d %H:%M} UTC)")
    left = {k: v for k, v in info["remaining"].items() if v}
    click.echo("left on old keys: " + (", ".join(f"{k} {v}" for k, v in left.items()) or "nothing"))
    click.echo("rows per key: " + ", ".join(f"{k} {v}" for k, v in sorted(info["usage"].items())))


@cli.command("encrypt-files")
@click.option("--batch", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.pass_context
def encrypt_files(ctx: click.Context, batch: int) -> None:
    """Encrypt attachments stored clear (from before encryption) for their
    owners; the scheduler does it too. Safe to kill and run again."""
    from desk.services import attachments
    app = _app(ctx)
    with app.app_context():
        total = attachments.clear_count()
        with click.progressbar(length=total, label="encrypting", file=sys.stderr) as bar:
            report = attachments.encrypt_stored(app.config, batch=batch, progress=bar.update)
    if report.busy:
        click.echo("another process is encrypting files; nothing done")
        sys.exit(3)
    click.echo(f"{report.sealed} files encrypted, {len(report.skipped)} left clear")
    for attachment_id in report.skipped:
        click.echo(f"SKIPPED: attachment #{attachment_id} (object missing, altered, or owner erased)")


@cli.command()
@click.option("--out", help="the file to write (ZIP, or one module's file with --module); - for standard output")
@click.option("--module", type=click.Choice(["tickets", "comments", "contacts", "agents", "departments", "audit"]),
              help="only this module, as one CSV or JSON Lines file")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="only this format (default: both in a ZIP, CSV for --module)")
@click.option("--verify", "verify_path", type=click.Path(dir_okay=False),
              help="check a bulk export ZIP against its manifest instead")
@click.pass_context
def export(ctx: click.Context, out: str | None, module: str | None, fmt: str | None,
           verify_path: str | None) -> None:
    """Export everything (every module and attachment) as a ZIP with a manifest."""
    from desk.services import bulk_export
    if verify_path:
        ok, message = bulk_export.verify(verify_path)
        click.echo(("OK: " if ok else "FAILED: ") + message)
        sys.exit(0 if ok else 1)
    if not out:
        raise click.UsageError("give --out FILE (or - for standard output), or --verify FILE")
    if out != "-" and (os.path.isdir(out) or not os.path.isdir(os.path.dirname(os.path.abspath(out)))):
        raise click.UsageError(f"--out {out}: not a file in an existing folder")
    app = _app(ctx)
    with app.app_context():
        with bulk_export.command_output(out) as target:
            bulk_export.export_command(target, module, fmt, sys.stderr)
    if out != "-":
        click.echo(f"wrote {out}", err=True)
@cli.command("region-migrate")
@click.option("--to", "to_name", help="a region declared in desk.toml")
@click.option("--database-url", help="an ad-hoc target store's database URL")
@click.option("--data-dir", type=click.Path(file_okay=False), help="the ad-hoc target's files folder")
@click.option("--resume", is_flag=True, help="continue an interrupted move to the same target")
@click.option("--rollback", is_flag=True, help="move back to the store the last move came from")
@click.option("--status", "show_status", is_flag=True, help="say where the data lives and how far a move is")
@click.pass_context
def region_migrate(ctx, to_name, database_url, data_dir, resume, rollback, show_status) -> None:
    """Move the help center to another region's store while it keeps serving."""
    from desk.db import db
    from desk.migrations import migrate
    from desk.services import region_move
    from desk.services import regions
    app = _app(ctx)
    chosen = sum(bool(x) for x in (to_name, database_url, rollback, show_status))
    if chosen != 1 or bool(database_url) != bool(data_dir):
        _refuse("give one of --to NAME, --database-url URL --data-dir DIR, --rollback or --status")
    with app.app_context():
        migrate(db.obj)
        if show_status:
            for key, value in region_move.describe_move(app.config).items():
                click.echo(f"{key}: {value}")
            return
        phases: dict[str, object] = {}

        def progress(phase: str, done: int, total: int) -> None:
            bar = phases.get(phase)
            if bar is None:
                for other in phases.values():
                    other.render_finish()
                bar = phases[phase] = click.progressbar(length=max(total, 1), label=phase,
                                                        file=sys.stderr)
            bar.update(done - bar.pos)

        try:
            if rollback:
                report = region_move.rollback(app, progress=progress)
            else:
                target = (regions.named(app.config, to_name) if to_name else
                          regions.Region("custom", database_url, str(data_dir)))
                report = region_move.move(app, target, resume=resume, progress=progress)
        except region_move.VerificationFailed as err:
            click.echo(f"\nverification failed, nothing switched: {err}", err=True)
            sys.exit(1)
        except DeskError as err:
            _refuse(str(err))
    click.echo(f"\nmoved from {report.source} to {report.target}: {report.rows} rows, "
               f"{report.files} files in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s); "
               f"switched after {report.switch_seconds:.1f} s ({report.switch_rows_per_second:,.0f} rows/s); "
               f"longest write pause {report.pause_seconds * 1000:.0f} ms; "
               f"the tables copied in {report.copy_seconds:.1f} s ({report.copy_rows_per_second:,.0f} rows/s)")
    if report.phases:
        click.echo("steps: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.phases.items()))
    click.echo("every app server follows by itself; set region/DESK_DATABASE_URL to the new store "
               "in your configuration too")


def _refuse(message: str) -> None:
    """Bad input: a clear message and exit status 2, nothing changed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
