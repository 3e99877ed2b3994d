"""Writing a notification's alert instances: one ``INSERT ... ON CONFLICT DO UPDATE`` for all
of them, sent the cheapest way on each back end. On PostgreSQL the rows are one JSON parameter
(:mod:`incidentbot.incidents.rowsets`: one statement text, converted once, prepared by the
server). On SQLite a batched ``INSERT`` on untyped columns, its values made as the columns
make them (each distinct time once: most rows share the delivery's time), where SQLAlchemy's
per-row type processing of five times and two JSON values was most of the statement's cost.
(Sending the rows as JSON to SQLite too was tried: SQLite's JSON functions run in the bot's
process and cost as much as they save.)

A stored instance the notification only repeats (nothing but its count and last receipt
change: Alertmanager's repeat interval, an HA peer's copy) is not proposed to the upsert: the
repeats are one ``UPDATE`` of their ids, which costs the database a fraction of an upsert's
row (no row to build and conflict on) and the driver one array of ids instead of 17 values an
alert."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from incidentbot.alerts.models import ALERT_TABLE, AlertDelivery
from incidentbot.incidents.rowsets import json_rows, untyped, written_as

ALERT = ALERT_TABLE

_INSERTED_FROM_ROW = (
    "delivery_id",
    "fingerprint",
    "starts_at",
    "ends_at",
    "status",
    "alertname",
    "labels",
    "annotations",
    "generator_url",
    "group_id",
    "rule",
    "severity",
    "service",
    "last_received_at",
    "resolved_received_at",
)
# What a notification changes on a stored instance: its count and last receipt, a resolve,
# and the routing of an instance not attached yet (the write sends the stored routing back
# for an attached one). Labels, first receipt and the delivery that brought it stay.
UPDATED = ("status", "ends_at", "resolved_received_at", "rule", "severity", "service")


@cache
def _sqlite_upsert() -> Any:
    """Built once (SQLAlchemy then reuses its compiled form; building ``excluded`` again for
    each notification costs more than the statement), on the untyped columns."""
    table = _UNTYPED
    stmt = sqlite_insert(table)
    set_: dict[str, Any] = {name: stmt.excluded[name] for name in UPDATED}
    set_["received_count"] = table.c.received_count + stmt.excluded.received_count
    set_["last_received_at"] = stmt.excluded.last_received_at
    return stmt.on_conflict_do_update(
        index_elements=[table.c.fingerprint, table.c.starts_at], set_=set_
    ).returning(table.c.id, table.c.fingerprint, table.c.starts_at)


_UNTYPED = untyped(ALERT)
_TIMES = (
    "starts_at",
    "ends_at",
    "last_received_at",
    "resolved_received_at",
    "first_received_at",
)


# PostgreSQL: the same upsert with the rows as one JSON parameter
# (:mod:`incidentbot.incidents.rowsets`), so the statement and its one parameter are the same
# whatever the number of alerts: the driver neither parses a new multi-row ``VALUES`` at every
# notification nor converts one array per column element by element.
_PG_UPSERT_SQL = (
    "INSERT INTO alert (delivery_id, fingerprint, starts_at, ends_at, status, alertname,"
    " labels, annotations, generator_url, group_id, rule, severity, service, last_received_at,"
    " resolved_received_at, first_received_at, received_count)"
    " SELECT delivery_id, fingerprint, starts_at, ends_at, status, alertname, labels,"
    " annotations, generator_url, group_id, rule, severity, service, last_received_at,"
    " resolved_received_at, first_received_at, received_count"
    " FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS (delivery_id integer,"
    " fingerprint varchar, starts_at timestamptz, ends_at timestamptz, status varchar,"
    " alertname varchar, labels json, annotations json, generator_url text, group_id integer,"
    " rule varchar, severity varchar, service varchar, last_received_at timestamptz,"
    " resolved_received_at timestamptz, first_received_at timestamptz, received_count integer))"
    " WITH ORDINALITY AS r(delivery_id, fingerprint, starts_at, ends_at, status, alertname,"
    " labels, annotations, generator_url, group_id, rule, severity, service, last_received_at,"
    " resolved_received_at, first_received_at, received_count, n) ORDER BY r.n"
    " ON CONFLICT (fingerprint, starts_at) DO UPDATE SET status = excluded.status,"
    " ends_at = excluded.ends_at, resolved_received_at = excluded.resolved_received_at,"
    " rule = excluded.rule, severity = excluded.severity, service = excluded.service,"
    " received_count = alert.received_count + excluded.received_count,"
    " last_received_at = excluded.last_received_at"
    " RETURNING id, fingerprint, starts_at"
)
_PG_UPSERT = text(_PG_UPSERT_SQL).columns(ALERT.c.id, ALERT.c.fingerprint, ALERT.c.starts_at)

# The delivery's row (its columns as parameters of their own names).
DELIVERY_COLUMNS = (
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
INSERT_DELIVERY_SQL = (
    "INSERT INTO alert_delivery (received_at, source, remote, receiver, group_key, status,"
    " alert_count, truncated_alerts, payload, processed_at, outcome, failed) VALUES"
    " (:received_at, :source, :remote, :receiver, :group_key, :status, :alert_count,"
    " :truncated_alerts, :payload, :processed_at, :outcome, :failed)"
)
_DELIVERIES = AlertDelivery.__table__  # type: ignore[attr-defined]
assert _PG_UPSERT_SQL.count(" SELECT delivery_id, fingerprint,") == 1
# The same upsert writing the delivery's row first: a new instance (no delivery_id) names it.
_PG_UPSERT_WITH_DELIVERY = (
    text(
        # constants only: no value is ever part of the text
        "WITH d AS ("  # noqa: S608
        + INSERT_DELIVERY_SQL
        + " RETURNING id) "
        + _PG_UPSERT_SQL.replace(
            " SELECT delivery_id, fingerprint,",
            " SELECT COALESCE(delivery_id, (SELECT id FROM d)), fingerprint,",
        )
        + ", (SELECT id FROM d)"
    )
    .bindparams(*[bindparam(n, type_=_DELIVERIES.c[n].type) for n in DELIVERY_COLUMNS])
    .columns(ALERT.c.id, ALERT.c.fingerprint, ALERT.c.starts_at)
)


# An instance's values, its copies, and whether it is stored: True if the notification
# changes more than its count and last receipt (a resolve, a new routing), "repeated" if not.
Item = tuple[dict[str, Any], int, bool | str]
REPEATED = "repeated"


def _proposed(items: list[Item], now: datetime) -> list[dict[str, Any]]:
    """The rows the upsert proposes. A stored instance keeps its labels, annotations, delivery
    and first receipt (not in the update): its proposed row need only be one that could be
    inserted, so its labels and annotations are not sent again."""
    rows = []
    for values, copies, existed in items:
        row = {name: values[name] for name in _INSERTED_FROM_ROW}
        if existed:
            row["labels"] = row["annotations"] = _NOT_SENT
        row["first_received_at"] = now
        row["received_count"] = copies
        rows.append(row)
    return rows


_NOT_SENT: dict[str, str] = {}


def write(
    session: Session,
    items: list[Item],
    now: datetime,
    counts: list[tuple[int, int]] | None = None,
    delivery: dict[str, Any] | None = None,
) -> dict[tuple[str, datetime], int]:
    """One upsert for the new and changed instances, one ``UPDATE`` per number of copies for
    the ones only repeated; returns their ids by (fingerprint, startsAt). With ``counts`` the
    repeats are not written here but listed there, as (id, copies), for the delivery's own
    statement to count (:mod:`incidentbot.alerts.finish`). With ``delivery`` (PostgreSQL: the
    delivery's row, not written yet), the upsert writes that row first, in the same statement,
    and the new instances (``delivery_id`` None) name it; its id is set in ``delivery``."""
    ids: dict[tuple[str, datetime], int] = {}
    repeated: dict[int, list[int]] = {}
    for values, copies, existed in items:
        if existed == REPEATED:
            ids[(values["fingerprint"], values["starts_at"])] = values["id"]
            if counts is not None:
                counts.append((values["id"], copies))
            else:
                repeated.setdefault(copies, []).append(values["id"])
    for copies, repeated_ids in repeated.items():
        _count(session, repeated_ids, copies, now)
    upserted = [item for item in items if item[2] != REPEATED]
    if upserted:
        ids.update(_upsert(session, upserted, now, delivery))
    return ids


def _count(session: Session, ids: list[int], copies: int, now: datetime) -> None:
    """The instances (stored, locked by the caller) were received ``copies`` times more."""
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {"copies": copies, "now": now, "ids": sorted(ids)}
    stmt = _PG_COUNT if dialect == "postgresql" else _COUNT
    found = session.execute(stmt, params).rowcount
    if found != len(ids):  # the caller's locks keep them; never deleted: stop, retry whole
        raise RuntimeError(f"{len(ids) - found} of {len(ids)} stored alerts vanished meanwhile")


_COUNT = (
    update(ALERT)
    .where(ALERT.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        received_count=ALERT.c.received_count + bindparam("copies"),
        last_received_at=bindparam("now", type_=ALERT.c.last_received_at.type),
    )
)
_PG_COUNT = (
    update(ALERT)
    .where(ALERT.c.id == text("ANY(CAST(:ids AS integer[]))"))
    .values(
        received_count=ALERT.c.received_count + bindparam("copies"),
        last_received_at=bindparam("now", type_=ALERT.c.last_received_at.type),
    )
)


def _upsert(
    session: Session,
    items: list[Item],
    now: datetime,
    delivery: dict[str, Any] | None = None,
) -> dict[tuple[str, datetime], int]:
    rows = _proposed(items, now)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        if delivery is not None:
            params = {**delivery, "rows": json_rows(rows, _TIMES)}
            written = session.execute(_PG_UPSERT_WITH_DELIVERY, params).all()
            delivery["id"] = written[0][3]
            return {(fp, starts): id_ for id_, fp, starts, _ in written}
        params = {"rows": json_rows(rows, _TIMES)}
        written = session.execute(_PG_UPSERT, params).all()
        return {(fp, starts): id_ for id_, fp, starts in written}
    # SQLite: the instances' keys are matched back on the stored text of their start.
    keys = [(row["fingerprint"], row["starts_at"]) for row in rows]
    written_as(rows, ALERT, _TIMES, ("labels", "annotations"), dialect)
    stored = {
        (row["fingerprint"], row["starts_at"]): key for row, key in zip(rows, keys, strict=True)
    }
    written = session.execute(_sqlite_upsert(), rows).all()
    return {stored[(fp, starts)]: id_ for id_, fp, starts in written}
