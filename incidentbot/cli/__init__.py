"""The ``incidentbot`` command line.

Every failure a user can cause ends as one line on stderr and a non-zero exit: usage errors
exit 2, refused requests and configuration problems exit 1. Sub-commands live in sibling
modules, loaded only when run (see :mod:`incidentbot.cli.lazy`), so that ``--help``,
``--version`` and light commands do not pay for the database, Slack or Kubernetes libraries.
"""

from __future__ import annotations

import gc
import logging
import sys

from incidentbot import __version__
from incidentbot.errors import DomainError
from incidentbot.typed_text import clean


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """An exception class, if its module was imported (else nothing can have raised it)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _named(exc: DomainError) -> str:
    """A refusal with the people it names by name, when the command had the database open
    (the people directory is there); else as it is, with their stored identity."""
    text = str(exc)
    common = sys.modules.get("incidentbot.cli.common")
    st = getattr(common, "CURRENT", None)
    # Only an engine the command opened already: a refusal never creates a database file.
    people = list(getattr(exc, "people", ()) or ())
    if not people or st is None or "engine" not in vars(st):
        return text
    try:
        from incidentbot import db
        from incidentbot.people import Directory
        from incidentbot.people.render import swap

        with db.transaction(st.engine) as s:
            directory = Directory.load(s, st.settings.people, people)
        return swap(text, people, directory.name)
    except Exception:  # the refusal matters more than the names: shown as it is
        logging.getLogger(__name__).debug("people of a refusal not named", exc_info=True)
        return text


def _expected(exc: Exception) -> int | None:
    """The exit code for a failure a user can cause, reported as one line; None otherwise."""
    if _is(exc, "incidentbot.config", "ConfigError"):
        for problem in exc.problems:  # type: ignore[attr-defined]
            print(f"error: {exc.source}: {problem}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    if isinstance(exc, DomainError):
        return _fail(_named(exc), getattr(exc, "code", 1))
    if (
        _is(exc, "incidentbot.db", "SchemaError")
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


def _command(args: list[str]) -> str | None:
    """The sub-command named by ``args``, past the root options (``--config PATH``)."""
    rest = iter(args)
    for arg in rest:
        if arg in ("--config", "-c"):
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line."""
    # What was typed, without invisible control characters (NUL, bidi overrides, zero-width).
    args = [clean(a) for a in (sys.argv[1:] if argv is None else argv)]
    if args == ["--version"]:  # answered before the command line library is even imported
        print(f"incidentbot {__version__}")
        return 0
    collecting = gc.isenabled()
    if _command(args) == "serve":
        # Its imports create most of what lives as long as the process: the collector would
        # walk them again and again meanwhile (``serve`` turns it back on once started).
        gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: list[str]) -> int:
    import typer

    from incidentbot.cli.root import app

    try:  # typer >= 0.25 carries its own copy of click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_exc  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="incidentbot", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        return 2
    except click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "incidentbot"
        message = exc.format_message().rstrip(".")
        if message.startswith("Got unexpected extra argument"):
            # Not quoted back: they are whatever was typed (escaped, so masking misses some).
            count = len(getattr(exc.ctx, "args", None) or []) if exc.ctx else 0
            extra = f"{count} unexpected extra argument" + ("s" if count != 1 else "")
            message = f"got {extra if count else 'unexpected extra arguments'}"
        # A usage error may quote what was typed (a bad value): secrets in it are masked as
        # everywhere else. Imported here, so that a successful command does not pay for it.
        from incidentbot.ledger.redact import redact_text

        return _fail(f"{redact_text(message)} (see `{where} --help`)", 2)
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
