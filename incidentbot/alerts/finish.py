"""A delivery's last writes, folded on PostgreSQL into the statement that writes its row.

Processing a notification writes several things that nothing later in its transaction reads
back from the database: the count of the alerts it only repeated (``received_count``,
``last_received_at``), the alerts it attaches to an incident (``incident_id``), the timeline
entries of its alerts (firing, resolved, the runbooks suggested to an incident it declared),
the group's incident and declare count when processing changed them, and the delivery's row
with its outcome (inserted, or updated when new alerts needed its id first: their upsert
then wrote it, :func:`incidentbot.alerts.upserts.write`). On PostgreSQL
they are one statement: the others as data-modifying ``WITH`` clauses of the delivery's write,
one round trip where there were up to six. The alerts' count and attach are one ``UPDATE``
(a row is changed at most once per statement). The timeline entries keep the order they were
made in (their ids follow it), and any entry written directly (a milestone moved) first writes
the ones waiting (:meth:`Deferred.flush`), so the timeline's order is what it was.

The caller's locks (the group's and each fingerprint's) are held throughout, so deferring these
writes to the end changes nothing another delivery can see, and a failure anywhere still rolls
the whole transaction back. SQLite (in-process, no round trips) writes them one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlmodel import Session

from incidentbot.alerts.models import ALERT_TABLE, AlertDelivery
from incidentbot.alerts.records import AlertRow, GroupRow
from incidentbot.alerts.upserts import DELIVERY_COLUMNS, INSERT_DELIVERY_SQL
from incidentbot.incidents.event_batches import EVENT_TIMES, PG_INSERT_EVENTS_SQL
from incidentbot.incidents.records import insert_events
from incidentbot.incidents.rowsets import json_rows

_DELIVERIES: Table = AlertDelivery.__table__  # type: ignore[attr-defined]
ALERT = ALERT_TABLE


@dataclass
class Deferred:
    """What processing left for the delivery's statement (PostgreSQL only): the repeated
    alerts' ids and copies, the alerts attached and to what, the timeline entries, and the
    group if its incident or declare count changed."""

    counts: list[tuple[int, int]] = field(default_factory=list)
    attached: list[int] = field(default_factory=list)
    incident_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    group: GroupRow | None = None
    now: datetime | None = None  # the repeats' receipt

    def attach(self, rows: list[AlertRow], incident_id: int) -> None:
        """The rows join ``incident_id`` (and lose any declare error): now in memory, in the
        database with the delivery."""
        assert self.incident_id in (None, incident_id), "one incident per delivery"
        for row in rows:
            row.incident_id = incident_id
            row.error = None
        self.incident_id = incident_id
        self.attached.extend(row.id for row in rows)

    def flush(self, session: Session) -> None:
        """Write the waiting timeline entries now (before one written directly)."""
        insert_events(session, self.events)
        self.events = []


def write(
    session: Session,
    deferred: Deferred | None,
    delivery_id: int | None,
    values: dict[str, Any],
) -> int:
    """Write the delivery's row (``values``: all its columns when ``delivery_id`` is None, else
    its outcome) with what was ``deferred``; returns the delivery's id."""
    deferred = deferred or Deferred()
    group = deferred.group
    saves = group is not None and (group.incident_id, group.incidents_declared) != group._saved
    copies: dict[int, int] = dict.fromkeys(deferred.attached, 0)
    for id_, n in deferred.counts:
        copies[id_] = copies.get(id_, 0) + n
    attached = set(deferred.attached)
    stmt = _statement(delivery_id is None, bool(copies), saves, bool(deferred.events))
    params = dict(values)
    if delivery_id is not None:
        params["delivery_id"] = delivery_id
    if saves:
        assert group is not None
        params.update(
            group_id=group.id,
            incident_id=group.incident_id,
            incidents_declared=group.incidents_declared,
        )
    if copies:
        ids = sorted(copies)
        params.update(
            alert_ids=ids,
            copies=[copies[id_] for id_ in ids],
            attach=[id_ in attached for id_ in ids],
            attach_to=deferred.incident_id,
            now=deferred.now,
        )
    if deferred.events:
        params["rows"] = json_rows(deferred.events, EVENT_TIMES)
    id_, touched = session.execute(stmt, params).one()
    if touched != len(copies):  # the caller's locks keep them: stop, retry whole
        raise RuntimeError(f"{len(copies) - touched} of {len(copies)} stored alerts vanished")
    if saves:
        assert group is not None
        group._saved = (group.incident_id, group.incidents_declared)
    deferred.events = []
    return int(id_)


@cache
def _statement(insert: bool, alerts: bool, saves: bool, events: bool) -> Any:
    """Built once per shape: the delivery's insert or outcome update, with the alerts' count
    and attach, the timeline entries and the group's save as ``WITH`` clauses (PostgreSQL runs
    every data-modifying ``WITH`` clause, referenced or not). Plain SQL text: a Core ``UPDATE``
    in a ``WITH`` would take the delivery's parameters that share its table's column names
    (``status``) as its own values."""
    clauses = []
    if saves:
        clauses.append(
            "saved_group AS (UPDATE alert_group SET incident_id = :incident_id,"
            " incidents_declared = :incidents_declared WHERE id = :group_id)"
        )
    if alerts:
        clauses.append(_TOUCHED)
    if events:
        clauses.append(f"events AS ({PG_INSERT_EVENTS_SQL})")
    sql = ("WITH " + ", ".join(clauses) + " ") if clauses else ""
    sql += INSERT_DELIVERY_SQL if insert else _DONE
    touched = "(SELECT count(*) FROM touched)" if alerts else "0"
    sql += f" RETURNING id, {touched} AS touched"
    types = [bindparam(name, type_=_DELIVERIES.c[name].type) for name in DELIVERY_COLUMNS]
    if alerts:
        types.append(bindparam("now", type_=ALERT.c.last_received_at.type))
    return text(sql).bindparams(*[b for b in types if f":{b.key}" in sql])


# The alerts repeated (copies > 0) and attached (attach), each changed once.
_TOUCHED = (
    "touched AS (UPDATE alert SET received_count = alert.received_count + c.copies,"
    " last_received_at = CASE WHEN c.copies > 0 THEN :now ELSE alert.last_received_at END,"
    " incident_id = CASE WHEN c.attach THEN CAST(:attach_to AS integer)"
    " ELSE alert.incident_id END,"
    " error = CASE WHEN c.attach THEN NULL ELSE alert.error END"
    " FROM unnest(CAST(:alert_ids AS integer[]), CAST(:copies AS integer[]),"
    " CAST(:attach AS boolean[])) AS c(id, copies, attach) WHERE alert.id = c.id"
    " RETURNING alert.id)"
)
_DONE = (
    "UPDATE alert_delivery SET outcome = :outcome, failed = :failed,"
    " processed_at = :processed_at WHERE id = :delivery_id"
)
