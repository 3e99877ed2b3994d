"""Transition callbacks: who wants to know when a run or a step changes state.

Events are queued on the session that makes the change. :func:`subscribe` callbacks get them
only after that transaction commits, so a subscriber never announces a step that was rolled
back; delivery is synchronous, in the committing thread: keep callbacks quick (hand slow work
to the ledger itself); an exception in one is logged and does not affect the run or the other
subscribers. :func:`on_transition` hooks run inside the transaction instead, just before it
commits, for writes that must commit with the transition (the runbook timeline).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from incidentbot import group_commit
from incidentbot.ledger.models import Run, Step

log = logging.getLogger(__name__)

_QUEUE = "ledger_events"
_HOOKED = "ledger_events_hooked"


@dataclass(frozen=True)
class LedgerEvent:
    """One transition. ``kind`` is ``run.<what>`` or ``step.<what>``:

    run.created, run.claimed, run.taken_over, run.released, run.parked, run.decided,
    run.cancel_requested, run.succeeded, run.failed, run.cancelled, run.needs_attention,
    step.started, step.succeeded, step.retrying, step.failed, step.skipped.
    """

    kind: str
    run_id: int
    run_kind: str
    run_status: str
    at: datetime
    incident_id: int | None = None
    target: str | None = None
    step_index: int | None = None
    step_name: str | None = None
    attempt: int | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[LedgerEvent], None]
TransitionHook = Callable[[Session, LedgerEvent], None]

_subscribers: list[Subscriber] = []
_hooks: list[tuple[TransitionHook, Callable[[LedgerEvent], bool] | None, bool]] = []
_lock = threading.Lock()


def on_transition(
    hook: TransitionHook,
    accept: Callable[[LedgerEvent], bool] | None = None,
    *,
    savepoint: bool = True,
) -> Callable[[], None]:
    """Call ``hook(session, event)`` inside the transaction that makes each transition, just
    before it commits, so what the hook writes (a timeline entry) commits with the transition
    or not at all. A hook that raises rolls its own writes back to a savepoint and is logged;
    the transition still commits. ``accept`` (quick, no database) picks the events the hook
    wants; the others cost nothing. Returns the function that removes the hook.

    ``savepoint=False`` is for a hook whose only write is its last statement and cannot fail
    on its data (the runbook timeline's one INSERT): it runs without the savepoint, two
    statements fewer per transition. What it raises before writing is logged and the
    transition still commits; an error from the database is not swallowed (PostgreSQL aborts the
    whole transaction on one), so the transition fails with it rather than commit half of it."""
    entry = (hook, accept, savepoint)
    with _lock:
        _hooks.append(entry)

    def remove() -> None:
        with _lock:
            if entry in _hooks:
                _hooks.remove(entry)

    return remove


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call ``callback`` with every committed transition in this process; returns the
    function that unsubscribes it."""
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)

    return unsubscribe


def event_for(
    run: Run, kind: str, now: datetime, step: Step | None = None, **kw: Any
) -> LedgerEvent:
    assert run.id is not None
    return LedgerEvent(
        kind=kind,
        run_id=run.id,
        run_kind=run.kind,
        run_status=run.status,
        at=now,
        incident_id=run.incident_id,
        target=run.target,
        step_index=step.idx if step else None,
        step_name=step.name if step else None,
        attempt=step.attempts if step else None,
        **kw,
    )


def emit(session: Session, ev: LedgerEvent) -> None:
    """Queue ``ev`` for delivery when ``session`` commits (dropped if it rolls back)."""
    session.info.setdefault(_QUEUE, []).append(ev)


def _deliver(events: list[LedgerEvent]) -> None:
    with _lock:
        subscribers = list(_subscribers)
    for ev in events:
        for callback in subscribers:
            try:
                callback(ev)
            except Exception:
                log.exception(
                    "ledger subscriber %r failed on %s (run %s)",
                    getattr(callback, "__name__", callback),
                    ev.kind,
                    ev.run_id,
                )


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    with _lock:
        hooks = list(_hooks)
    if not hooks:
        return
    events = session.info.get(_QUEUE) or []
    done = session.info.setdefault(_HOOKED, 0)
    for ev in events[done:]:
        for hook, accept, savepoint in hooks:
            if accept is not None and not accept(ev):
                continue
            try:
                if savepoint:
                    with session.begin_nested():
                        hook(session, ev)
                else:
                    hook(session, ev)
            except Exception as exc:
                if not savepoint and isinstance(exc, DBAPIError):
                    raise  # the database refused: the transaction may be unusable
                log.exception(
                    "ledger transition hook %r failed on %s (run %s)",
                    getattr(hook, "__name__", hook),
                    ev.kind,
                    ev.run_id,
                )
    session.info[_HOOKED] = len(events)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the enclosing transaction may still roll back
    session.info.pop(_HOOKED, None)
    events = session.info.pop(_QUEUE, None)
    if events and not group_commit.after_commit(session, lambda: _deliver(events)):
        _deliver(events)  # committed on its own; a group member's wait for its group


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # only the whole transaction's fate decides (events are queued after savepoints)
    session.info.pop(_QUEUE, None)
    session.info.pop(_HOOKED, None)
