"""Work that Slack is timing goes first.

Slack gives the bot 3 seconds to answer a command, a click or an event; Alertmanager waits 10
seconds for a webhook and retries what failed. Both run in one process, one Python thread at a
time, so an alert storm that arrives with a burst of commands takes the CPU the answers need.
While a Slack request is being answered (:func:`urgent`), work that can wait a little asks
:func:`after_urgent` first: it goes on once no answer is pending, or after ``max_wait`` seconds
at the latest, so a steady stream of commands never stops it; work in several phases asks
at each boundary (:func:`yielding`: one bounded wait for them all). On SQLite the write queue puts
the answering threads' writes first in the same way (:mod:`incidentbot.writer_queue`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_quiet = threading.Condition()
_urgent = 0
_deferred = 0
_here = threading.local()  # how deep this thread is in urgent() blocks


@contextmanager
def urgent(*, this_thread: bool = True) -> Iterator[None]:
    """Mark a Slack request as being answered for the duration of the block. With
    ``this_thread=False`` the block only holds back the work that can wait, and the thread that
    entered it does not count as answering (an event loop that hands the request to another
    thread and then sends its answer: a block there may span ``await``)."""
    global _urgent
    with _quiet:
        _urgent += 1
    if this_thread:
        _here.depth = getattr(_here, "depth", 0) + 1
    try:
        yield
    finally:
        if this_thread:
            _here.depth -= 1
        with _quiet:
            _urgent -= 1
            if _urgent == 0:
                _quiet.notify_all()


def answering() -> bool:
    """Whether this thread is answering a Slack request (inside :func:`urgent`): its writes go
    before those that can wait (:mod:`incidentbot.writer_queue`)."""
    return getattr(_here, "depth", 0) > 0


def after_urgent(max_wait: float) -> None:
    """Return once no Slack request is being answered, or after ``max_wait`` seconds."""
    global _deferred
    with _quiet:
        if _urgent == 0:
            return
        _deferred += 1
        try:
            _quiet.wait_for(lambda: _urgent == 0, timeout=max_wait)
        finally:
            _deferred -= 1


def pending() -> int:
    """How many Slack answers are being prepared or sent now (:func:`urgent` blocks)."""
    with _quiet:
        return _urgent


def deferred() -> int:
    """How many threads are waiting in :func:`after_urgent` now."""
    with _quiet:
        return _deferred


def yielding(max_wait: float) -> Callable[[], None]:
    """A wait to ask at each natural boundary of one piece of work that can wait (before its
    transaction, between its phases; never inside a transaction or while holding a lock): each
    call returns once no Slack request is being answered, and all the calls together wait at
    most ``max_wait`` seconds, so a long piece of work that began before a burst of commands
    still lets their answers go first, and a steady stream of commands never stops it."""
    deadline: list[float | None] = [None]

    def pause() -> None:
        with _quiet:
            if _urgent == 0:
                return
        now = time.monotonic()
        if deadline[0] is None:
            deadline[0] = now + max_wait
        left = deadline[0] - now
        after_urgent(max(left, 0.0))

    return pause
