"""The ``incidentbot`` command line.

Every failure a user can cause ends as one line on stderr and a non-zero exit: usage errors
exit 2, refused requests and configuration problems exit 1. Sub-commands live in sibling
modules, loaded only when run (see :mod:`incidentbot.cli.lazy`), so that ``--help``,
``--version`` and light commands do not pay for the database, Slack or Kubernetes libraries.
"""

from __future__ import annotations

import sys

import typer

from incidentbot import __version__
from incidentbot.cli.lazy import LazyGroup
from incidentbot.errors import DomainError

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]

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


def _fail(message: str, code: int) -> int:
    typer.echo(f"error: {message}", err=True)
    return code


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """An exception class, if its module was imported (else nothing can have raised it)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _expected(exc: Exception) -> int | None:
    """The exit code for a failure a user can cause, reported as one line; None otherwise."""
    if _is(exc, "incidentbot.config", "ConfigError"):
        for problem in exc.problems:  # type: ignore[attr-defined]
            typer.echo(f"error: {exc.source}: {problem}", err=True)  # type: ignore[attr-defined]
        return 1
    if (
        isinstance(exc, DomainError)
        or _is(exc, "incidentbot.db", "SchemaError")
        or _is(exc, "incidentbot.cli.common", "CliError")
        or _is(exc, "incidentbot.backup", "BackupError")
    ):
        return _fail(str(exc), getattr(exc, "code", 1))
    if _is(exc, "pydantic", "ValidationError"):
        from incidentbot.config import format_validation_error

        return _fail("; ".join(format_validation_error(exc)), 1)  # type: ignore[arg-type]
    if _is(exc, "sqlalchemy.exc", "OperationalError"):
        orig = exc.orig  # type: ignore[attr-defined]
        detail = str(orig).strip().splitlines()[0] if orig else str(exc)
        return _fail(f"cannot use the database: {detail}", 1)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line."""
    args = sys.argv[1:] if argv is None else argv
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
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        code = _expected(exc)
        if code is None:
            raise
        return code
    return result if isinstance(result, int) else 0
