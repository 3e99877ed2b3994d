"""Many rows in one PostgreSQL statement with one parameter: a JSON array of objects, read by
``ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS (column type, ...)) WITH ORDINALITY AS
r(column, ..., n)`` and inserted ``ORDER BY r.n`` (the order given, which the ids follow).

A multi-row ``VALUES`` is a new statement text for every number of rows (the driver parses each
and cannot prepare it), an ``executemany`` is one round of the driver's pipeline per row, and
one array per column (``unnest``) has the driver convert every element in Python. One JSON
text, made by the standard library's C encoder, is one statement text whatever the number of
rows, one parameter for the driver to pass on, and one round trip; the server decodes it.

Values are written as SQLAlchemy's column types would write them: timestamps aware (a naive
one is refused, as :class:`~incidentbot.db.UTCDateTime` refuses it), sent in UTC; JSON columns
take the value's own JSON (``json.dumps``, as SQLAlchemy's ``JSON`` type does by default).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import NullType


def json_rows(rows: Iterable[Mapping[str, Any]], timestamps: Sequence[str]) -> str:
    """The rows as one JSON array, the ``timestamps`` columns as ISO 8601 in UTC (each distinct
    time made once: a batch's rows mostly share their times)."""
    out = []
    made: dict[datetime, str] = {}
    for row in rows:
        item = dict(row)
        for name in timestamps:
            value = item[name]
            if value is not None:
                text = made.get(value)
                if text is None:
                    text = made[value] = _utc(value)
                item[name] = text
        out.append(item)
    return json.dumps(out)


def _utc(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
    return value.astimezone(UTC).isoformat()


# -- SQLite ----------------------------------------------------------------------------------


def untyped(table: Table) -> Table:
    """``table``'s columns with no type processing (but its integer key), for rows made by
    :func:`written_as`:
    SQLAlchemy then binds each value as it is instead of running each column's processors
    (the time columns' two, the JSON columns' serializer) on every value of every row."""
    metadata = MetaData()
    columns = [
        Column(c.name, c.type if c.primary_key else NullType(), primary_key=c.primary_key)
        for c in table.columns
    ]
    return Table(table.name, metadata, *columns)


def written_as(
    rows: list[dict[str, Any]], table: Table, times: Sequence[str], jsons: Sequence[str],
    dialect: Dialect,
) -> list[dict[str, Any]]:  # fmt: skip
    """The rows (changed in place) with their ``times`` as ``table``'s time columns (all of one
    type) write them on ``dialect`` (a naive time refused), each distinct time made once, and
    their ``jsons`` as the JSON text SQLAlchemy's ``JSON`` type writes (``json.dumps``)."""
    write = _time_writer(table, times[0], dialect) if times else None
    made: dict[datetime, Any] = {}
    for row in rows:
        for name in times:
            value = row[name]
            if value is not None:
                text = made.get(value)
                if text is None:
                    assert write is not None
                    text = made[value] = write(value)
                row[name] = text
        for name in jsons:
            row[name] = json.dumps(row[name])
    return rows


@cache
def _time_writer(table: Table, column: str, dialect: Dialect) -> Any:
    return table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
