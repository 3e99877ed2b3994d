"""Web API method handlers, registered by name (``conversations.create`` …).

A handler takes the workspace, the calling user (resolved from the token) and the arguments,
and returns the success body without ``ok``; a failure raises ``SlackError``. Handlers run
with the workspace lock held, so each call is atomic like a call to Slack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from incidentbot.sandbox.slack.models import SlackError, User
from incidentbot.sandbox.slack.workspace import Workspace

Handler = Callable[[Workspace, User, "Args"], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}

_TRUE = {"1", "true", "yes"}


def method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for a Web API method."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class Args:
    """Arguments as Slack reads them, whether they came form-encoded (strings) or as JSON."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)

    def __contains__(self, name: str) -> bool:
        return self.data.get(name) not in (None, "")

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            return default
        return value if isinstance(value, str) else json.dumps(value)

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in _TRUE

    def int(self, name: str, default: int, *, error: str = "invalid_arguments") -> int:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SlackError(error) from None

    def list(self, name: str) -> list[str]:
        """A comma-separated string (form) or a JSON array (JSON body)."""
        value = self.data.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [part.strip() for part in str(value).split(",") if part.strip()]

    def raw(self, name: str) -> Any:
        return self.data.get(name)


def paginate(items: list[Any], args: Args, default_limit: int = 100) -> tuple[list[Any], str]:
    """Slack's cursor pagination: an opaque cursor, ``next_cursor`` empty on the last page."""
    limit = args.int("limit", default_limit, error="invalid_limit")
    if limit <= 0:
        limit = default_limit
    cursor = args.str("cursor") or ""
    start = 0
    if cursor:
        try:
            start = int(cursor.removeprefix("offset:"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, f"offset:{start + limit}" if more else ""


def load_all() -> dict[str, Handler]:
    """Import every handler module (they register themselves) and return the registry."""
    from incidentbot.sandbox.slack.methods import (  # noqa: F401 - imported to register
        chat,
        conversations,
        directory,
        extras,
    )

    return HANDLERS
