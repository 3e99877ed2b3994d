"""Sub-commands loaded on demand: ``incidentbot --help`` and ``--version`` import none of them.

Each entry names the module that holds a sub-command, the attribute (a typer app, or a function
for a single command) and the one-line help shown by ``incidentbot --help``. A test checks that
these lines match the loaded commands and that every command is listed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup
from typer.models import TyperInfo

try:  # typer >= 0.25 carries its own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer uses click itself
    import click  # type: ignore[no-redef]


@dataclass(frozen=True)
class Entry:
    module: str
    attr: str
    help: str


COMMANDS: dict[str, Entry] = {
    "incident": Entry("incident", "app", "Declare and run incidents."),
    "timeline": Entry(
        "incident_views",
        "timeline_cmd",
        "Show an incident's timeline: time, actor and what changed.",
    ),
    "db": Entry("db_cmd", "app", "Database: migrations, backup and restore."),
    "config": Entry("config_cmd", "app", "Configuration."),
    "runs": Entry("runs", "app", "Durable runs: list, inspect, cancel, decide."),
    "alerts": Entry("alerts_cmd", "app", "Alerts received from Alertmanager."),
    "actions": Entry("actions_cmd", "app", "Action items: follow-ups of incidents."),
    "runbook": Entry("runbook_run", "app", "Runbooks: check, list, show, plan and run them."),
    "lab": Entry(
        "lab_cmd",
        "app",
        "The runbook lab: three anvil nodes behind HAProxy, run by supervisord; with "
        "--consensus also a Lodestar beacon node and validator clients A and B.",
    ),
    "postmortem": Entry(
        "postmortem_cmd", "app", "Blameless postmortems: render, edit, review, publish."
    ),
    "handoff": Entry("handoff_cmd", "app", "The on-call handoff: preview it, leave a watch note."),
    "report": Entry(
        "report_cmd",
        "report",
        "MTTA/MTTM/MTTR by severity, chain, network, component and month; runbook runs and their"
        " outcomes; action items open and overdue.",
    ),
    "worker": Entry(
        "runs", "worker_cmd", "Run ledger workers in the foreground until SIGTERM or SIGINT."
    ),
    "jobs": Entry("jobs_cmd", "app", "Scheduled jobs: list them and their recent runs."),
    "scheduler": Entry(
        "jobs_cmd",
        "scheduler_cmd",
        "Run the scheduler in the foreground until SIGTERM or SIGINT (one replica leads).",
    ),
    "demo": Entry(
        "demo_cmd",
        "demo",
        "Run a scripted incident end to end: in Slack (the local Slack-compatible server) or,"
        " with --cli, from the command line.",
    ),
    "serve": Entry(
        "serve_cmd",
        "serve",
        "Run the bot: Slack (HTTP or Socket Mode), durable workers, /healthz and /metrics.",
    ),
}


def load(name: str) -> click.Command:
    """Import the module behind ``name`` and build its click command."""
    entry = COMMANDS[name]
    target: Any = getattr(importlib.import_module(f"incidentbot.cli.{entry.module}"), entry.attr)
    if isinstance(target, typer.Typer):
        # As add_typer on the root did: plain help (no Rich panels), whatever the app says.
        command = typer.main.get_group_from_info(
            TyperInfo(target),
            pretty_exceptions_short=target.pretty_exceptions_short,
            rich_markup_mode=None,
            suggest_commands=target.suggest_commands,
        )
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """A group whose sub-commands are imported only when one of them is run or asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(len(name) for name in COMMANDS)
        limit = formatter.width - 6 - width
        rows = [(name, _shorten(entry.help, limit)) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 1)].rsplit(" ", 1)[0] + "..."
