"""Starting a run that takes no target lock, with two Core statements.

Every declare and every change of an incident queues such runs (its channel, its header and
digest refresh) while Slack waits for the answer, in the change's own transaction. So: no ORM
flush, no savepoint and no lookup of the key first. The run row is inserted unless its key is
taken (``ON CONFLICT DO NOTHING``, on SQLite and PostgreSQL alike: a racing start of the same
key waits for the other to commit, then finds its row), then its step rows in one
``executemany``. Runs with a target lock go the ORM way in :func:`service.start_run`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from incidentbot.db import db_now
from incidentbot.ledger.models import PENDING, STEP_PENDING, Run, Step
from incidentbot.ledger.redact import redact
from incidentbot.ledger.spec import StepSpec, snapshot

# The database clock read once per transaction for the runs it starts (a declare starts two):
# one round trip fewer each, while PostgreSQL holds the INC-number row.
_NOW = "incidentbot_run_start_clock"
RUNS = Run.__table__  # type: ignore[attr-defined]
STEPS = Step.__table__  # type: ignore[attr-defined]


def clock(session: Session) -> datetime:
    """The database clock, read once per transaction of ``session`` (the time its runs start)."""
    transaction = session.get_transaction()
    cached = session.info.get(_NOW)
    if cached is not None and cached[0] is transaction:
        return cached[1]  # type: ignore[no-any-return]
    now = db_now(session)
    session.info[_NOW] = (transaction, now)
    return now


def insert(
    session: Session,
    kind: str,
    key: str,
    steps: list[StepSpec],
    actor: str,
    incident_id: int | None,
    wake_at: datetime | None = None,
) -> Run | None:
    """The new run (in ``session``, as inserted), or None when ``key`` already names a run.
    ``wake_at`` is kept if it is ahead of the database clock."""
    now = clock(session)
    values: dict[str, Any] = {
        "kind": kind,
        "idempotency_key": key,
        "spec": snapshot(steps),
        "status": PENDING,
        "cursor": 0,
        "incident_id": incident_id,
        "created_by": actor,
        "takeovers": 0,
        "wake_at": wake_at if wake_at is not None and wake_at > now else None,
        "created_at": now,
        "updated_at": now,
    }
    conn = session.connection()
    new = pg_insert(RUNS) if conn.dialect.name == "postgresql" else sqlite_insert(RUNS)
    stmt = new.values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
    run_id = conn.execute(stmt.returning(RUNS.c.id)).scalar()
    if run_id is None:
        return None
    conn.execute(
        STEPS.insert(),
        [
            {
                "run_id": run_id,
                "idx": i,
                "name": step.name,
                "action": step.action,
                "status": STEP_PENDING,
                "attempts": 0,
                "idempotent": bool(step.idempotent),
                "input": redact(step.input),
            }
            for i, step in enumerate(steps)
        ],
    )
    run = Run(id=run_id, **values)
    make_transient_to_detached(run)
    session.add(run)  # persistent as inserted, without reading it back
    return run
