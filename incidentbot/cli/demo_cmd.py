"""``incidentbot demo``: a whole incident, run on a throwaway SQLite database.

It runs the real commands in-process, printing each one as a user would type it, so what it
shows is exactly what the CLI does.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

import typer

from incidentbot.cli.common import CliError, console

SCRIPT: list[tuple[str, list[str]]] = [
    ("Create the schema", ["db", "upgrade"]),
    (
        "Declare: latency alerts on the public RPC endpoint; impact began 20 minutes ago",
        [
            "incident",
            "declare",
            "RPC p99 latency above 2s on mainnet",
            "--sev",
            "2",
            "--field",
            "chain=ethereum",
            "--field",
            "network=mainnet",
            "--field",
            "component=rpc",
            "--impact-started",
            "20m ago",
            "--detected",
            "12m ago",
            "--as",
            "alice",
        ],
    ),
    (
        "The on-call takes command",
        ["incident", "assign", "INC-1", "commander", "bob", "--as", "alice"],
    ),
    ("Start investigating", ["incident", "status", "INC-1", "investigating", "--as", "bob"]),
    ("Someone keeps notes", ["incident", "assign", "INC-1", "scribe", "carol", "--as", "bob"]),
    (
        "Errors spread to every client: raise the severity",
        ["incident", "sev", "INC-1", "1", "--as", "bob"],
    ),
    (
        "Record what was found",
        [
            "incident",
            "note",
            "INC-1",
            "geth on rpc-2 is 40 blocks behind; HAProxy still routes to it",
            "--as",
            "carol",
        ],
    ),
    ("Cause known", ["incident", "status", "INC-1", "identified", "--as", "bob"]),
    (
        "Traffic moved to the healthy backup; watching",
        ["incident", "status", "INC-1", "monitoring", "--as", "bob"],
    ),
    (
        "Resolve with a summary",
        [
            "incident",
            "resolve",
            "INC-1",
            "Drained rpc-2 and failed over to rpc-3; geth resynced",
            "--as",
            "bob",
        ],
    ),
    ("The incident as it stands", ["incident", "show", "INC-1"]),
    ("Its timeline", ["timeline", "INC-1"]),
]


def demo(
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Keep the demo database here (default: a temporary directory)."
    ),
    cli: bool = typer.Option(False, "--cli", help="Run the incident from the command line."),
) -> None:
    """Run a scripted incident end to end: in Slack (the local Slack-compatible server) or,
    with --cli, from the command line. Uses a throwaway SQLite database."""
    workdir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="incidentbot-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not cli:
        from incidentbot.demo import run_demo

        console.print("incidentbot demo: the bot and a local Slack-compatible server, on SQLite\n")
        # Lines as they are: a path or a transcript line is never wrapped at the terminal width.
        run_demo(workdir, lambda line: console.print(line, markup=False, soft_wrap=True))
        console.print(f"Demo database: {workdir / 'demo.db'}")
        return
    _cli_demo(workdir)


def _cli_demo(workdir: Path) -> None:
    from incidentbot.cli import main

    saved = {k: os.environ.get(k) for k in ("INCIDENTBOT_DATABASE_URL", "INCIDENTBOT_CONFIG")}
    os.environ["INCIDENTBOT_DATABASE_URL"] = f"sqlite:///{workdir / 'demo.db'}"
    os.environ.pop("INCIDENTBOT_CONFIG", None)
    try:
        for step, (caption, argv) in enumerate(SCRIPT, start=1):
            console.print(f"\n[bold]{step}. {caption}[/bold]")
            console.print(f"$ incidentbot {shlex.join(argv)}")
            code = main(argv)
            if code != 0:
                raise CliError(f"demo step {step} failed with exit code {code}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    console.print(f"\nDemo database: {workdir / 'demo.db'}")
