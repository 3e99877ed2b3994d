"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from incidentbot import models  # noqa: F401 - every table


def test_migrations_match_the_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_a_snooze_lookup_reads_the_kind_index_not_the_timeline(engine):
    """A delivery asks whether its group is snoozed: the answer comes off the kind index, so it
    costs the same on a database with years of timeline as on a new one."""
    from datetime import UTC, datetime

    from sqlalchemy import event

    from incidentbot import db
    from incidentbot.alerts import snooze

    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        if "timeline_event" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with db.transaction(engine) as s:
            assert snooze.snoozed_until(s, 1, datetime.now(UTC)) is None
    finally:
        event.remove(engine, "before_cursor_execute", record)
    [(statement, parameters)] = seen
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: judge the index
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + statement, parameters))
    assert "ix_timeline_kind" in plan, plan
