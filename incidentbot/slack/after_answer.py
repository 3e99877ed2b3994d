"""Slack calls a request makes once its answer is written.

Bolt runs with ``process_before_response``: Slack hears the answer only when the listener has
returned. A listener that calls Slack before returning (a reply through the response URL, an
ephemeral message, ``views.open``, the clicked message updated) keeps Slack waiting for a second
round trip to Slack: on a slow day the click misses Slack's 3 seconds, the user sees an error
and clicks again. So a listener records what the click or command means, answers, and hands its
Slack calls to :func:`then`; they are made once the answer's last byte is written.

A door opens :func:`answer` around everything that leads to one answer, up to its last byte
(``/slack/events`` over HTTP, the Socket Mode handler; Bolt's dispatch opens one too, which is
the outermost only where a caller dispatches without saying when the answer is out). When the
outermost block ends, one thread per request makes the calls: those ``at_once`` (``views.open``,
whose ``trigger_id`` expires 3 s after the click) straight away, the others once no other
answer is pending (:func:`incidentbot.priority.after_urgent`, at most :data:`YIELD_S`). A call
that fails is logged (the log filter masks secrets) and changes nothing recorded: the request
was answered already. Called outside any request (the CLI, a scheduled job, a test), :func:`then`
makes the call at once, in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from incidentbot import priority

log = logging.getLogger(__name__)

YIELD_S = 1.0  # a message after the answer waits for the other answers being sent, at most this


@dataclass
class Pending:
    """The calls one request makes once its answer is written."""

    first: list[tuple[str, Callable[[], object]]] = field(default_factory=list)
    rest: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.first or self.rest)

    def run(self) -> None:
        for what, call in self.first:
            _make(what, call)
        if self.rest:
            priority.after_urgent(YIELD_S)
        for what, call in self.rest:
            _make(what, call)

    def start(self) -> None:
        if self:
            threading.Thread(target=self.run, name="slack-after-answer", daemon=True).start()


_pending: ContextVar[Pending | None] = ContextVar("slack_after_answer", default=None)


@contextmanager
def answer() -> Iterator[Pending]:
    """The span of one request's answer, up to its last byte written. The calls handed to
    :func:`then` inside it start when the outermost block ends (also when it ends with an
    exception: what was recorded is told). The context is copied into the thread that
    dispatches the request (Starlette's thread pool copies it), so the door's block is the
    outermost there too."""
    outer = _pending.get()
    if outer is not None:
        yield outer
        return
    pending = Pending()
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)
        pending.start()


def then(what: str, call: Callable[[], object], *, at_once: bool = False) -> None:
    """Make ``call`` once the answer of the request being handled is written (at once when no
    request is). ``what`` names it in the log if it fails; ``at_once``: do not wait for the
    other answers being sent (``views.open``: its trigger expires)."""
    pending = _pending.get()
    if pending is None:
        _make(what, call)
    elif at_once:
        pending.first.append((what, call))
    else:
        pending.rest.append((what, call))


def _make(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as exc:  # Slack down or refusing: the request was answered already
        log.warning("%s failed after the answer: %s: %s", what, type(exc).__name__, exc)
