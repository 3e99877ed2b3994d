"""Starting a run that takes no target lock, with two Core statements.

Every declare and every change of an incident queues such runs (its channel, its header and
digest refresh) while Slack waits for the answer, in the change's own transaction. So: no ORM
flush, no savepoint, no lookup of the key first and no statement to read the clock. The run row
is inserted unless its key is taken (``ON CONFLICT DO NOTHING``, on SQLite and PostgreSQL alike:
a racing start of the same key waits for the other to commit, then finds its row), with its
times from the database clock inside that ``INSERT`` (returned with its id), then its step rows
in one ``executemany``. Runs with a target lock go the ORM way in :func:`service.start_run`.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from incidentbot.db import UTCDateTime
from incidentbot.ledger.fenced import clock
from incidentbot.ledger.models import PENDING, STEP_PENDING, Run, Step
from incidentbot.ledger.redact import redact
from incidentbot.ledger.spec import StepSpec, snapshot

RUNS = Run.__table__  # type: ignore[attr-defined]
STEPS = Step.__table__  # type: ignore[attr-defined]


@cache
def _insert_run(dialect: str) -> Any:
    """The run's ``INSERT``, built once per back end: created and updated on the database
    clock, ``wake_at`` kept only if it is ahead of it; returns the id and that time."""
    now = clock(dialect)
    wake = bindparam("b_wake", type_=UTCDateTime())
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(RUNS).values(
        created_at=now,
        updated_at=now,
        wake_at=case((wake > now, wake), else_=None),
    )
    return stmt.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
        RUNS.c.id, RUNS.c.created_at, RUNS.c.wake_at
    )


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
    values: dict[str, Any] = {
        "kind": kind,
        "idempotency_key": key,
        "spec": snapshot(steps),
        "status": PENDING,
        "cursor": 0,
        "incident_id": incident_id,
        "created_by": actor,
        "takeovers": 0,
    }
    conn = session.connection()
    row = conn.execute(_insert_run(conn.dialect.name), {**values, "b_wake": wake_at}).first()
    if row is None:
        return None
    run_id, now, wake = row
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
    run = Run(id=run_id, created_at=now, updated_at=now, wake_at=wake, **values)
    make_transient_to_detached(run)
    session.add(run)  # persistent as inserted, without reading it back
    return run
