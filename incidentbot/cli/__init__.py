"""The ``incidentbot`` command line.

Every failure a user can cause ends as one line on stderr and a non-zero exit: usage errors
exit 2, refused requests and configuration problems exit 1. Sub-commands live in sibling
modules, each a typer app registered below.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from incidentbot import __version__

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]
from incidentbot.cli import (
    actions_cmd,
    alerts_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    handoff_cmd,
    incident,
    jobs_cmd,
    lab_cmd,
    postmortem_cmd,
    runbook_cmd,
    runbook_run,
    runs,
    serve_cmd,
)
from incidentbot.cli.common import AppState, CliError
from incidentbot.config import ConfigError, format_validation_error
from incidentbot.db import SchemaError
from incidentbot.errors import DomainError
from incidentbot.runbooks import runtime as runbook_runtime

app = typer.Typer(
    name="incidentbot",
    help="Incident response for teams that run blockchain infrastructure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(incident.app, name="incident")
app.command("timeline")(incident.timeline_cmd)
app.add_typer(db_cmd.app, name="db")
app.add_typer(config_cmd.app, name="config")
app.add_typer(runs.app, name="runs")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(actions_cmd.app, name="actions")
runbook_run.register()  # plan, run, approve and resume join `runbook`
app.add_typer(runbook_cmd.app, name="runbook")
app.add_typer(lab_cmd.app, name="lab")
app.add_typer(postmortem_cmd.app, name="postmortem")
app.add_typer(handoff_cmd.app, name="handoff")
app.command("worker")(runs.worker_cmd)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("scheduler")(jobs_cmd.scheduler_cmd)
app.command("demo")(demo_cmd.demo)
app.command("serve")(serve_cmd.serve)


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
    ctx.obj = AppState(config_path=config)


def _fail(message: str, code: int) -> int:
    typer.echo(f"error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line."""
    args = sys.argv[1:] if argv is None else argv
    # Runbook runs changed from here (cancelled, resumed, worked) reach their timelines.
    runbook_runtime.install_timeline()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="incidentbot", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        return 2
    except click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "incidentbot"
        return _fail(f"{exc.format_message().rstrip('.')} (see `{where} --help`)", 2)
    except typer.Abort:
        return _fail("aborted", 130)
    except typer.Exit as exc:
        return exc.exit_code
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {exc.source}: {problem}", err=True)
        return 1
    except (DomainError, SchemaError, CliError) as exc:
        return _fail(str(exc), getattr(exc, "code", 1))
    except ValidationError as exc:
        return _fail("; ".join(format_validation_error(exc)), 1)
    except OperationalError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return _fail(f"cannot use the database: {detail}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    return result if isinstance(result, int) else 0
