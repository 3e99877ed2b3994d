"""``incidentbot runbook ...``: check runbook files, list them, show one.

Runbooks are read from the directories in ``runbooks.dirs`` (default ``./runbooks``). Problems
print as ``path:LINE: field: message``, one per line, so that editors and CI can point at them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from incidentbot.cli.common import CliError, console, state
from incidentbot.config import Settings
from incidentbot.runbooks.checker import ActionRegistry
from incidentbot.runbooks.definition import RollbackStep, Runbook, format_seconds
from incidentbot.runbooks.loader import Catalog, load_dirs, load_paths
from incidentbot.runbooks.params import usage

app = typer.Typer(help="Runbooks: check, list, show, plan and run them.", no_args_is_help=True)


def action_registry() -> ActionRegistry:
    """The registered actions (built-in and installed packs)."""
    from incidentbot.runbooks.actions import registry
    from incidentbot.runbooks.runtime import load_plugins

    load_plugins()
    return registry


def load_catalog(settings: Settings) -> Catalog:
    """Every runbook in the configured directories, checked against the registered actions."""
    return load_dirs(settings.runbooks.dirs, action_registry())


def get_runbook(catalog: Catalog, name: str) -> Runbook:
    """The runbook called ``name``, or a CliError saying which exist."""
    runbook = catalog.get(name)
    if runbook is not None:
        return runbook
    known = ", ".join(catalog.names()) or "none"
    message = f"no runbook {name!r} (runbooks: {known})"
    if catalog.problems:
        files = len(catalog.problem_files)
        message += (
            f"; {files} runbook file{'s' if files != 1 else ''} "
            f"{'have' if files != 1 else 'has'} problems: run `incidentbot runbook validate`"
        )
    raise CliError(message)


def _out(text: str = "") -> None:
    console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _warn_problems(catalog: Catalog) -> None:
    if catalog.problems:
        files = len(catalog.problem_files)
        typer.echo(
            f"warning: {_plural(len(catalog.problems), 'problem')} in "
            f"{_plural(files, 'file')} left runbooks out: run `incidentbot runbook validate`",
            err=True,
        )


@app.command()
def validate(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        None, help="Runbook files or directories (default: the configured runbooks.dirs)."
    ),
) -> None:
    """Check runbook files and print every problem as path:line: field: message."""
    if paths:
        catalog = load_paths(paths, action_registry())
        searched = ", ".join(str(p) for p in paths)
    else:
        settings = state(ctx).settings
        catalog = load_catalog(settings)
        searched = _dirs(settings)
    for problem in catalog.problems:
        _out(str(problem))
    if catalog.problems:
        files = len(catalog.problem_files)
        typer.echo(
            f"{_plural(len(catalog.problems), 'problem')} in {_plural(files, 'file')}", err=True
        )
        raise typer.Exit(1)
    _out(f"{_plural(len(catalog.runbooks), 'runbook')} OK ({searched})")


def _dirs(settings: Settings) -> str:
    return ", ".join(str(d) for d in settings.runbooks.dirs)


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """List the runbooks: name, approval, target param and description."""
    settings = state(ctx).settings
    catalog = load_catalog(settings)
    _warn_problems(catalog)
    if not catalog.runbooks:
        _out(f"No runbooks (searched: {_dirs(settings)}).")
        return
    table = Table("Name", "Approval", "Target", "Description")
    for runbook in catalog.runbooks:
        table.add_row(
            Text(runbook.name),
            Text(runbook.approval),
            Text(runbook.target or "-"),
            Text(runbook.description or "-"),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The runbook's name, as `runbook list` shows it."),
) -> None:
    """Show a runbook: params, approval, target and every step (secret defaults hidden)."""
    catalog = load_catalog(state(ctx).settings)
    runbook = get_runbook(catalog, name)
    for line in describe(runbook, catalog.source_of(name), action_registry()):
        _out(line)


def describe(runbook: Runbook, source: Path | None, actions: ActionRegistry) -> list[str]:
    """The lines ``runbook show`` prints."""
    lines = [runbook.name + (f" — {runbook.description}" if runbook.description else "")]
    if source is not None:
        lines.append(f"Source:   {source} (digest {runbook.digest})")
    lines.append(f"Approval: {_approval(runbook.approval)}")
    if runbook.target:
        lines.append(f"Target:   param {runbook.target} (one run at a time per value)")
    else:
        lines.append("Target:   none (runs are not locked)")
    if runbook.timeout is not None:
        lines.append(f"Timeout:  {format_seconds(runbook.timeout)} for the whole run")
    lines.append("Params:")
    lines.extend(f"  {line}" for line in usage(runbook).splitlines())
    lines.append("Steps:")
    for number, step in enumerate(runbook.steps, start=1):
        lines.extend(_step_lines(f"{number}.", step, actions, indent="  "))
        if step.on_failure:
            lines.append("     on failure:")
            for sub, rollback in enumerate(step.on_failure, start=1):
                label = f"{number}.{sub}"
                lines.extend(_step_lines(label, rollback, actions, indent="       "))
    return lines


def _approval(approval: str) -> str:
    return {
        "none": "none",
        "commander": "the incident commander approves each run",
        "two-person": "a second person approves each run",
    }.get(approval, approval)


def _step_lines(
    label: str, step: RollbackStep, actions: ActionRegistry, *, indent: str
) -> list[str]:
    pad = indent + " " * (len(label) + 1)
    title = step.id if step.name is None else f"{step.id} — {step.name}"
    lines = [f"{indent}{label} {title}", f"{pad}uses:       {step.uses}"]
    if getattr(step, "always", False):
        lines.append(f"{pad}always:     yes (clean-up: runs even if the run fails or is cancelled)")
    if step.when is not None:
        lines.append(f"{pad}when:       {step.when}")
    if step.with_:
        lines.append(f"{pad}with:")
        lines.extend(f"{pad}  {key}: {_value(value)}" for key, value in step.with_.items())
    if step.retry is not None:
        r = step.retry
        lines.append(
            f"{pad}retry:      up to {_plural_attempts(r.max_attempts)}, backoff "
            f"{format_seconds(r.backoff)} doubling up to {format_seconds(r.max_backoff)}"
        )
    if step.timeout is not None:
        lines.append(f"{pad}timeout:    {format_seconds(step.timeout)} per attempt")
    lines.append(f"{pad}idempotent: {_idempotent(step, actions)}")
    if step.wait_until is not None:
        w = step.wait_until
        lines.append(
            f"{pad}wait until: {w.check} (every {format_seconds(w.interval)}, "
            f"for at most {format_seconds(w.timeout)})"
        )
    return lines


def _plural_attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


def _idempotent(step: RollbackStep, actions: ActionRegistry) -> str:
    if step.idempotent is not None:
        return "yes" if step.idempotent else "no"
    action = actions.get(step.uses)
    if action is None:
        return "unknown (the action is not installed)"
    return f"{'yes' if action.idempotent else 'no'} ({step.uses} default)"


def _value(value: Any) -> str:
    if isinstance(value, str):
        plain = value.strip() == value and "\n" not in value
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)
