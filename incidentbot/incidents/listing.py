"""A page of incidents as people read it (Slack ``list``, the CLI ``incident list``).

One statement whatever the history, and the same statement with or without incidents: the
statuses incidents are in, found by a loose scan of ``ix_incident_status`` (one probe per
status present), then for each status listed (not terminal, unless asked for) at most a page
of rows off ``ix_incident_status_number (status, number)``, newest first; the newest of those
are the page. A single scan of the number index in search of open incidents would walk back
past every resolved one older than the open ones; reading the statuses first and the page
after cost a second statement, which an empty database did not run.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Integer, TextClause, text
from sqlmodel import Session

from incidentbot import policy
from incidentbot.config import Settings
from incidentbot.db import UTCDateTime


class Listed(NamedTuple):
    """One line of an incident list: the columns a list shows, no ORM instance.
    ``commander`` and ``declared_at`` are read only when asked for (``details``)."""

    number: int
    severity: str
    status: str
    title: str
    channel_id: str | None
    private: bool | None
    commander: str | None = None
    declared_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"


_LISTED = ("number", "severity", "status", "title", "channel_id", "private")
_DETAILS = ("commander", "declared_at")


def list_page(
    session: Session,
    settings: Settings,
    *,
    limit: int,
    before: int | None = None,
    include_terminal: bool = False,
    details: bool = False,
) -> list[Listed]:
    """Open incidents newest first (every incident if ``include_terminal``), at most
    ``limit``, numbered below ``before`` if given (the next page: keyset pagination). The
    same rows, order and keyset as :func:`~incidentbot.incidents.records.list_incidents`, read
    as tuples of the columns a list shows. Nothing counts the incidents beyond the page."""
    terminal = () if include_terminal else tuple(policy.terminal_statuses(settings))
    connection = session.connection()
    stmt = _statement(connection.dialect.name, len(terminal), before is not None, details)
    params: dict[str, Any] = {f"t{i}": status for i, status in enumerate(terminal)}
    params["n"] = limit
    if before is not None:
        params["before"] = before
    rows = connection.execute(stmt, params).all()
    return [_listed(Listed, row) for row in rows]  # eight columns each (see _statement)


_listed = tuple.__new__  # a Listed from a row of all its fields, without NamedTuple's checks


# The statuses present, in order: each step one probe of the status index for the next one.
_PRESENT = (
    "WITH RECURSIVE present(status) AS ("
    " SELECT min(status) FROM incident"
    " UNION ALL"
    " SELECT (SELECT min(i.status) FROM incident i WHERE i.status > present.status)"
    " FROM present WHERE present.status IS NOT NULL"
    ")"
)


@lru_cache(maxsize=32)
def _statement(dialect: str, terminal: int, keyset: bool, details: bool) -> TextClause:
    """The page's statement for ``terminal`` statuses left out (bound as ``t0``, ``t1``…),
    ``n`` rows and, if ``keyset``, numbers below ``before``; built and typed once per shape.

    PostgreSQL reads each listed status's newest rows in a ``LATERAL`` subquery. SQLite has
    no ``LATERAL``: there each listed status's newest ids come from a correlated ``IN`` list
    (run once per status, off the covering index) and the rows by their primary key."""
    # Only the constant names above and parameters' names go into the text; values are bound.
    names = _LISTED + _DETAILS if details else _LISTED

    def columns(table: str, *, padded: bool = False) -> str:
        picked = ", ".join(f"{table}.{n}" for n in names)
        return (
            picked if details or not padded else f"{picked}, NULL AS commander, NULL AS declared_at"
        )

    listed = "SELECT status FROM present WHERE status IS NOT NULL"
    if terminal:
        listed += f" AND status NOT IN ({', '.join(f':t{i}' for i in range(terminal))})"
    below = " AND j.number < :before" if keyset else ""
    newest = f"j.status = listed.status{below} ORDER BY j.number DESC LIMIT :n"
    if dialect == "postgresql":
        rows = (
            f"SELECT {columns('p', padded=True)} FROM listed CROSS JOIN LATERAL"  # noqa: S608
            f" (SELECT {columns('j')} FROM incident j WHERE {newest}) p"
            " ORDER BY p.number DESC LIMIT :n"
        )
    else:
        rows = (
            f"SELECT {columns('i', padded=True)} FROM listed CROSS JOIN incident i"  # noqa: S608
            f" WHERE i.id IN (SELECT j.id FROM incident j WHERE {newest})"
            " ORDER BY i.number DESC LIMIT :n"
        )  # CROSS JOIN: SQLite keeps that join order (the listed statuses outside)
    types: dict[str, Any] = {"number": Integer(), "private": Boolean()}
    if details:
        types["declared_at"] = UTCDateTime()
    return text(f"{_PRESENT}, listed(status) AS ({listed}) {rows}").columns(**types)
