"""What the node-operations actions share: input checks, masking, waiting, error wording."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator

from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError, RetryableError
from incidentbot.ports import ExternalError
from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, http_url, masked_url, shown
from incidentbot.runbooks.actions.base import ActionContext

T = TypeVar("T")

POLL = 0.25  # seconds between checks while waiting for something to happen

# supervisord program names (``name`` or ``group:name``), HAProxy backend and server names.
_PROGRAM = re.compile(r"^[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?$")


def supervisor_socket(value: str) -> str:
    """supervisord's unix socket: a path, or ``unix://`` and a path (as supervisorctl's
    ``serverurl``). Returns the path."""
    text = value.strip()
    if text.startswith(("http://", "https://")):
        raise ValueError(
            f"{masked_url(text)!r}: supervisord is reached through the unix socket of its "
            "[unix_http_server] section; give that socket's path (or unix:///path)"
        )
    path = text.removeprefix("unix://")
    if not path or "\0" in path:
        raise ValueError("give the path of supervisord's unix socket (or unix:///path)")
    return path


def program_name(value: str) -> str:
    if not _PROGRAM.match(value):
        raise ValueError(
            f"{value!r} is not a supervisord program name (letters, digits, '_', '.', '-', "
            "optionally group:name)"
        )
    return value


def positive(value: float, what: str = "the timeout") -> float:
    if value <= 0:
        raise ValueError(f"{what} must be longer than 0 seconds")
    return value


# Input types the actions share: an http(s) URL with a host; a timeout longer than zero.
HttpUrlText = Annotated[str, AfterValidator(http_url)]
Timeout = Annotated[Seconds, AfterValidator(positive)]


def wait_until(
    ctx: ActionContext,
    check: Callable[[], tuple[T | None, str]],
    *,
    timeout: float,
    what: str,
    interval: float = POLL,
    on_stop: Callable[[str], Exception] | None = None,
    on_timeout: Callable[[str], Exception] | None = None,
) -> T:
    """Call ``check`` until it returns a value (its first item); it also says what it saw
    (its second item), which the errors quote. Stops early when the run is stopped.

    The errors default to :class:`OutcomeUnknownError` (something was started that did not
    finish as expected); callers pass others where a different verdict is right."""
    deadline = time.monotonic() + timeout
    while True:
        value, seen = check()
        if value is not None:
            return value
        if ctx.should_stop():
            message = f"stopped while waiting for {what} ({seen})"
            raise (on_stop or OutcomeUnknownError)(message)
        if time.monotonic() >= deadline:
            message = f"gave up waiting for {what} after {fmt_seconds(timeout)} ({seen})"
            raise (on_timeout or OutcomeUnknownError)(message)
        if ctx.wait(min(interval, max(0.0, deadline - time.monotonic()))):
            continue  # stopped: the check above reports it


def after_change(ctx: ActionContext, exc: Exception, done: str) -> Exception:
    """An error met after something was already changed, as the ledger must see it: never
    "retry" (that would mean nothing happened). ``done`` says what had been done."""
    if isinstance(exc, OutcomeUnknownError | PermanentError):
        return type(exc)(shown(ctx, f"{exc} ({done})"))
    if isinstance(exc, RetryableError) or (isinstance(exc, ExternalError) and exc.retryable):
        return OutcomeUnknownError(shown(ctx, f"{exc} ({done})"))
    return PermanentError(shown(ctx, f"{exc} ({done})"))


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
