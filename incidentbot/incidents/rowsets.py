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
from typing import Any


def json_rows(rows: Iterable[Mapping[str, Any]], timestamps: Sequence[str]) -> str:
    """The rows as one JSON array, the ``timestamps`` columns as ISO 8601 in UTC."""
    out = []
    for row in rows:
        item = dict(row)
        for name in timestamps:
            item[name] = _utc(item[name])
        out.append(item)
    return json.dumps(out)


def _utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
    return value.astimezone(UTC).isoformat()
