"""A delivery's locks and its group's row.

Deliveries of one group, and of groups sharing an alert, are serialised (see
:mod:`incidentbot.alerts.service`): on PostgreSQL by transaction-scoped advisory locks on the
group key and on each fingerprint, taken in one global order, so never a deadlock; on SQLite
the transaction already holds the database's write lock (``BEGIN IMMEDIATE``). The group is
made or brought up to date by one upsert on its key; on PostgreSQL the locks are taken by the
same statement, before it touches the group's row (one round trip where it was two).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from incidentbot.alerts.models import AlertGroup
from incidentbot.alerts.payload import Payload
from incidentbot.alerts.records import GroupRow
from incidentbot.ledger.redact import redact_text

_GROUPS: Table = AlertGroup.__table__  # type: ignore[attr-defined]


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
    if session.get_bind().dialect.name == "postgresql":
        params["ids"] = sorted({lock_id(k) for k in locks})
        params["group_labels"] = json.dumps(params["group_labels"])
        stmt = _PG_LOCK_AND_UPSERT
    else:  # SQLite: this transaction already holds the write lock
        stmt = _sqlite_upsert()
    id_, labels, incident_id, declared = session.execute(stmt, params).one()
    return GroupRow(id_, key_hash, labels, incident_id, declared, (incident_id, declared))


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
    "WITH locked AS (SELECT count(pg_advisory_xact_lock(k)) AS n"
    " FROM unnest(CAST(:ids AS bigint[])) AS k)"
    " INSERT INTO alert_group (key_hash, group_key, receiver, group_labels, status,"
    " incidents_declared, first_received_at, last_received_at)"
    " SELECT :key_hash, :group_key, :receiver, CAST(:group_labels AS json), :status,"
    " :incidents_declared, :first_received_at, :last_received_at FROM locked"
    " ON CONFLICT (key_hash) DO UPDATE SET status = excluded.status,"
    " last_received_at = excluded.last_received_at"
    " RETURNING id, group_labels, incident_id, incidents_declared"
).columns(*_RETURNED)
