"""Ingesting an Alertmanager notification: store it, record each alert, declare or attach.

One transaction per notification: the delivery (the redacted payload as received), its alerts
(read in one query, written in one upsert: :mod:`incidentbot.alerts.records`), the group (one
upsert), the group's incident declared or found, the timeline events and the declare's side
effects. Alertmanager is answered after that commit. When processing fails, the delivery alone
is stored in a second transaction, marked failed, so nothing an alert sent is lost.

Deliveries of one group, and of groups sharing an alert, are serialised: on PostgreSQL by
transaction-scoped advisory locks on the group key and on each fingerprint (taken in one global
order, so never a deadlock); on SQLite every write transaction already holds the database's
write lock (``BEGIN IMMEDIATE``). So a storm, an Alertmanager HA pair delivering the same
notification twice, or a retry racing the original never declare a second incident, and the
declare's idempotency key (group key + how many incidents the group declared) makes the declare
itself safe to repeat. Processing is idempotent: a delivery that failed half-way is simply
processed again when Alertmanager retries it or sends the group again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, select

from incidentbot import db, policy
from incidentbot.alerts import finish, groups, records
from incidentbot.alerts.declare import OnAlerts, OnDeclare, Outcome, declare_group
from incidentbot.alerts.models import (
    ALERT_TABLE,
    FIRING,
    RESOLVED,
    AlertDelivery,
)
from incidentbot.alerts.payload import Payload, parse
from incidentbot.alerts.records import AlertRow, GroupRow, Routed
from incidentbot.alerts.snooze import not_snoozed, snoozed_until
from incidentbot.alerts.timeline import (
    attach,
    group_attached,
    record_resolved,
    suggest_runbooks,
)
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident
from incidentbot.ledger.redact import redact_text

log = logging.getLogger(__name__)


class IngestFailed(Exception):
    """The delivery was stored but processing it failed; Alertmanager should retry."""

    def __init__(self, delivery_id: int, message: str):
        super().__init__(message)
        self.delivery_id = delivery_id


def _go_on() -> None:
    """No pause between phases."""


def group_hash(group_key: str) -> str:
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


def ingest(
    engine: Engine,
    settings: Settings,
    data: Any,
    *,
    on_declare: OnDeclare | None = None,
    on_alerts: OnAlerts | None = None,
    remote: str | None = None,
    pause: Callable[[], None] | None = None,
) -> Outcome:
    """Validate, store, then process one decoded webhook body.

    Raises :class:`~incidentbot.alerts.payload.PayloadError` (nothing stored) for a body that is
    not an Alertmanager payload, and :class:`IngestFailed` (delivery stored, marked failed) when
    processing fails. ``pause`` is asked at the boundaries between the ingest's phases (before
    the payload's walk, before each transaction), never inside a transaction: the web route's
    waits for the Slack answers being sent (:func:`incidentbot.priority.yielding`).
    """
    pause = pause or _go_on
    pause()
    payload, stored = parse(data)
    pause()
    received = utcnow()
    delivery = {
        "received_at": received,
        "source": "alertmanager",
        "remote": (remote or None) and remote[:64],
        "receiver": payload.receiver[:200],
        "group_key": redact_text(payload.group_key),
        "status": payload.status,
        "alert_count": len(payload.alerts),
        "truncated_alerts": payload.truncated_alerts,
        "payload": stored,
        "processed_at": None,
        "outcome": None,
        "failed": False,
    }
    try:
        with db.transaction(engine) as s:
            row = DeliveryRow(s, delivery)
            outcome = process(s, settings, payload, row, on_declare=on_declare, on_alerts=on_alerts)
            done = {
                "outcome": outcome.summary(),
                "failed": outcome.error is not None,
                "processed_at": utcnow(),
            }
            if row.deferred is not None:  # PostgreSQL: one statement with what processing left
                written = {**delivery, **done} if row.id is None else done
                delivery_id = finish.write(s, row.deferred, row.id, written)
            elif row.id is None:  # nothing needed it: written once, as processed
                delivery_id = s.execute(_INSERT_DELIVERY, {**delivery, **done}).scalar_one()
            else:
                delivery_id = row.id
                s.execute(_DELIVERY_DONE, {"delivery_id": delivery_id, **done})
            outcome.delivery_id = delivery_id
    except Exception as exc:
        message = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])[:1000]
        log.exception("alert delivery: processing failed")
        pause()  # rolled back: nothing held
        failed_id = _store_failed(engine, delivery, message)
        raise IngestFailed(failed_id, message) from exc
    log.info(
        "alert delivery %s (%s): %s",
        delivery_id,
        payload.receiver or "no receiver",
        outcome.summary(),
        extra={"delivery_id": delivery_id, "incident": outcome.incident},
    )
    return outcome


_DELIVERIES: Table = AlertDelivery.__table__  # type: ignore[attr-defined]
_INSERT_DELIVERY = _DELIVERIES.insert().returning(_DELIVERIES.c.id)
_DELIVERY_DONE = (
    _DELIVERIES.update()
    .where(_DELIVERIES.c.id == bindparam("delivery_id"))
    .values(
        {
            name: bindparam(name, type_=_DELIVERIES.c[name].type)
            for name in ("outcome", "failed", "processed_at")
        }
    )
)


class DeliveryRow:
    """The delivery's row, inserted when processing first needs its id (a new alert names the
    delivery that brought it); a delivery that needs none (a repeat, a resolve) is inserted
    once, with its outcome, after processing: one statement instead of an insert and an
    update. Either way in the notification's transaction. On PostgreSQL the repeats' count and
    the group's save wait for that statement too (:mod:`incidentbot.alerts.finish`)."""

    def __init__(self, session: Session, values: dict[str, Any]):
        self.id: int | None = None
        self._session = session
        self._values = values
        postgresql = session.get_bind().dialect.name == "postgresql"
        self.deferred = finish.Deferred() if postgresql else None

    def unwritten(self) -> dict[str, Any] | None:
        """The row's values while it is not written (for a statement that writes it)."""
        return dict(self._values) if self.id is None else None

    def __call__(self) -> int:
        if self.id is None:
            self.id = int(self._session.execute(_INSERT_DELIVERY, self._values).scalar_one())
        return self.id


def _store_failed(engine: Engine, delivery: dict[str, Any], message: str) -> int:
    """Keep a delivery whose processing failed (and rolled back): Alertmanager retries it,
    and people can see what came in and why it was not processed."""
    failed = {**delivery, "outcome": f"processing failed: {message}", "failed": True}
    with db.transaction(engine) as s:
        return int(s.execute(_INSERT_DELIVERY, failed).scalar_one())


def process(
    session: Session,
    settings: Settings,
    payload: Payload,
    delivery: int | Callable[[], int],
    *,
    on_declare: OnDeclare | None = None,
    on_alerts: OnAlerts | None = None,
) -> Outcome:
    """Record the payload's alerts and attach them to the group's incident (declaring one for
    new firing alerts that a rule lets declare). Idempotent; call inside a transaction.
    ``delivery``: the delivery's id, or what gives it when first needed (:class:`DeliveryRow`;
    the outcome's ``delivery_id`` is then 0 until the caller sets it)."""
    now = utcnow()
    key_hash = group_hash(payload.group_key)
    fingerprints = sorted({a.fingerprint for a in payload.alerts})
    locks = [f"group:{key_hash}"] + [f"alert:{fp}" for fp in fingerprints]
    delivery_id = delivery if isinstance(delivery, int) else 0
    out = Outcome(
        delivery_id=delivery_id, alerts=len(payload.alerts), truncated=payload.truncated_alerts
    )

    deferred = delivery.deferred if isinstance(delivery, DeliveryRow) else None
    group = groups.lock_and_upsert(session, payload, key_hash, locks, now)
    if group.incident_id is None:  # never on an incident: it cannot have been snoozed
        not_snoozed(session, group.id)
    counts = fold = None
    if deferred is not None:
        assert isinstance(delivery, DeliveryRow)
        deferred.now, counts, fold = now, deferred.counts, delivery.unwritten()
    # A group on no incident asks which incident holds its alerts (below): on PostgreSQL
    # read with the stored alerts, in their statement.
    dialect = session.get_bind().dialect.name
    holding = None
    if group.incident_id is None and fingerprints and dialect == "postgresql":
        holding = _holding(dialect, tuple(sorted(policy.terminal_statuses(settings))))
    recorded = records.record(
        session, settings, payload, group.id, delivery, now, counts, fold, holding
    )
    if fold is not None and "id" in fold:  # written by the alerts' upsert
        assert isinstance(delivery, DeliveryRow)
        delivery.id = int(fold["id"])
    rows, resolved_now = recorded.rows, recorded.resolved_now
    out.new, out.repeats, out.resolved = recorded.new, recorded.repeats, recorded.resolved
    out.unmatched = sum(1 for _, _, r in rows if not r.matched)
    actor = settings.alerts.actor

    incident = _open_incident(session, settings, group)
    if incident is None:
        if recorded.holding_read:
            held = recorded.holding
            incident = session.get(Incident, held) if held is not None else None
        else:
            incident = _incident_holding(session, settings, fingerprints)
        if incident is not None:
            group.incident_id = incident.id
            group_attached(session, incident, group, payload, actor=actor, now=now)
    if incident is None:
        eligible = [
            (row, alert, r)
            for row, alert, r in rows
            if row.status == FIRING and row.incident_id is None and r.declares
        ]
        names = settings.severity_names()
        severe = [
            item
            for item in eligible
            if item[2].severe_enough(settings.alerts, names, settings.default_severity)
        ]
        if eligible and not severe:
            out.problems.append(
                f"{len(eligible)} alert(s) below their rule's declare_min_severity: "
                "recorded, not declared"
            )
        candidates = [item for item in severe if item[2].declares_at(item[0].starts_at, now)]
        if severe and not candidates:
            out.problems.append(f"{len(severe)} alert(s) wait for their rule's declare_after")
        asleep = snoozed_until(session, group.id, now) if candidates else None
        if asleep is not None:  # snoozed for its last incident: no new one until it ends
            out.problems.append(f"group snoozed until {asleep:%Y-%m-%d %H:%M} UTC: not declared")
            candidates = []
        if candidates:
            incident = declare_group(
                session, settings, payload, group, rows, candidates, out, on_declare, now=now
            )
            out.declared = incident is not None
    attached_now: set[int | None] = set()
    if incident is not None:
        out.incident = incident.ref
        fresh = _unique([(row, alert, r) for row, alert, r in rows if row.incident_id is None])
        out.attached = attach(
            session, settings, incident, fresh, actor=actor, now=now, later=deferred
        )
        attached_now = {row.id for row, _, _ in fresh}
        declared_now = out.declared
        suggest_runbooks(
            session,
            incident,
            fresh,
            actor=actor,
            now=now,
            declared_now=declared_now,
            later=deferred,
        )
    # Exactly once per alert instance: when it resolves while attached, or when it is
    # attached already resolved (both can happen in one delivery, hence the set).
    ended: dict[int, list[AlertRow]] = {}
    for row, _alert, _r in _unique(rows):
        newly = row.id in resolved_now or row.id in attached_now
        if newly and row.incident_id is not None and row.status == RESOLVED:
            ended.setdefault(row.incident_id, []).append(row)
    for incident_id, resolved_rows in ended.items():  # one batch per incident, not per alert
        held = incident if incident is not None and incident.id == incident_id else None
        held = held or session.get(Incident, incident_id)
        if held is not None:
            record_resolved(session, resolved_rows, held, actor=actor, now=now, later=deferred)
    if deferred is not None:  # saved by the delivery's statement
        deferred.group = group
    else:
        groups.save(session, group)
    resolved_here = (
        any(row.id in resolved_now and row.incident_id == incident.id for row, _, _ in rows)
        if incident is not None
        else False
    )
    if incident is not None and on_alerts is not None and (attached_now or resolved_here):
        on_alerts(session, settings, incident, group)  # the group's message in the channel
    return out


def _unique(rows: list[Routed]) -> list[Routed]:
    """Each row once (a payload may list the same alert twice)."""
    seen: set[int | None] = set()
    out = []
    for item in rows:
        if item[0].id not in seen:
            seen.add(item[0].id)
            out.append(item)
    return out


def _open_incident(session: Session, settings: Settings, group: GroupRow) -> Incident | None:
    """The group's incident unless it has ended. Its row is read with Core, on PostgreSQL by
    the group's own statement (:func:`groups.incident_row`), and made the session's instance
    as it was read, without the ORM's query."""
    if group.incident_id is None:
        return None
    held = session.identity_map.get(session.identity_key(Incident, group.incident_id))
    if held is None:
        values = groups.incident_row(session, group)
        if values is None:
            return None
        held = Incident(**values)
        make_transient_to_detached(held)  # as if loaded: no change pending
        session.add(held)
    assert isinstance(held, Incident)
    if held.status in policy.terminal_statuses(settings):
        return None
    return held


def _incident_holding(
    session: Session, settings: Settings, fingerprints: list[str]
) -> Incident | None:
    """The newest open incident that already holds one of these alerts (dedupe across groups:
    the same alert routed to the bot by two Alertmanager routes opens one incident). Its id is
    looked up with Core; the incident is loaded only when there is one."""
    if not fingerprints:
        return None
    dialect = session.get_bind().dialect.name
    stmt = _holding(dialect, tuple(sorted(policy.terminal_statuses(settings))))
    params: dict[str, Any] = {"fps": fingerprints}
    if dialect == "postgresql":
        params = {"fps": json.dumps(fingerprints)}
    found = session.execute(stmt, params).scalar()
    return session.get(Incident, found) if found is not None else None


_INCIDENTS: Table = Incident.__table__  # type: ignore[attr-defined]
_ALERTS = ALERT_TABLE


@cache
def _holding(dialect: str, terminal: tuple[str, ...]) -> Any:
    """Built once per back end and set of terminal statuses. On PostgreSQL the fingerprints are
    one JSON parameter: one statement text whatever their number."""
    if dialect == "postgresql":
        listed = text("SELECT json_array_elements_text(CAST(:fps AS json))")
        wanted = _ALERTS.c.fingerprint.in_(listed)
    else:
        wanted = _ALERTS.c.fingerprint.in_(bindparam("fps", expanding=True))
    return (
        select(_INCIDENTS.c.id)
        .join(_ALERTS, _ALERTS.c.incident_id == _INCIDENTS.c.id)
        .where(wanted, _INCIDENTS.c.status.not_in(terminal))
        .order_by(_INCIDENTS.c.number.desc())
        .limit(1)
    )
