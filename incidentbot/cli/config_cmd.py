"""``incidentbot config ...``: check a configuration file, show the effective settings."""

from __future__ import annotations

import typer
import yaml

from incidentbot.cli.common import CliError, console, state
from incidentbot.config import SECRET_FIELDS, load_settings
from incidentbot.errors import DomainError
from incidentbot.scheduler import builtin as scheduled

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command()
def check(
    ctx: typer.Context,
    path: str = typer.Argument(
        None, help="Default: --config, $INCIDENTBOT_CONFIG or ./incidentbot.yaml"
    ),
) -> None:
    """Validate a configuration file and report every problem with its path."""
    target = path or state(ctx).config_path
    settings = load_settings(target)
    try:
        scheduled.check(settings)
    except DomainError as exc:
        raise CliError(f"{target or 'defaults'}: {exc}") from None
    console.print(
        f"{target or 'defaults'}: ok ({len(settings.severities)} severities, "
        f"{len(settings.statuses)} statuses, {len(settings.roles)} roles, "
        f"{len(settings.fields)} fields)"
    )


@app.command()
def show(ctx: typer.Context) -> None:
    """Print the effective settings as YAML; secrets are shown only as set or unset."""
    settings = state(ctx).settings
    data = settings.model_dump(mode="json")
    for key, value in list(data.items()):
        if key in SECRET_FIELDS:
            data[key] = "(set)" if value else "(unset)"
    data["database_url"] = (
        settings.effective_database_url.split("@")[-1]
        if "@" in (settings.effective_database_url)
        else settings.effective_database_url
    )
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip())
