"""A page of incidents as people read it (Slack ``list``, the CLI ``incident list``).

One statement whatever the history, and the same statement with or without incidents. Each
configured status listed (not terminal, unless asked for) is a branch that reads at most a
page of its incidents off ``ix_incident_list (status, number, …)``, newest first, and the
branches are merged newest first. That index also holds the other columns a list line shows
(severity, title, channel, private), so a line is read off its index entry, with no lookup
of the incident's row (on SQLite a search of the table and the decoding of a wide record).
Each branch names its status, so the planner knows which one it reads: PostgreSQL's
statistics tell a status held by a few incidents (an index scan of that status) from one
held by nearly all. An incident may also be in a status no longer configured (renamed or
removed since): a last branch finds those statuses with a loose scan of
``ix_incident_status`` (one probe per status present) and reads the same way.

A single scan of the number index in search of open incidents would walk back past every
resolved one older than the open ones; reading the statuses present first and the page
after cost a second statement, which an empty database did not run.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple, overload

from sqlalchemy import Boolean, CursorResult, Integer, TextualSelect, text
from sqlmodel import Session

from incidentbot.config import Settings
from incidentbot.db import UTCDateTime


class Listed(NamedTuple):
    """One line of an incident list (Slack's): the columns it shows, no ORM instance."""

    number: int
    severity: str
    status: str
    title: str
    channel_id: str | None
    private: bool | None

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"


class Detailed(NamedTuple):
    """One line of the CLI's list: :class:`Listed`'s columns, then who commands the incident
    and when it was declared (``details=True``)."""

    number: int
    severity: str
    status: str
    title: str
    channel_id: str | None
    private: bool | None
    commander: str | None
    declared_at: datetime

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"


_LISTED = ("number", "severity", "status", "title", "channel_id", "private")
_DETAILS = ("commander", "declared_at")


@overload
def list_page(
    session: Session,
    settings: Settings,
    *,
    limit: int,
    before: int | None = None,
    include_terminal: bool = False,
    details: Literal[False] = False,
) -> list[Listed]: ...


@overload
def list_page(
    session: Session,
    settings: Settings,
    *,
    limit: int,
    before: int | None = None,
    include_terminal: bool = False,
    details: Literal[True],
) -> list[Detailed]: ...


def list_page(
    session: Session,
    settings: Settings,
    *,
    limit: int,
    before: int | None = None,
    include_terminal: bool = False,
    details: bool = False,
) -> list[Listed] | list[Detailed]:
    """Open incidents newest first (every incident if ``include_terminal``), at most
    ``limit``, numbered below ``before`` if given (the next page: keyset pagination). The
    same rows, order and keyset as :func:`~incidentbot.incidents.records.list_incidents`, read
    as tuples of the columns a list shows. Nothing counts the incidents beyond the page."""
    result = _execute(session, settings, limit, before, include_terminal, details)
    if details:
        return [Detailed(*row) for row in result.all()]
    with result:
        rows = result.cursor.fetchall()
    return [_listed(Listed, row) if row[5] is None else _private(row) for row in rows]


def list_rows(
    session: Session, settings: Settings, *, limit: int, before: int | None = None
) -> list[tuple[Any, ...]]:
    """:func:`list_page`'s open incidents as the driver reads them: tuples of
    :class:`Listed`'s fields in its order, for a renderer that reads them by position (Slack's
    list), without a :class:`Listed` made per row. ``private`` is only truthy for a private
    incident (SQLite gives 1), None for the others."""
    with _execute(session, settings, limit, before, False, False) as result:
        return result.cursor.fetchall()


def _execute(
    session: Session,
    settings: Settings,
    limit: int,
    before: int | None,
    include_terminal: bool,
    details: bool,
) -> CursorResult[Any]:
    configured = tuple(s.name for s in settings.statuses)
    listed = tuple(s.name for s in settings.statuses if include_terminal or not s.terminal)
    connection = session.connection()
    stmt = _statement(
        connection.dialect.name, listed, configured, int(limit), before is not None, details
    )
    # A page is read as the driver's own tuples: SQLAlchemy's rows cost a fifth of reading
    # it, and nothing in them needs converting but SQLite's 1 for a private incident (public
    # ones are NULL).
    return connection.execute(stmt, {} if before is None else {"before": before})


_STATUS_NAME = re.compile(r"[a-z][a-z_]*")  # as the settings allow (policy_models.Status)
_listed = tuple.__new__  # a Listed from a row of its six columns, without NamedTuple's checks


def _private(row: tuple[Any, ...]) -> Listed:
    return Listed(*row[:5], bool(row[5]))


# The statuses incidents are in that are not configured: each step of the recursion is one
# probe of the status index for the next status present.
_UNCONFIGURED = (
    "WITH RECURSIVE present(status) AS ("
    " SELECT min(status) FROM incident"
    " UNION ALL"
    " SELECT (SELECT min(i.status) FROM incident i WHERE i.status > present.status)"
    " FROM present WHERE present.status IS NOT NULL"
    "), other(status) AS (SELECT status FROM present"
    " WHERE status IS NOT NULL AND status NOT IN ({configured}))"
)


@lru_cache(maxsize=32)
def _statement(
    dialect: str,
    listed: tuple[str, ...],
    configured: tuple[str, ...],
    limit: int,
    keyset: bool,
    details: bool,
) -> TextualSelect:
    """The page's statement: the ``listed`` statuses of the ``configured`` ones, ``limit``
    rows and, if ``keyset``, numbers below the bound ``before``; built and typed once per
    shape. Its rows have the fields of :class:`Listed`, or of :class:`Detailed` if
    ``details``.

    The statuses and the limit are written into the statement, not bound: PostgreSQL then
    plans it once per connection (after psycopg has prepared it) and keeps the plan, where
    with bound statuses it planned every run again, as its statistics made the plan for an
    unknown status look costly. They come from the settings (names of ``[a-z_]``) and the
    code, never from a request; they are checked again here all the same.

    SQLite merges the branches, each read in index order, and stops at ``limit`` rows; its
    compound members take no LIMIT of their own. PostgreSQL's branches each take ``limit``
    at most. The unconfigured statuses' newest rows come from a ``LATERAL`` subquery on
    PostgreSQL, and from a correlated ``IN`` list of ids on SQLite (which has no ``LATERAL``)."""
    for name in configured:
        if not _STATUS_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a status name")
    # Only the checked names, constant names and the limit go into the text.
    names = _LISTED + _DETAILS if details else _LISTED
    picked = ", ".join(f"i.{n}" for n in names)
    n = int(limit)
    quoted = [f"'{status}'" for status in listed]

    def newest(table: str, status: str, *, limited: bool = True) -> str:
        """The rows of ``table`` in ``status`` (below ``before``), newest first."""
        below = f" AND {table}.number < :before" if keyset else ""
        order = f" ORDER BY {table}.number DESC LIMIT {n}" if limited else ""
        return f"{table}.status = {status}{below}{order}"

    if dialect == "postgresql":
        branches = [
            f"(SELECT {picked} FROM incident i WHERE {newest('i', status)})"  # noqa: S608
            for status in quoted
        ]
        # A status the planner knows nothing of might be held by half the incidents: it
        # would look for its newest by walking the number index back, past every incident
        # if few are in it. Asked for the order of the list's index, (status, number), with
        # the status as a range of one (an equality would make the status order moot), only
        # that index gives it without a sort.
        below = " AND i.number < :before" if keyset else ""
        branches.append(
            "(SELECT p.* FROM other CROSS JOIN LATERAL"  # noqa: S608
            f" (SELECT {picked} FROM incident i"
            f" WHERE i.status >= other.status AND i.status <= other.status{below}"
            f" ORDER BY i.status DESC, i.number DESC LIMIT {n}) p)"
        )
    else:
        branches = [
            f"SELECT {picked} FROM incident i"  # noqa: S608
            f" WHERE {newest('i', status, limited=False)}"
            for status in quoted
        ]
        branches.append(  # CROSS JOIN: SQLite keeps that join order (the statuses outside)
            f"SELECT {picked} FROM other CROSS JOIN incident i"  # noqa: S608
            f" WHERE i.id IN (SELECT j.id FROM incident j WHERE {newest('j', 'other.status')})"
        )
    known = ", ".join(f"'{status}'" for status in configured)
    compound = " UNION ALL ".join(branches)
    sql = f"{_UNCONFIGURED.format(configured=known)} {compound} ORDER BY number DESC LIMIT {n}"
    types: dict[str, Any] = {"number": Integer(), "private": Boolean()}
    if details:
        types["declared_at"] = UTCDateTime()
    return text(sql).columns(**types)
