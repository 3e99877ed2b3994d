"""What every use case takes: the :class:`Core` (settings, database, the pieces a door may lack)
and the :class:`Actor` who asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.engine import Engine

from incidentbot.config import Settings

if TYPE_CHECKING:
    from incidentbot.ports import Pager
    from incidentbot.runbooks.loader import Catalog

# Where a request came from. Stored nowhere; it decides only door-specific details that are
# not behaviour (e.g. which idempotency key a retry of the same request carries).
Door = Literal["slack", "cli", "alertmanager", "pagerduty", "scheduler", "web"]


@dataclass(frozen=True)
class Actor:
    """Who asked: ``id`` is stored as the actor of what they change (a Slack user id, a CLI
    user, ``alertmanager``, ``incidentbot``); the people directory turns it into a name."""

    id: str
    door: Door


@dataclass
class Core:
    """The dependencies of the use cases. Built once by the bot (``serve``/``worker``) and by
    the CLI; a door that lacks a piece (no PagerDuty configured, no runbooks loaded) passes
    None and the use cases that need it refuse with a clear message."""

    settings: Settings
    engine: Engine
    # Read-only calls a use case makes while the user waits (on-call lookup); pages themselves
    # are durable effects run by workers, never called from here.
    pager: Pager | None = None
    catalog: Callable[[], Catalog] | None = None
    # Whether a chat (Slack) is configured: the chat effects (channel, header, digest, posts)
    # are queued only then, for whichever ``serve``/``worker`` runs them. The bot always has
    # one; the CLI has one when the Slack bot token is set.
    chat: bool = True
