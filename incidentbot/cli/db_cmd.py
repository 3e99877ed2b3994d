"""``incidentbot db ...``: apply and inspect schema migrations."""

from __future__ import annotations

import typer

from incidentbot import db
from incidentbot.cli.common import console, state

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply all migrations (safe to run again)."""
    engine = state(ctx).raw_engine
    where = engine.url.render_as_string(hide_password=True)
    before, after = db.upgrade(engine)
    if before == after:
        console.print(f"{where}: already at revision {after}")
    else:
        console.print(f"{where}: upgraded from {before or 'empty'} to {after}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Say whether the schema is current (exit 1 if not)."""
    engine = state(ctx).raw_engine
    db.check_schema(engine)
    where = engine.url.render_as_string(hide_password=True)
    console.print(f"{where}: schema is current ({db.current_revision(engine)})")
