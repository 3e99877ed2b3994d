"""Transition callbacks: who wants to know when a run or a step changes state.

The timeline and the Slack run message subscribe here. Events are queued on the session that
makes the change and delivered only after that transaction commits, so a subscriber never
announces a step that was rolled back. Delivery is synchronous, in the committing thread: keep
callbacks quick (hand slow work to the ledger itself); an exception in one is logged and does
not affect the run or the other subscribers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from incidentbot.ledger.models import Run, Step

log = logging.getLogger(__name__)

_QUEUE = "ledger_events"


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

_subscribers: list[Subscriber] = []
_lock = threading.Lock()


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


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the enclosing transaction may still roll back
    events = session.info.pop(_QUEUE, None)
    if events:
        _deliver(events)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # only the whole transaction's fate decides (events are queued after savepoints)
    session.info.pop(_QUEUE, None)
