"""Declaring an incident: the next INC number, the incident, its commander, its first events.

Written with Core statements and no unit-of-work flush (declaring is on the path of a Slack
command's acknowledgement); :mod:`incidentbot.incidents.service` re-exports :func:`declare`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import configure_mappers
from sqlmodel import Session

from incidentbot import policy
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.db import detached
from incidentbot.errors import DomainError
from incidentbot.incidents import declare_statement
from incidentbot.incidents.models import Counter, Incident, RoleAssignment
from incidentbot.incidents.records import (
    _check_past,
    _clean_actor,
    _stamp,
    event_row,
    insert_events,
)
from incidentbot.ledger import folded
from incidentbot.ledger.redact import redact_text

MAX_TITLE = 200

_INCIDENT = Incident.__table__  # type: ignore[attr-defined]
_MAPPER = Incident.__mapper__  # type: ignore[attr-defined]
_COLUMNS = tuple(c.key for c in _INCIDENT.columns if c.key != "id")
# SQLite: a key that opened an incident before inserts nothing (no read of the key first).
_INSERT_INCIDENT = (
    sqlite_insert(_INCIDENT)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(_INCIDENT.c.id)
)
_INSERT_ROLE = insert(RoleAssignment.__table__)  # type: ignore[attr-defined]
_BY_KEY = select(_INCIDENT.c.id).where(_INCIDENT.c.idempotency_key == bindparam("key"))
INCIDENT_SEQUENCE = "incident_number"  # PostgreSQL (migration 0021)
_TAKE_NUMBER = text("UPDATE counter SET value = value + 1 WHERE name = 'incident' RETURNING value")
_GIVE_BACK = text("UPDATE counter SET value = value - 1 WHERE name = 'incident'")


def _next_number(session: Session) -> int:
    # Taken after every check of the declare's input. On PostgreSQL from a sequence, which no
    # transaction locks, so concurrent declares run side by side, by the declare's one
    # statement (declare_statement); a declare that then fails at the database (a lost
    # connection, a crash, a racing duplicate key) leaves its number unused. On SQLite (here)
    # from the counter row, under the write lock every writer takes anyway: a failed declare
    # gives its number back.
    value = session.connection().execute(_TAKE_NUMBER).scalar_one_or_none()
    if value is None:
        session.add(Counter(name="incident", value=1))
        session.flush()
        return 1
    return int(value)


def _existing(session: Session, key: str | None) -> Incident | None:
    found = session.connection().execute(_BY_KEY, {"key": key}).first()
    return None if found is None else session.get_one(Incident, found[0])


def _clean_title(title: str) -> str:
    # Masked before anything uses it: the title names the channel and is announced.
    cleaned = " ".join(redact_text(str(title)).split())
    if not cleaned:
        raise DomainError("the title is empty: say in a few words what is wrong")
    if len(cleaned) > MAX_TITLE:
        raise DomainError(f"the title is {len(cleaned)} characters long: at most {MAX_TITLE}")
    return cleaned


def declare(
    session: Session,
    settings: Settings,
    *,
    title: str,
    severity: str,
    actor: str,
    description: str | None = None,
    fields: dict[str, str] | None = None,
    commander: str | None = None,
    impact_started_at: datetime | None = None,
    detected_at: datetime | None = None,
    idempotency_key: str | None = None,
    private: bool = False,
    now: datetime | None = None,
) -> Incident:
    """Open an incident with the next INC number. A repeated ``idempotency_key`` returns the
    incident it already opened instead of a second one. A ``private`` incident gets a private
    channel and stays out of the digest and public reports."""
    incident = declare_claimed(
        session,
        settings,
        None,
        title=title,
        severity=severity,
        actor=actor,
        description=description,
        fields=fields,
        commander=commander,
        impact_started_at=impact_started_at,
        detected_at=detected_at,
        idempotency_key=idempotency_key,
        private=private,
        now=now,
    )
    assert incident is not None  # nothing to claim: never refused as a replay
    return incident


def declare_claimed(
    session: Session,
    settings: Settings,
    claim: str | None,
    *,
    title: str,
    severity: str,
    actor: str,
    description: str | None = None,
    fields: dict[str, str] | None = None,
    commander: str | None = None,
    impact_started_at: datetime | None = None,
    detected_at: datetime | None = None,
    idempotency_key: str | None = None,
    private: bool = False,
    now: datetime | None = None,
    runs: folded.Folded | None = None,
) -> Incident | None:
    """:func:`declare`, with the Slack request keyed ``claim`` (see :mod:`incidentbot.inbound`)
    claimed in the same statement on PostgreSQL (:mod:`.declare_statement`). None: that key was
    claimed before (a replay, a retry), and nothing was written. On SQLite ``claim`` must be
    None: the request is claimed before, by its own statement in the same transaction.

    ``runs``: the runs the declare queues (keys after the incident's ref), written for a new
    incident only, on PostgreSQL by that statement too, on SQLite by two statements of their
    own (:func:`folded.start`): ``runs.started`` says they were (else the caller starts them,
    and finds those of a repeated declare)."""
    now = now or utcnow()
    postgres = session.get_bind().dialect.name == "postgresql"
    try:
        clean_title = _clean_title(title)
        sev = policy.severity(settings, severity)
        clean_fields = policy.check_fields(settings, fields or {}, declaring=True)
        actor = _clean_actor(actor, "the declarer")
        commander = _clean_actor(commander, "the commander") if commander else actor
        impact = (
            _check_past("impact_started", impact_started_at, now) if impact_started_at else None
        )
        detected = _check_past("detected", detected_at, now) if detected_at else None
    except Exception:
        # On SQLite a repeated key is the incident it opened, whatever the input now.
        if idempotency_key and not postgres:
            existing = _existing(session, idempotency_key)
            if existing is not None:
                return existing
        raise

    # The incident's columns, every one (a new incident leaves the later ones empty): it joins
    # the session built from them as the ORM builds a loaded row (db.detached), not through
    # the model's constructor, which sets each column through its instrumentation.
    values: dict[str, Any] = dict.fromkeys(_COLUMNS)
    values.update(
        number=0,  # taken as it is written
        title=clean_title,
        description=redact_text(description or "").strip() or None,
        severity=sev.name,
        status=settings.statuses[0].name,
        fields=clean_fields,
        commander=commander,
        declared_by=actor,
        idempotency_key=idempotency_key,
        private=True if private else None,
        created_at=now,
        updated_at=now,
        declared_at=now,
        impact_started_at=impact,
        detected_at=detected,
    )
    data: dict[str, Any] = {"title": clean_title, "severity": sev.name, "fields": clean_fields}
    if description:
        data["description"] = values["description"]
    # Its first events: the declared one's summary starts with its INC number (see below).
    head, rest = "Declared INC-", f" ({sev.name}): {clean_title}"  # INC-: Incident.ref
    events = [event_row(0, "incident.declared", actor, rest, now=now, data=data) | {"head": head}]
    for name, when in (("impact_started", impact), ("detected", detected)):
        if when is not None:
            events.append(
                event_row(
                    0,
                    "milestone.set",
                    actor,
                    f"{name.replace('_', ' ').capitalize()} at {_stamp(when)}",
                    now=now,
                    data={"milestone": name, "at": when.isoformat(), "previous": None},
                )
            )
    role = {"role": "commander", "user": commander, "assigned_by": actor, "started_at": now}
    events.append(
        event_row(
            0,
            "role.assigned",
            actor,
            f"{commander} is commander",
            now=now,
            data={"role": "commander", "user": commander, "previous": None},
        )
    )
    if postgres:
        return _write_in_one(session, values, role, events, claim, runs)
    assert claim is None, "on SQLite the request is claimed by its own statement"
    # Four Core statements (the number, the incident, its commander, its first events) and no
    # unit-of-work flush; the incident then joins the session as if read, so later changes in
    # this transaction are UPDATEs. Then its runs, if given (two more, see folded.start).
    values["number"] = _next_number(session)
    conn = session.connection()
    new_id = conn.execute(_INSERT_INCIDENT, values).scalar_one_or_none()
    if new_id is None:  # its key opened an incident before: that one, its number given back
        conn.execute(_GIVE_BACK)
        existing = _existing(session, idempotency_key)
        assert existing is not None
        return existing
    incident = _joined(session, values, new_id)
    conn.execute(_INSERT_ROLE, role | {"incident_id": incident.id})
    for row in events:
        row["incident_id"] = incident.id
        if row.pop("head", None) is not None:
            row["summary"] = f"Declared {incident.ref}{row['summary']}"
    insert_events(session, events)
    if runs is not None:
        folded.start(session, runs, incident.ref, incident.id)
    return incident


def _write_in_one(
    session: Session,
    values: dict[str, Any],
    role: dict[str, Any],
    events: list[dict[str, Any]],
    claim: str | None,
    runs: folded.Folded | None,
) -> Incident | None:
    for row in events:
        row.pop("incident_id")
        row.setdefault("head", None)
    conn = session.connection()
    written = {name: values[name] for name in declare_statement.COLUMNS}
    done = declare_statement.run(conn, written, role, events, claim=claim, runs=runs)
    if not done.claimed:
        return None
    if done.existing is not None:
        return session.get_one(Incident, done.existing)
    assert done.id is not None and done.number is not None
    values["number"] = done.number
    incident = _joined(session, values, done.id)
    if runs is not None:
        folded.record(session, runs, done.runs, incident.ref, incident.id)
    return incident


def _joined(session: Session, values: dict[str, Any], incident_id: int) -> Incident:
    # As written: every column's value is in ``values`` (no attribute left to load).
    values["id"] = incident_id
    if not _MAPPER.configured:  # as the model's constructor would on its first call
        configure_mappers()
    incident = detached(Incident, values)
    session.add(incident)
    return incident
