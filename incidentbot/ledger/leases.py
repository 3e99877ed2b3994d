"""Claiming and fencing runs: a worker claims a due run (or one whose lease expired), proves it
still holds it before each commit (the fence), renews, releases and ends it.

The common claim, the oldest due run being a pending one that no worker held, is one
statement: ``UPDATE ledger_run ... WHERE id = (the oldest due run, FOR UPDATE SKIP LOCKED on
PostgreSQL) AND status = pending AND owner IS NULL RETURNING`` the row, with the database clock
read inside it (on PostgreSQL ``clock_timestamp()`` in the new values: read once the row is
locked, as the general path reads the clock again after its select). When nothing is due, one
more statement says so. Anything else (a lease to take over, a parked run past its deadline)
takes the general path in the same transaction. The statements are built once, in
:mod:`incidentbot.ledger.claim_sql`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    or_,
    update,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from incidentbot.db import db_now, detached, reader
from incidentbot.ledger import claim_sql, fenced
from incidentbot.ledger.actions import ActionRegistry
from incidentbot.ledger.events import emit, event_for
from incidentbot.ledger.models import (
    ENDED,
    EXPIRED,
    PARKED,
    PENDING,
    RUNNING,
    STEP_PENDING,
    STEP_SKIPPED,
    Run,
    Step,
    TargetLock,
)
from incidentbot.ledger.redact import redact_text
from incidentbot.ledger.service import LeaseLost, get_run, get_step

log = logging.getLogger(__name__)


def claim_next(
    session: Session, owner: str, lease: float, *, run_id: int | None = None
) -> Run | None:
    """Take the oldest run that is due: pending (past any backoff), parked past its deadline,
    or running on a lease that expired (its worker died). PostgreSQL skips rows another
    worker is claiming at this instant; SQLite serialises claims with its write lock.
    ``run_id`` limits the claim to that one run."""
    return claim(session, owner, lease, run_id=run_id).run


def any_due(engine: Engine, *, run_id: int | None = None) -> bool:
    """Whether some run is due (``run_id``: that one), read on a connection of its own outside
    any write transaction: a fraction of a claim that finds nothing, which takes the write
    turn. Only a hint: a run that becomes due just after is claimed when its wake-up comes
    (started in this process) or at the next poll, as after a claim that found nothing."""
    with reader(engine).connect() as conn:
        stmt = claim_sql.ANY_DUE[(conn.dialect.name, run_id is not None)]
        found = conn.execute(stmt, {} if run_id is None else {"b_only": run_id}).first()
        conn.rollback()
    return found is not None


class Claim(NamedTuple):
    """What :func:`claim` took: the run (None: nothing was due); with ``start_with``, what the
    attempt of the step it started needs (None: none), and whether it tried to start one."""

    run: Run | None
    started: dict[str, Any] | None = None
    tried: bool = False


def claim(
    session: Session,
    owner: str,
    lease: float,
    *,
    run_id: int | None = None,
    start_with: ActionRegistry | None = None,
) -> Claim:
    """:func:`claim_next`; with ``start_with`` on PostgreSQL, the plain claim (a pending run
    no worker held) also marks the step at the run's cursor started, in the same statement,
    when that step is idempotent and plain for these actions (as
    :func:`incidentbot.ledger.chained.start_first` would): one round trip."""
    if start_with is not None and session.connection().dialect.name == "postgresql":
        run, started = _claim_pending_and_start(session, owner, lease, run_id, start_with)
        if run is not None:
            return Claim(run, started, tried=True)
    else:
        run = _claim_pending(session, owner, lease, run_id)
        if run is not None:
            return Claim(run)
    if not _other_due(session, run_id):
        return Claim(None)  # nothing due: two statements in all
    now = db_now(session)
    due = or_(
        and_(Run.status == PENDING, or_(col(Run.wake_at).is_(None), col(Run.wake_at) <= now)),
        and_(Run.status == RUNNING, col(Run.lease_expires_at) <= now),
        and_(Run.status == PARKED, col(Run.wake_at) <= now),
    )
    if run_id is not None:
        due = and_(due, col(Run.id) == run_id)
    return Claim(_claim_due(session, owner, lease, due))


def _claim_due(session: Session, owner: str, lease: float, due: Any) -> Run | None:
    """The general claim: the oldest run matching ``due``, whatever its state."""
    stmt = (
        select(Run)
        .where(due)
        .order_by(col(Run.id))
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    run = session.exec(stmt).first()
    if run is None:
        return None
    # Read the clock again now that the row is ours: ``now`` above was read before the select,
    # which may see a run whose start committed after that reading (each statement sees what
    # was committed before it began), and a run must not start before its lock was acquired.
    now = db_now(session)
    previous_status, previous_owner = run.status, run.owner
    expired_step: Step | None = None
    if previous_status == PARKED:
        step = get_step(session, _id(run), run.cursor)
        if step.decision is None:
            step.decision, step.decided_by, step.decided_at = EXPIRED, "ledger", now
            session.add(step)
            expired_step = step
    run.status = RUNNING
    run.owner = owner
    run.lease_expires_at = now + timedelta(seconds=lease)
    run.started_at = run.started_at or now
    run.updated_at = now
    run.wake_at = None
    takeover = previous_status == RUNNING
    if takeover:
        run.takeovers += 1
    session.add(run)
    session.flush()
    if expired_step is not None:
        emit(session, event_for(run, "run.decided", now, expired_step, data={"decision": EXPIRED}))
    kind = "run.taken_over" if takeover else "run.claimed"
    emit(session, event_for(run, kind, now, data={"owner": owner, "previous": previous_owner}))
    if takeover:
        log.warning(
            "run %s taken over by %s from %s (lease expired)", run.id, owner, previous_owner
        )
    return run


_run = Run.__table__  # type: ignore[attr-defined]


def _other_due(session: Session, run_id: int | None) -> bool:
    conn = session.connection()
    params = {} if run_id is None else {"b_only": run_id}
    stmt = claim_sql.OTHER_DUE[(conn.dialect.name, run_id is not None)]
    return conn.execute(stmt, params).first() is not None


def _claim_pending(session: Session, owner: str, lease: float, run_id: int | None) -> Run | None:
    """The plain claim in one statement; None when the oldest due run is not a plain one (or
    none is due): the caller then takes the general path."""
    conn = session.connection()
    dialect = conn.dialect.name
    params = {"b_owner": owner, **fenced.lease_params(dialect, lease)}
    if run_id is not None:
        params["b_only"] = run_id
    row = conn.execute(claim_sql.CLAIM[(dialect, run_id is not None)], params).mappings().first()
    return None if row is None else _claimed(session, owner, row)


def _claim_pending_and_start(
    session: Session, owner: str, lease: float, run_id: int | None, actions: ActionRegistry
) -> tuple[Run | None, dict[str, Any] | None]:
    """PostgreSQL: :func:`_claim_pending` and the start of its step at the cursor in one
    statement (:data:`incidentbot.ledger.claim_sql.CLAIM_AND_START`): the run (None: the
    caller takes the general path) and what the started step's attempt needs (None: no step
    was started)."""
    conn = session.connection()
    params = {"b_owner": owner, "b_actions": actions.names(), **fenced.lease_params(
        "postgresql", lease)}  # fmt: skip
    if run_id is not None:
        params["b_only"] = run_id
    row = conn.execute(claim_sql.CLAIM_AND_START[run_id is not None], params).mappings().first()
    if row is None:
        return None, None
    run = _claimed(session, owner, {c.name: row[c.name] for c in _run.c})
    if row["s_name"] is None:
        return run, None
    started = {
        "run_kind": run.kind,
        "incident_id": run.incident_id,
        "target": run.target,
        "index": run.cursor,
        "name": row["s_name"],
        "idempotent": row["s_idempotent"],
        "attempt": row["s_attempts"],
    }
    return run, started


def _claimed(session: Session, owner: str, row: Any) -> Run:
    """The run a one-statement claim returned (``row``: its columns), in ``session``."""
    held = session.identity_map.get(session.identity_key(Run, row["id"]))
    if held is not None:  # already in this session: bring it up to date instead
        run = get_run(session, row["id"])
    else:
        run = detached(Run, row)  # as loaded: not validated field by field
        session.add(run)  # persistent as updated, without reading it back
    data = {"owner": owner, "previous": None}
    emit(session, event_for(run, "run.claimed", run.updated_at, data=data))
    return run


def fence(session: Session, run_id: int, owner: str, lease: float) -> datetime:
    """Prove this worker still holds the run, extending its lease; else raise LeaseLost.

    Every write a worker makes goes through this first, in the same transaction: the UPDATE
    matches only while ``owner`` holds an unexpired lease, and on PostgreSQL it also locks the
    row, so a concurrent takeover either happened before (we match nothing) or waits for us.
    """
    now = fenced.fence(session, run_id, owner, lease)
    if now is None:
        raise LeaseLost(run_id, owner)
    return now


def renew(session: Session, run_id: int, owner: str, lease: float) -> bool:
    """Heartbeat: extend the lease if still held."""
    try:
        fence(session, run_id, owner, lease)
    except LeaseLost:
        return False
    return True


def release(
    session: Session, run: Run, now: datetime, *, wake_at: datetime | None = None, note: str = ""
) -> None:
    """Hand a held run back (shutdown, backoff): any worker may claim it from ``wake_at``."""
    run.status = PENDING
    run.owner = None
    run.lease_expires_at = None
    run.wake_at = wake_at
    run.updated_at = now
    session.add(run)
    data: dict[str, Any] = {"wake_at": wake_at.isoformat() if wake_at else None}
    if note:
        data["note"] = note
    emit(session, event_for(run, "run.released", now, data=data))


def end_run(
    session: Session, run: Run, status: str, now: datetime, error: str | None = None
) -> None:
    """Finish a run. Ending statuses release the target lock in this same transaction;
    ``needs_attention`` keeps it (the target is in an unknown state)."""
    run.status = status
    run.lease_expires_at = None
    run.wake_at = None
    run.updated_at = now
    run.finished_at = now
    if error is not None:
        run.error = redact_text(error)
    if status in ENDED:
        if run.target is not None:
            session.execute(
                TargetLock.__table__.delete().where(  # type: ignore[attr-defined]
                    TargetLock.__table__.c.run_id == run.id  # type: ignore[attr-defined]
                )
            )
            run.lock_released_at = now
        # Steps never reached (and rollbacks never needed) did not run.
        session.execute(
            update(Step)
            .where(col(Step.run_id) == run.id, col(Step.status) == STEP_PENDING)
            .values(status=STEP_SKIPPED)
            .execution_options(synchronize_session=False)
        )
    session.add(run)
    emit(session, event_for(run, f"run.{status}", now, error=run.error))
    log.info("run %s %s%s", run.id, status, f": {run.error}" if run.error else "")


def _id(run: Run) -> int:
    assert run.id is not None
    return run.id
