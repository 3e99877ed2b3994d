"""A notification's alerts in the database: one read and one upsert, no ORM instance per alert.

The caller holds the locks of :mod:`incidentbot.alerts.service` (the group's and each
fingerprint's), so what :func:`record` reads cannot change before it writes. It reads the
notification's known alert instances in one query, works out in Python what each one becomes
(new, repeated, resolved), and writes them all with one ``INSERT ... ON CONFLICT DO UPDATE``
(:mod:`incidentbot.alerts.upserts`). The rows it hands on are plain :class:`AlertRow` values:
attaching them to an incident, or noting why a declare was refused, is one ``UPDATE`` for all
of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Text, bindparam, cast, select, text, true, tuple_, update
from sqlmodel import Session

from incidentbot.alerts import routing, upserts
from incidentbot.alerts.models import ALERT_TABLE, FIRING, RESOLVED
from incidentbot.alerts.payload import Alert, Payload
from incidentbot.config import Settings
from incidentbot.incidents.rowsets import json_rows

ALERT = ALERT_TABLE

# What the rest of processing reads of an alert row (the columns of ``alert`` it needs).
_READ = (
    "id",
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
    "incident_id",
    "resolved_received_at",
    "error",
    "delivery_id",
)


@dataclass(slots=True, eq=False)
class AlertRow:
    """One alert instance as stored (the ``alert`` table's columns that processing uses).

    A notification that lists the same alert twice gets the same object twice, so a change
    made through one (attached to an incident) is seen through the other."""

    id: int
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str | None
    group_id: int
    rule: str | None
    severity: str | None
    service: str | None
    incident_id: int | None
    resolved_received_at: datetime | None
    error: str | None
    delivery_id: int  # the delivery that brought it first (0 until that delivery's row exists)
    # The masking rules' generation its labels, annotations and generator URL were masked
    # under in this process (they are this notification's payload's, which its walk masked);
    # None when the stored ones differ (masked when stored, perhaps under older rules).
    masked_under: int | None = None


Routed = tuple[AlertRow, Alert, routing.Route]


@dataclass(slots=True, eq=False)
class GroupRow:
    """The group as processing uses it (no ORM instance); ``groups.save`` writes what
    processing changed (the incident it declared or joined)."""

    id: int
    key_hash: str
    group_labels: dict[str, str]
    incident_id: int | None
    incidents_declared: int
    _saved: tuple[int | None, int] = (None, 0)
    # Its incident's columns, when the statement that read the group read them too.
    incident_row: dict[str, Any] | None = None


@dataclass
class Recorded:
    """What :func:`record` did: the rows in the payload's order (one per listed alert), the
    ids of the rows this notification resolved, and the counts for the delivery's outcome."""

    rows: list[Routed]
    resolved_now: set[int]
    new: int = 0
    repeats: int = 0
    resolved: int = 0
    # What the ``holding`` query read with the alerts (if it was given): an incident's id.
    holding: int | None = None
    holding_read: bool = False


@dataclass
class _Pending:
    """One alert instance while the notification is read: the values it will be written with."""

    values: dict[str, Any]
    copies: int
    existed: bool
    stored: dict[str, Any] | None  # as read, if it existed
    resolves: bool  # this notification resolves it (it was firing, or is new, and a copy says so)
    # Its labels, annotations and URL are the ones this notification's payload masked: a new
    # instance, or a stored one whose stored values are those (masked the same way).
    masked: bool


def record(
    session: Session,
    settings: Settings,
    payload: Payload,
    group_id: int,
    delivery: int | Callable[[], int],
    now: datetime,
    counts: list[tuple[int, int]] | None = None,
    fold: dict[str, Any] | None = None,
    holding: Any = None,
) -> Recorded:
    """Insert new alert instances, count repeats, apply resolves: one read, one write.

    A resolved instance stays resolved (a late, out-of-order "firing" copy does not revive
    it); routing follows the rules in force until an instance is attached to an incident.
    With ``counts``, the instances only repeated are listed there to be counted by the
    delivery's statement (:func:`incidentbot.alerts.upserts.write`). With ``fold`` (the
    delivery's row, not written yet: PostgreSQL), a notification with new instances writes
    that row in the upsert's statement, and its id is set in ``fold``. With ``holding`` (a
    query of one id taking the payload's fingerprints as ``fps``), PostgreSQL reads its answer
    with the stored instances, in their statement (see :func:`_existing`)."""
    existing, held = _existing(session, payload, holding)
    pending: dict[tuple[str, datetime], _Pending] = {}
    routes: list[routing.Route] = []
    by_labels: dict[tuple[tuple[str, str], ...], routing.Route] = {}
    out = Recorded(rows=[], resolved_now=set(), holding=held[0], holding_read=held[1])
    for alert in payload.alerts:
        # The same label set routes the same way: a notification often repeats one.
        label_key = tuple(alert.labels.items())
        r = by_labels.get(label_key)
        if r is None:
            r = by_labels[label_key] = routing.route(settings.alerts, alert.labels)
        routes.append(r)
        key = (alert.fingerprint, alert.starts_at)
        item = pending.get(key)
        if item is None:
            row = existing.get(key)
            sent = row is None or _as_sent(row, alert)  # (and the row's JSON values read)
            item = pending[key] = _Pending(
                values=_values(alert, row, group_id, now),
                copies=0,
                existed=row is not None,
                stored=row,
                resolves=False,
                masked=sent,
            )
            if row is None:
                out.new += 1
        item.copies += 1
        values = item.values
        if alert.status == RESOLVED and values["status"] == FIRING:
            values.update(status=RESOLVED, ends_at=alert.ends_at, resolved_received_at=now)
            item.resolves = True
            out.resolved += 1
        elif item.existed and item.copies == 1:
            out.repeats += 1
        if values["incident_id"] is None:
            rule = r.rule
            values["rule"] = rule.name if rule else None
            values["severity"] = (rule.severity or settings.default_severity) if rule else None
            values["service"] = rule.service if rule else None
    new = [item for item in pending.values() if not item.existed]
    folded = fold if new and fold is not None and not isinstance(delivery, int) else None
    if new and folded is None:
        delivery_id = delivery if isinstance(delivery, int) else delivery()
        for item in new:
            item.values["delivery_id"] = delivery_id
    for item in new if folded is not None else ():
        item.values["delivery_id"] = None  # the row the upsert writes first
    items = [(item.values, item.copies, _written(item)) for item in pending.values()]
    ids = upserts.write(session, items, now, counts, folded)
    if folded is not None:
        for item in new:
            item.values["delivery_id"] = folded["id"]
    rows: dict[tuple[str, datetime], AlertRow] = {}
    generation = payload.masked_under
    for key, item in pending.items():
        values = {name: item.values[name] for name in _READ if name != "id"}
        masked_under = generation if item.masked else None
        row = rows[key] = AlertRow(id=ids[key], masked_under=masked_under, **values)
        if item.resolves:
            out.resolved_now.add(row.id)
    out.rows = [
        (rows[(alert.fingerprint, alert.starts_at)], alert, r)
        for alert, r in zip(payload.alerts, routes, strict=True)
    ]
    return out


def _written(item: _Pending) -> bool | str:
    """Whether the instance is stored, and if so whether this notification changes more than
    its count and last receipt (:data:`upserts.REPEATED` if not)."""
    stored = item.stored
    if stored is None:
        return False
    values = item.values
    if all(values[name] == stored[name] for name in upserts.UPDATED):
        return upserts.REPEATED
    return True


def _existing(
    session: Session, payload: Payload, holding: Any = None
) -> tuple[dict[tuple[str, datetime], dict[str, Any]], tuple[Any, bool]]:
    """The payload's alert instances that are already stored, by (fingerprint, startsAt); and
    on PostgreSQL, with ``holding``, what that query answers, read in the same statement (one
    round trip where there were two): (its answer, True), else (None, False)."""
    if not payload.alerts:
        return {}, (None, False)
    fingerprints = sorted({a.fingerprint for a in payload.alerts})
    held: tuple[Any, bool] = (None, False)
    if session.get_bind().dialect.name == "postgresql":
        # The keys as one JSON parameter: one statement text whatever their number (an
        # expanding ``IN`` is a new text, parsed again, for every count).
        keys = [{"fingerprint": a.fingerprint, "starts_at": a.starts_at} for a in payload.alerts]
        params = {"rows": json_rows(keys, ("starts_at",))}
        if holding is None:
            rows = session.execute(_PG_EXISTING, params).mappings().all()
        else:
            params["fps"] = json.dumps(fingerprints)
            rows = session.execute(_with_holding(holding), params).mappings().all()
            held = (rows[0]["holding"] if rows else None, True)
    else:
        starts = sorted({a.starts_at for a in payload.alerts})
        params = {"fps": fingerprints, "starts": starts}
        rows = session.execute(_SQLITE_EXISTING, params).mappings().all()
    found = {}
    for row in rows:
        if row["id"] is not None:  # (with ``holding``: its row when nothing is stored)
            values = {name: row[name] for name in _READ}
            found[(values["fingerprint"], values["starts_at"])] = values
    return found, held


@cache
def _with_holding(holding: Any) -> Any:
    """The stored instances' read, each row with ``holding``'s answer (one row of NULLs and
    the answer when none is stored). Built once per ``holding`` statement."""
    stored = _PG_EXISTING.subquery("a")
    answer = select(holding.scalar_subquery().label("holding")).subquery("h")
    joined = answer.outerjoin(stored, true())
    return select(*stored.c, answer.c.holding).select_from(joined)


# The stored labels and annotations as their JSON text (see :func:`_as_sent`).
_AS_READ = [
    cast(ALERT.c[name], Text).label(name) if name in ("labels", "annotations") else ALERT.c[name]
    for name in _READ
]
# Built once (not a new statement, and its cache key, for every notification).
_SQLITE_EXISTING = select(*_AS_READ).where(
    ALERT.c.fingerprint.in_(bindparam("fps", expanding=True)),
    ALERT.c.starts_at.in_(bindparam("starts", expanding=True)),
)
_PG_EXISTING = select(*_AS_READ).where(
    tuple_(ALERT.c.fingerprint, ALERT.c.starts_at).in_(
        text(
            "SELECT fingerprint, starts_at FROM json_to_recordset(CAST(:rows AS json))"
            " AS k(fingerprint varchar, starts_at timestamptz)"
        )
    )
)


def _as_sent(row: dict[str, Any], alert: Alert) -> bool:
    """Whether a stored instance's labels, annotations and URL are the alert's as this payload
    has them (masked by its walk): equal values need no masking again.

    The stored labels and annotations are read as the JSON text they are stored as (see
    :func:`_existing`) and compared as text with the payload's own (both written by
    ``json.dumps``: equal texts are equal values); only a text that differs is parsed. The row
    gets them as values either way."""
    same = True
    for name, sent in (("labels", alert.labels), ("annotations", alert.annotations)):
        stored = row[name]
        if isinstance(stored, str):
            if stored == json.dumps(sent):
                row[name] = sent
                continue
            stored = row[name] = json.loads(stored)
        same = same and stored == sent
    return same and row["generator_url"] == (alert.generator_url or None)


def _values(
    alert: Alert, row: dict[str, Any] | None, group_id: int, now: datetime
) -> dict[str, Any]:
    """The row to write: a stored one as it is, or a new one from the alert's first copy
    (firing: the copies that follow apply a resolve, the first one included)."""
    if row is not None:
        return {**row, "last_received_at": now}
    return {
        "id": None,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "ends_at": None,
        "status": FIRING,
        "alertname": alert.alertname[:200],
        "labels": alert.labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url or None,
        "group_id": group_id,
        "rule": None,
        "severity": None,
        "service": None,
        "incident_id": None,
        "last_received_at": now,
        "resolved_received_at": None,
        "error": None,
        "delivery_id": 0,  # set once the notification has new alerts: its row is written then
    }


def attach(session: Session, rows: Iterable[AlertRow], incident_id: int) -> None:
    """The rows join ``incident_id`` (and lose any declare error): one statement."""
    rows = list(rows)
    for row in rows:
        row.incident_id = incident_id
        row.error = None
    _update(session, [row.id for row in rows], incident_id=incident_id, error=None)


def refused(session: Session, rows: Iterable[AlertRow], reason: str) -> None:
    """Why the rows' declare was refused, kept on each until they get an incident."""
    rows = list(rows)
    for row in rows:
        row.error = reason
    _update(session, [row.id for row in rows], error=reason)


def _update(session: Session, ids: list[int], **values: Any) -> None:
    if ids:
        stmt = _updates(tuple(sorted(values)))
        session.execute(stmt, {"ids": sorted(set(ids)), **values})


@cache
def _updates(columns: tuple[str, ...]) -> Any:
    """Built once per set of columns (not a new statement and cache key per delivery)."""
    values = {name: bindparam(name, type_=ALERT.c[name].type) for name in columns}
    return update(ALERT).where(ALERT.c.id.in_(bindparam("ids", expanding=True))).values(values)
