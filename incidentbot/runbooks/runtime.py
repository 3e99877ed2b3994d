"""Making a process able to run runbooks: the ledger actions, the timeline hook, the action
plugins from installed packages, and the catalog of runbook files.

The bot, ``incidentbot worker`` and ``incidentbot runbook run`` all call :func:`install`, so a
runbook run continues the same way whichever process picks it up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from incidentbot.ledger.actions import registry as ledger_registry
from incidentbot.ledger.events import on_transition
from incidentbot.runbooks.actions import load_entry_points
from incidentbot.runbooks.actions import registry as action_registry
from incidentbot.runbooks.executor import Announcer, RunbookActions
from incidentbot.runbooks.timeline import record_transition, wants_transition

if TYPE_CHECKING:
    from incidentbot.config import Settings
    from incidentbot.ports import Chat

log = logging.getLogger(__name__)

_plugins_loaded = False
_hook_lock = threading.Lock()
_remove_hook: Callable[[], None] | None = None


def load_plugins() -> None:
    """Load third-party action packs (entry point group ``incidentbot.actions``) once."""
    global _plugins_loaded
    with _hook_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
    names = load_entry_points(action_registry)
    if names:
        log.info("runbook actions from installed packages: %s", ", ".join(names))


def install_timeline() -> None:
    """Write runbook transitions to the timeline in this process (idempotent). Every process
    that changes runs calls it: the bot, workers, and the CLI (``runs cancel`` too)."""
    global _remove_hook
    with _hook_lock:
        if _remove_hook is None:
            # One INSERT, its last statement, that cannot fail on its data: no savepoint.
            _remove_hook = on_transition(
                record_transition, accept=wants_transition, savepoint=False
            )


def install(
    engine: Engine,
    settings: Settings,
    *,
    chat: Chat | None = None,
    announce: Announcer | None = None,
    progress: Callable[[int, str, str], None] | None = None,
) -> None:
    """Register the runbook ledger actions and the timeline hook.

    Without ``announce`` (no Slack here) the step that posts a run's message is left to a
    process that has it: the ledger hands such a run back instead of failing it."""
    load_plugins()
    actions = RunbookActions(engine, settings, chat=chat, announce=announce, progress=progress)
    actions.install(ledger_registry)
    install_timeline()
