"""Core reads of an incident's rows, one statement each on a connection, detached, without the
ORM's load: the incident, its pages, its active roles, whether an event is recorded. The ledger's
effects (a declare's fan-out) read these often; the statements are built once.
"""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection
from sqlmodel import select

from incidentbot.db import detached
from incidentbot.incidents.models import Incident, RoleAssignment, TimelineEvent
from incidentbot.paging.models import Page

_INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
_BY_ID = select(*_INCIDENTS.c).where(_INCIDENTS.c.id == bindparam("b_id"))
_EVENTS = TimelineEvent.__table__  # type: ignore[attr-defined]
_EVENT_BY_SOURCE = select(_EVENTS.c.id).where(_EVENTS.c.source_key == bindparam("b_key")).limit(1)


def incident_row(connection: Connection, incident_id: int | None) -> Incident | None:
    """The incident as stored, in one statement on ``connection`` (a session's, or one of its
    own): detached, without the ORM's load, for the ledger's effects, which read it often."""
    row = connection.execute(_BY_ID, {"b_id": incident_id}).mappings().first()
    return None if row is None else detached(Incident, row)


_PAGES = Page.__table__  # type: ignore[attr-defined]
_PAGES_OF = select(*_PAGES.c).where(_PAGES.c.incident_id == bindparam("b_id")).order_by(_PAGES.c.id)


def pages_on(connection: Connection, incident_id: int | None) -> list[Page]:
    """The incident's pages, oldest first (as ``paging.flows.pages_of``), in one statement on
    ``connection``: detached, without the ORM's load."""
    rows = connection.execute(_PAGES_OF, {"b_id": incident_id}).mappings()
    return [detached(Page, row) for row in rows]


_ROLES = RoleAssignment.__table__  # type: ignore[attr-defined]
_ACTIVE_ROLE_ROWS = (
    select(*_ROLES.c)
    .where(_ROLES.c.incident_id == bindparam("b_id"), _ROLES.c.ended_at.is_(None))
    .order_by(_ROLES.c.started_at, _ROLES.c.id)
)


def active_roles_on(connection: Connection, incident_id: int | None) -> list[RoleAssignment]:
    """:func:`~incidentbot.incidents.records.active_roles` in one statement on ``connection``:
    detached, no ORM load."""
    rows = connection.execute(_ACTIVE_ROLE_ROWS, {"b_id": incident_id}).mappings()
    return [detached(RoleAssignment, row) for row in rows]


def has_event_on(connection: Connection, source_key: str) -> bool:
    """:func:`~incidentbot.incidents.records.has_event` in one statement on ``connection``,
    without the ORM."""
    return connection.execute(_EVENT_BY_SOURCE, {"b_key": source_key}).first() is not None
