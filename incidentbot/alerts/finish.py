"""A delivery's last writes, folded on PostgreSQL into the statement that writes its row.

Processing a notification ends with up to three writes that nothing later in the transaction
reads: the count of the alerts it only repeated (``received_count``, ``last_received_at``), the
group's incident and declare count when processing changed them, and the delivery's row with
its outcome (inserted, or updated when a new alert needed its id first). On PostgreSQL they are
one statement: the first two as data-modifying ``WITH`` clauses of the third, one round trip
where there were three. The caller's locks (the group's and each fingerprint's) are held
throughout, so deferring them to the end changes nothing another delivery can see, and a failure
anywhere still rolls the whole transaction back. SQLite (in-process, no round trips) writes
them one by one, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlmodel import Session

from incidentbot.alerts.models import ALERT_TABLE, AlertDelivery
from incidentbot.alerts.records import GroupRow

_DELIVERIES: Table = AlertDelivery.__table__  # type: ignore[attr-defined]
ALERT = ALERT_TABLE


@dataclass
class Deferred:
    """What processing left for the delivery's statement (PostgreSQL only): the repeated
    alerts' ids and copies, and the group if its incident or declare count changed."""

    counts: list[tuple[int, int]] = field(default_factory=list)
    group: GroupRow | None = None
    now: datetime | None = None  # the repeats' receipt


def write(
    session: Session,
    deferred: Deferred | None,
    delivery_id: int | None,
    values: dict[str, Any],
) -> int:
    """Write the delivery's row (``values``: all its columns when ``delivery_id`` is None, else
    its outcome) with what was ``deferred``; returns the delivery's id."""
    group = deferred.group if deferred is not None else None
    saves = group is not None and (group.incident_id, group.incidents_declared) != group._saved
    counts = deferred.counts if deferred is not None else []
    stmt = _statement(delivery_id is None, bool(counts), saves)
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
    if counts:
        assert deferred is not None
        ordered = sorted(counts)
        params.update(
            count_ids=[id_ for id_, _ in ordered], copies=[n for _, n in ordered], now=deferred.now
        )
    id_, counted = session.execute(stmt, params).one()
    if counts and counted != len(counts):  # the caller's locks keep them: stop, retry whole
        raise RuntimeError(f"{len(counts) - counted} of {len(counts)} stored alerts vanished")
    if saves:
        assert group is not None
        group._saved = (group.incident_id, group.incidents_declared)
    return int(id_)


@cache
def _statement(insert: bool, counts: bool, saves: bool) -> Any:
    """Built once per shape: the delivery's insert or outcome update, with the repeats' count
    and the group's save as ``WITH`` clauses (PostgreSQL runs every data-modifying ``WITH``
    clause, referenced or not). Plain SQL text: a Core ``UPDATE`` in a ``WITH`` would take the
    delivery's parameters that share its table's column names (``status``) as its own values."""
    clauses = []
    if saves:
        clauses.append(
            "saved_group AS (UPDATE alert_group SET incident_id = :incident_id,"
            " incidents_declared = :incidents_declared WHERE id = :group_id)"
        )
    if counts:
        clauses.append(
            "counted AS (UPDATE alert SET received_count = alert.received_count + c.copies,"
            " last_received_at = :now FROM unnest(CAST(:count_ids AS integer[]),"
            " CAST(:copies AS integer[])) AS c(id, copies) WHERE alert.id = c.id"
            " RETURNING alert.id)"
        )
    sql = ("WITH " + ", ".join(clauses) + " ") if clauses else ""
    if insert:
        sql += _INSERT
    else:
        sql += (
            "UPDATE alert_delivery SET outcome = :outcome, failed = :failed,"
            " processed_at = :processed_at WHERE id = :delivery_id"
        )
    counted = "(SELECT count(*) FROM counted)" if counts else "0"
    sql += f" RETURNING id, {counted} AS counted"
    types = [bindparam(name, type_=_DELIVERIES.c[name].type) for name in _INSERTED]
    if counts:
        types.append(bindparam("now", type_=ALERT.c.last_received_at.type))
    return text(sql).bindparams(*[b for b in types if f":{b.key}" in sql])


_INSERTED = (
    "received_at",
    "source",
    "remote",
    "receiver",
    "group_key",
    "status",
    "alert_count",
    "truncated_alerts",
    "payload",
    "processed_at",
    "outcome",
    "failed",
)
_INSERT = (
    "INSERT INTO alert_delivery (received_at, source, remote, receiver, group_key, status,"
    " alert_count, truncated_alerts, payload, processed_at, outcome, failed) VALUES"
    " (:received_at, :source, :remote, :receiver, :group_key, :status, :alert_count,"
    " :truncated_alerts, :payload, :processed_at, :outcome, :failed)"
)
