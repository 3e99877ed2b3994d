"""What every command shares: loading settings, opening the database, who is acting, output."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from incidentbot.config import Settings
    from incidentbot.usecases.core import Core

# The actions of the effects the CLI queues and a running bot (``serve``) carries out: the
# ledger checks a run's actions where it is started, so the CLI knows their names; it never
# runs them (it runs no workers for them).
QUEUED_ACTIONS = (
    "chat.open_channel",
    "chat.furnish_channel",
    "chat.header",
    "chat.digest",
    "chat.status_update",
    "chat.alert_group",
    "chat.archive_warning",
    "chat.archive_channel",
    "pager.trigger",
    "pager.resolve",
    "pager.note",
)


class _LazyConsole:
    """Rich's console, imported when a command first prints with it (``serve`` does not)."""

    _console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            # Piped output (scripts, tests) gets a wide table instead of Rich's 80 columns.
            self._console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        return getattr(self._console, name)


console: Console = _LazyConsole()  # type: ignore[assignment]


def log_to_stderr(level: str) -> None:
    """Log lines with time, level and logger for commands that run until stopped (unless
    logging is set up already)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class CliError(Exception):
    """Shown as one line on stderr with a non-zero exit (never a traceback)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class AppState:
    config_path: str | None = None

    def __post_init__(self) -> None:
        global CURRENT
        CURRENT = self  # what the entry point reads to name people in a refusal

    @cached_property
    def settings(self) -> Settings:
        from incidentbot.config import load_settings

        return load_settings(self.config_path)

    @cached_property
    def engine(self) -> Engine:
        """An engine on a database that exists and whose schema is current (else a clear
        error, and nothing created). Runbook runs changed through it reach their timelines."""
        from incidentbot import db
        from incidentbot.runbooks import runtime

        url = self.settings.effective_database_url
        db.require_existing(url)
        engine = db.make_engine(url)
        db.check_schema(engine)
        runtime.install_timeline()
        return engine

    @cached_property
    def core(self) -> Core:
        """The use cases' dependencies in this process. The effects they queue (channel,
        header, digest, pages) run in the bot: queued for chat when a Slack bot token is set,
        for paging when PagerDuty is configured."""
        from incidentbot.usecases.core import Core

        _know_queued_actions()
        token = self.settings.slack_bot_token
        return Core(self.settings, self.engine, chat=bool(token and token.get_secret_value()))

    @cached_property
    def raw_engine(self) -> Engine:
        """An engine that skips the schema check (``db upgrade`` itself uses it); SQLite
        creates the file if it is missing."""
        from incidentbot import db

        return db.make_engine(
            self.settings.effective_database_url, grouped=self.settings.group_commit
        )


# The state of the command being run (one per process: the CLI runs one command).
CURRENT: AppState | None = None


def _know_queued_actions() -> None:
    from incidentbot.ledger.actions import PermanentError, StepContext, registry

    def elsewhere(ctx: StepContext, _input: dict[str, object]) -> dict[str, object]:
        raise PermanentError(f"{ctx.step_name} runs in `incidentbot serve`, not in the CLI")

    for name in QUEUED_ACTIONS:
        if registry.get(name) is None:  # a bot in this process (tests, demo) keeps its own
            registry.register(name, elsewhere, idempotent=True)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


def actor(as_user: str | None) -> str:
    """Who is acting: ``--as``, else INCIDENTBOT_ACTOR, else the login name."""
    name = as_user or os.environ.get("INCIDENTBOT_ACTOR") or _login()
    name = name.strip()
    if not name:
        raise CliError("--as is empty: name who is acting")
    return name


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


AS_OPTION = typer.Option(None, "--as", help="Who is acting (default: your login name).")
