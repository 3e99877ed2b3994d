"""Timeline events written many at once (an alert storm writes hundreds per notification), in
the order given, as one statement on each back end.

On PostgreSQL the rows go as one JSON parameter (:mod:`incidentbot.incidents.rowsets`): one
statement text, one round trip, whatever their number. On SQLite one batched ``INSERT`` whose
values are made as the columns make them, each distinct time once (a batch shares its
recording time), and bound as they are.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Connection

from incidentbot.incidents.models import TimelineEvent
from incidentbot.incidents.rowsets import json_rows, written_as


def write(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Append the events (:func:`incidentbot.incidents.records.event_row`'s columns)."""
    dialect = connection.dialect
    if len(rows) > 1 and dialect.name == "postgresql":
        connection.execute(_PG_INSERT_EVENTS, {"rows": json_rows(rows, _EVENT_TIMES)})
    elif dialect.name == "sqlite":
        rows = [dict(row) for row in rows]
        written_as(rows, _EVENTS, _EVENT_TIMES, ("data",), dialect)
        # The driver's own ``executemany`` of one text (through SQLAlchemy's execution
        # events, as every statement): no compiled statement's parameters made per row.
        connection.exec_driver_sql(_SQLITE_INSERT_EVENTS, rows)
    else:
        connection.execute(_INSERT_EVENT, rows)


_EVENTS = TimelineEvent.__table__  # type: ignore[attr-defined]
_INSERT_EVENT = insert(_EVENTS)
# The rows as written_as made them (times and JSON as stored), bound by name as they are.
_SQLITE_INSERT_EVENTS = (
    "INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind, actor, summary,"
    " data, source_key) VALUES (:incident_id, :occurred_at, :recorded_at, :kind, :actor,"
    " :summary, :data, :source_key)"
)
EVENT_TIMES = ("occurred_at", "recorded_at")
_EVENT_TIMES = EVENT_TIMES


# The events as one JSON parameter ``:rows`` (made by
# :func:`~incidentbot.incidents.rowsets.json_rows` with :data:`EVENT_TIMES`), in their order;
# also usable as a ``WITH`` clause of another statement.
PG_INSERT_EVENTS_SQL = (
    "INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind, actor, summary,"
    " data, source_key)"
    " SELECT incident_id, occurred_at, recorded_at, kind, actor, summary, data, source_key"
    " FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS (incident_id integer,"
    " occurred_at timestamptz, recorded_at timestamptz, kind varchar, actor varchar,"
    " summary text, data json, source_key varchar))"
    " WITH ORDINALITY AS r(incident_id, occurred_at, recorded_at, kind, actor, summary, data,"
    " source_key, n) ORDER BY r.n"  # r.n: the row's place in the array, which the ids follow
)
_PG_INSERT_EVENTS = text(PG_INSERT_EVENTS_SQL)
