"""A delivery's locks and its group's row.

Deliveries of one group, and of groups sharing an alert, are serialised (see
:mod:`incidentbot.alerts.service`): on PostgreSQL by transaction-scoped advisory locks on the
group key and on each fingerprint, taken in one global order, so never a deadlock; on SQLite
the transaction already holds the database's write lock (``BEGIN IMMEDIATE``). The group is
made or brought up to date by one upsert on its key; on PostgreSQL the locks are taken by the
same statement, before it touches the group's row (one round trip where it was two), and the
same statement reads the group's incident and its latest snooze too (:func:`incident_row`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, Table, bindparam, column, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from incidentbot.alerts import snooze
from incidentbot.alerts.models import AlertGroup
from incidentbot.alerts.payload import Payload
from incidentbot.alerts.records import GroupRow
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text

_GROUPS: Table = AlertGroup.__table__  # type: ignore[attr-defined]
_INCIDENTS: Table = Incident.__table__  # type: ignore[attr-defined]
INCIDENT_COLUMNS = tuple(c.key for c in _INCIDENTS.columns)


def lock_and_upsert(
    session: Session, payload: Payload, key_hash: str, locks: list[str], now: datetime
) -> GroupRow:
    """Take the delivery's ``locks`` (group and alert keys), then make or update the group."""
    params: dict[str, Any] = {
        "key_hash": key_hash,
        "group_key": redact_text(payload.group_key),
        "receiver": payload.receiver[:200],
        "group_labels": payload.group_labels,
        "status": payload.status,
        "incidents_declared": 0,
        "first_received_at": now,
        "last_received_at": now,
    }
    incident = None
    if session.get_bind().dialect.name == "postgresql":
        params["ids"] = sorted({lock_id(k) for k in locks})
        params["group_labels"] = json.dumps(params["group_labels"])
        row = session.execute(_PG_LOCK_AND_UPSERT, params).one()
        id_, labels, incident_id, declared, snoozed = row[:5]
        if row[5] is not None:  # the incident's id: found in the statement's snapshot
            incident = dict(zip(INCIDENT_COLUMNS, row[5:], strict=True))
            snooze.read_with(session, id_, snoozed)  # its snooze, read by the statement too
    else:  # SQLite: this transaction already holds the write lock
        id_, labels, incident_id, declared = session.execute(_sqlite_upsert(), params).one()
    group = GroupRow(id_, key_hash, labels, incident_id, declared, (incident_id, declared))
    group.incident_row = incident
    return group


def incident_row(session: Session, group: GroupRow) -> dict[str, Any] | None:
    """The columns of the group's incident (None if it has none): on PostgreSQL as the group's
    statement read them, else (SQLite, where a statement costs no round trip; or an incident
    the group's statement could not see) read now, with Core.

    That statement's snapshot is taken before it waits for the delivery's locks, so an incident
    another delivery of the group declared meanwhile is not in it (its id is: the upsert sees
    the group's row as committed): that one is read now. Nothing else that holds the group's
    lock changes an incident's row."""
    if group.incident_id is None:
        return None
    held = group.incident_row
    if held is not None and held["id"] == group.incident_id:
        return held
    found = session.execute(_INCIDENT, {"id": group.incident_id}).first()
    return dict(zip(INCIDENT_COLUMNS, found, strict=True)) if found is not None else None


_INCIDENT = select(*_INCIDENTS.columns).where(_INCIDENTS.c.id == bindparam("id"))


def lock_id(key: str) -> int:
    digest = hashlib.sha256(f"incidentbot.alerts:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def save(session: Session, group: GroupRow) -> None:
    """The group's incident and declare count, if processing changed them."""
    if (group.incident_id, group.incidents_declared) != group._saved:
        params = {
            "group_id": group.id,
            "incident_id": group.incident_id,
            "incidents_declared": group.incidents_declared,
        }
        session.execute(_SAVE, params)
        group._saved = (group.incident_id, group.incidents_declared)


_SAVE = (
    _GROUPS.update()
    .where(_GROUPS.c.id == bindparam("group_id"))
    .values(
        {
            name: bindparam(name, type_=_GROUPS.c[name].type)
            for name in ("incident_id", "incidents_declared")
        }
    )
)
_RETURNED = (
    _GROUPS.c.id,
    _GROUPS.c.group_labels,
    _GROUPS.c.incident_id,
    _GROUPS.c.incidents_declared,
)


@cache
def _sqlite_upsert() -> Any:
    """Built once (see :func:`incidentbot.alerts.upserts._sqlite_upsert`)."""
    stmt = sqlite_insert(_GROUPS)
    return stmt.on_conflict_do_update(
        index_elements=[_GROUPS.c.key_hash],
        set_={"status": stmt.excluded.status, "last_received_at": stmt.excluded.last_received_at},
    ).returning(*_RETURNED)


# The locks are the one row the INSERT reads (an aggregate: every lock is held before the row
# exists), so they are taken before the upsert looks at the group's row; the function scan
# hands the ids over in array order (ascending): every transaction takes its locks in the same
# global order.
_PG_LOCK_AND_UPSERT = text(
    # constants only: no value is ever part of the text
    "WITH locked AS (SELECT count(pg_advisory_xact_lock(k)) AS n"  # noqa: S608
    " FROM unnest(CAST(:ids AS bigint[])) AS k),"
    " g AS (INSERT INTO alert_group (key_hash, group_key, receiver, group_labels, status,"
    " incidents_declared, first_received_at, last_received_at)"
    " SELECT :key_hash, :group_key, :receiver, CAST(:group_labels AS json), :status,"
    " :incidents_declared, :first_received_at, :last_received_at FROM locked"
    " ON CONFLICT (key_hash) DO UPDATE SET status = excluded.status,"
    " last_received_at = excluded.last_received_at"
    " RETURNING id, group_labels, incident_id, incidents_declared)"
    " SELECT g.id, g.group_labels, g.incident_id, g.incidents_declared,"
    " CASE WHEN i.id IS NOT NULL THEN ("
    + snooze.LAST_SNOOZE_PG
    + ") END, "
    + ", ".join(f"i.{name}" for name in INCIDENT_COLUMNS)
    + " FROM g LEFT JOIN incident AS i ON i.id = g.incident_id"
).columns(
    *_RETURNED,
    column("snooze", JSON()),
    *[column(f"incident_{c.key}", c.type) for c in _INCIDENTS.columns],
)
