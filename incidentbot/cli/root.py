"""The root ``incidentbot`` command: global options; sub-commands come from the lazy group."""

from __future__ import annotations

import typer

from incidentbot import __version__
from incidentbot.cli.lazy import LazyGroup

app = typer.Typer(
    name="incidentbot",
    cls=LazyGroup,
    help="Incident response for teams that run blockchain infrastructure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"incidentbot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", "-c", help="Path to incidentbot.yaml (default: $INCIDENTBOT_CONFIG)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    from incidentbot.cli.common import AppState

    ctx.obj = AppState(config_path=config)
