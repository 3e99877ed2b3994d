"""``incidentbot db ...``: migrations up and down, schema status, backup and restore."""

from __future__ import annotations

from pathlib import Path

import typer

from incidentbot import db
from incidentbot.cli.common import CliError, state

app = typer.Typer(help="Database: migrations, backup and restore.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply all migrations (safe to run again); creates a missing SQLite file."""
    engine = state(ctx).raw_engine
    where = engine.url.render_as_string(hide_password=True)
    before, after = db.upgrade(engine)
    if before == after:
        typer.echo(f"{where}: already at revision {after}")
    else:
        typer.echo(f"{where}: upgraded from {before or 'empty'} to {after}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: str | None = typer.Argument(
        None, help="The revision to go back to, or base (default: the previous one)."
    ),
    drop_data: bool = typer.Option(
        False, "--drop-data", help="Go ahead although the downgrade deletes data."
    ),
) -> None:
    """Undo migrations, one by default: to roll back to the previous incidentbot."""
    url = state(ctx).settings.effective_database_url
    db.require_existing(url)
    engine = state(ctx).raw_engine
    where = engine.url.render_as_string(hide_password=True)
    current, target = db.downgrade_target(engine, revision)
    losses = db.downgrade_losses(engine, target)
    if losses and not drop_data:
        raise CliError(
            f"downgrading {where} from {current} to {target or 'base'} deletes "
            f"{'; '.join(losses)}: back it up first (`incidentbot db backup FILE`), then pass "
            "--drop-data"
        )
    before, after = db.downgrade(engine, target)
    typer.echo(f"{where}: downgraded from {before} to {after or 'base'}")
    if losses:
        typer.echo(f"deleted: {'; '.join(losses)}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Say whether the schema is current (exit 1 if not)."""
    url = state(ctx).settings.effective_database_url
    db.require_existing(url)
    engine = state(ctx).raw_engine
    db.check_schema(engine)
    where = engine.url.render_as_string(hide_password=True)
    typer.echo(f"{where}: schema is current ({db.current_revision(engine)})")


@app.command()
def backup(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Where to write the backup (its directory must exist)."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
) -> None:
    """Back the database up to FILE (SQLite: online backup; PostgreSQL: pg_dump -Fc)."""
    from incidentbot import backup as backups

    url = state(ctx).settings.effective_database_url
    db.require_existing(url)
    try:
        summary = backups.backup(url, file, force=force)
    except backups.BackupError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"Backed up {db.redacted(url)} to {file}: {summary.describe()}")


@app.command()
def restore(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A backup made by `incidentbot db backup`."),
    force: bool = typer.Option(
        False, "--force", help="Replace everything in a database that is not empty."
    ),
) -> None:
    """Restore FILE into the database (stop the bot first); refuses a non-empty database
    without --force and a backup made by a newer incidentbot."""
    from incidentbot import backup as backups

    url = state(ctx).settings.effective_database_url
    try:
        summary = backups.restore(url, file, force=force)
    except backups.BackupError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"Restored {file} into {db.redacted(url)}: {summary.describe()}")
    if summary.revision != db.head_revision():
        typer.echo(
            f"The schema is older than this incidentbot ({db.head_revision()}): "
            "run `incidentbot db upgrade`"
        )
