"""Reading incidents and writing their timeline: what every incident module builds on.

The timeline is append-only (the database refuses UPDATE and DELETE on it); :func:`record` is
the one way events are written, always in the transaction of the change they describe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, or_, text, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from incidentbot import inbound, policy
from incidentbot.config import Settings
from incidentbot.durations import ensure_utc
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import event_batches
from incidentbot.incidents.models import Counter, Incident, RoleAssignment, TimelineEvent
from incidentbot.ledger.redact import redact_strings, redact_text, rules_generation

_REF = re.compile(r"^\s*#?(?:inc-?)?(\d+)\s*$", re.IGNORECASE)


# -- reading -----------------------------------------------------------------------------------


def parse_ref(ref: str | int) -> int:
    """``INC-12``, ``inc12``, ``#12`` and ``12`` all name incident number 12."""
    match = _REF.match(str(ref))
    if not match:
        raise DomainError(f"{ref!r} is not an incident reference: use INC-<number>, e.g. INC-12")
    return int(match.group(1))


# Built once: building an ORM select and its cache key cost more than running it (these run on
# nearly every command's path).
_BY_NUMBER = select(Incident).where(Incident.number == bindparam("number"))
_BY_NUMBER_FOR_UPDATE = _BY_NUMBER.with_for_update()
_BY_CHANNEL = select(Incident).where(Incident.channel_id == bindparam("channel"))
_LATEST = (
    select(TimelineEvent)
    .where(TimelineEvent.incident_id == bindparam("incident"))
    .order_by(col(TimelineEvent.occurred_at).desc(), col(TimelineEvent.id).desc())
    .limit(bindparam("rows"))
)
_ACTIVE_ROLES = (
    select(RoleAssignment)
    .where(RoleAssignment.incident_id == bindparam("incident"))
    .where(col(RoleAssignment.ended_at).is_(None))
    .order_by(col(RoleAssignment.started_at), col(RoleAssignment.id))
)


def get(session: Session, ref: str | int, *, for_update: bool = False) -> Incident:
    number = parse_ref(ref)
    claim = inbound.pending_claim(session)  # a change typed in Slack, on PostgreSQL
    if claim is not None:
        return _get_claiming(session, number, claim, for_update)
    stmt = _BY_NUMBER_FOR_UPDATE if for_update else _BY_NUMBER
    incident = session.exec(stmt, params={"number": number}).first()
    if incident is None:
        raise NotFound(f"no incident INC-{number}")
    return incident


@cache
def _claiming(for_update: bool) -> Any:
    # The incident's row locked in a subquery: FOR UPDATE cannot apply to the nullable side of
    # an outer join, and the claim's row must come back whether or not the incident exists.
    found = select(Incident).where(col(Incident.number) == bindparam("number"))
    if for_update:
        found = found.with_for_update(of=Incident)
    lateral = found.subquery("found").lateral()
    claim = inbound.claim_cte()
    # The claim's key too: a row whose one entity is missing would not come back as a row.
    return select(aliased(Incident, lateral), claim.c.key).select_from(
        claim.outerjoin(lateral, true())
    )


def _get_claiming(session: Session, number: int, claim: str, for_update: bool) -> Incident:
    """The incident, read by the statement that claims the Slack request changing it (see
    :func:`incidentbot.inbound.pending_claim`): one row if the claim is new (the incident, or
    None), none if the request was claimed before (a replay, a retry: :class:`inbound.Taken`)."""
    row = session.execute(_claiming(for_update), {"inbound_key": claim, "number": number}).first()
    inbound.claimed_by_caller(session, row is not None)
    assert row is not None
    if row[0] is None:
        raise NotFound(f"no incident INC-{number}")
    return row[0]


def get_by_channel(session: Session, channel_id: str) -> Incident | None:
    return session.exec(_BY_CHANNEL, params={"channel": channel_id}).first()


def list_incidents(
    session: Session,
    settings: Settings,
    *,
    include_terminal: bool = False,
    limit: int | None = None,
    before: int | None = None,
) -> list[Incident]:
    """Newest first, as ORM instances (the impact sampler, tests). ``limit`` bounds the page;
    ``before`` (an incident number) continues after the last one shown: keyset pagination on
    the unique index of ``number``, which walks back past every terminal incident newer than
    the page's last. What people read (Slack ``list``, the CLI) uses
    :func:`~incidentbot.incidents.listing.list_page`."""
    stmt = select(Incident).order_by(col(Incident.number).desc())
    if not include_terminal:
        stmt = stmt.where(col(Incident.status).not_in(policy.terminal_statuses(settings)))
    if before is not None:
        stmt = stmt.where(col(Incident.number) < before)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt))


def timeline(session: Session, incident: Incident) -> list[TimelineEvent]:
    """The whole timeline, oldest first (postmortems, exports; requests use :func:`latest`)."""
    stmt = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(col(TimelineEvent.occurred_at), col(TimelineEvent.id))
    )
    return list(session.exec(stmt))


def latest(
    session: Session,
    incident: Incident,
    limit: int,
    *,
    before: tuple[datetime, int] | None = None,
) -> tuple[list[TimelineEvent], bool]:
    """The ``limit`` latest events (oldest first) and whether older ones exist. ``before`` is
    the (occurred_at, id) of the oldest event already shown, to page further back. Reads at
    most ``limit + 1`` rows off the end of ``ix_timeline_incident_order``."""
    if before is None:
        rows = list(session.exec(_LATEST, params={"incident": incident.id, "rows": limit + 1}))
        return rows[:limit][::-1], len(rows) > limit
    at, event_id = before
    stmt = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .where(
            or_(
                col(TimelineEvent.occurred_at) < at,
                and_(col(TimelineEvent.occurred_at) == at, col(TimelineEvent.id) < event_id),
            )
        )
    )
    stmt = stmt.order_by(col(TimelineEvent.occurred_at).desc(), col(TimelineEvent.id).desc())
    rows = list(session.exec(stmt.limit(limit + 1)))
    return rows[:limit][::-1], len(rows) > limit


def has_event(session: Session, source_key: str) -> bool:
    """Whether an event from this source (a pinned message, a webhook) is already recorded."""
    stmt = select(TimelineEvent.id).where(TimelineEvent.source_key == source_key)
    return session.exec(stmt).first() is not None


def active_roles(session: Session, incident: Incident) -> list[RoleAssignment]:
    return list(session.exec(_ACTIVE_ROLES, params={"incident": incident.id}))


# -- writing -----------------------------------------------------------------------------------


def next_in_sequence(session: Session, name: str) -> int:
    """The next value of the counter ``name`` (1 first), taken in the caller's transaction.

    Constant cost whatever the history: one indexed row. Two transactions taking the same
    counter serialise on its row; the first use inserts the row, and a racing first use
    (PostgreSQL) loses on the primary key, rolls back to its savepoint and increments."""
    for _ in range(2):
        value = session.execute(
            text("UPDATE counter SET value = value + 1 WHERE name = :name RETURNING value"),
            {"name": name},
        ).scalar_one_or_none()
        if value is not None:
            return int(value)
        try:
            with session.begin_nested():
                session.add(Counter(name=name, value=1))
            return 1
        except IntegrityError:
            continue
    raise RuntimeError(f"counter {name!r} could not be taken")  # pragma: no cover


def refresh_counter(incident: Incident | int) -> str:
    """The name of the counter that numbers an incident's header and digest refreshes."""
    return f"refresh:{_id(incident)}"


def record(
    session: Session,
    incident: Incident | int,
    kind: str,
    actor: str,
    summary: str,
    *,
    now: datetime,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    source_key: str | None = None,
) -> TimelineEvent:
    """Append one timeline event (the only way events are written). ``incident`` may be the
    incident or its id. Secrets in the summary and the data's text are masked here, so none
    reaches the timeline (nor the postmortem built from it) whoever wrote the event."""
    event = TimelineEvent(
        **event_row(
            incident,
            kind,
            actor,
            summary,
            now=now,
            occurred_at=occurred_at,
            data=data,
            source_key=source_key,
        )
    )
    session.add(event)
    return event


def event_row(
    incident: Incident | int,
    kind: str,
    actor: str,
    summary: str,
    *,
    now: datetime,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    source_key: str | None = None,
) -> dict[str, Any]:
    """One timeline event's column values, masked as :func:`record` masks them (for
    :func:`insert_events`, when no caller needs the event's instance)."""
    return {
        "incident_id": _id(incident),
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "kind": kind,
        "actor": actor,
        "summary": redact_text(summary),
        "data": redact_strings(data or {}),
        "source_key": source_key,
    }


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append events built by :func:`event_row` in one statement, in the order given (their
    ids, which order events recorded at the same time, follow it): see
    :mod:`incidentbot.incidents.event_batches`."""
    if rows:
        event_batches.write(session.connection(), rows)


@dataclass(frozen=True, slots=True)
class Masked:
    """A value its caller has masked already, whole and as it will be written, under the
    rules of ``generation`` (:func:`~incidentbot.ledger.redact.rules_generation`): an event's
    summary, or a value inside its data. :func:`record_many` writes it as it is while those
    rules are in force, and masks it again once a rule was added. Anything not wrapped is
    masked as usual."""

    value: Any
    generation: int


def _masked(value: Any) -> Any:
    """``redact_strings(value)``, except for the :class:`Masked` parts still current."""
    if isinstance(value, Masked):
        if value.generation == rules_generation():
            return value.value
        return redact_strings(value.value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def record_many(
    session: Session,
    incident: Incident | int,
    kind: str,
    actor: str,
    events: list[tuple[str | Masked, datetime, dict[str, Any] | Masked, str | None]],
    *,
    now: datetime,
) -> None:
    """Append many events of one kind at once, masked as :func:`record` masks them: one
    batched INSERT, no instance per event (an alert storm writes hundreds). Each event is
    (summary, occurred_at, data, source_key); the summary, the data as a whole or values
    inside it may be :class:`Masked` (masked by the caller, not masked twice: data masked
    whole under the rules in force is not walked at all)."""
    if not events:
        return
    insert_events(session, event_rows(incident, kind, actor, events, now=now))


def event_rows(
    incident: Incident | int,
    kind: str,
    actor: str,
    events: list[tuple[str | Masked, datetime, dict[str, Any] | Masked, str | None]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows :func:`record_many` writes, masked, for a caller that writes them later with
    other batches (:func:`insert_events`, or its own statement on PostgreSQL)."""
    incident_id = _id(incident)
    return [
        {
            "incident_id": incident_id,
            "occurred_at": occurred_at,
            "recorded_at": now,
            "kind": kind,
            "actor": actor,
            "summary": _masked(summary),
            "data": _masked(data),
            "source_key": source_key,
        }
        for summary, occurred_at, data, source_key in events
    ]


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _id(incident: Incident | int) -> int:
    if isinstance(incident, int):
        return incident
    assert incident.id is not None, "incident must be flushed first"
    return incident.id


def _clean_actor(user: str, what: str) -> str:
    user = str(user).strip()
    if not user:
        raise DomainError(f"{what} is empty: name a person")
    return user


def _check_past(name: str, when: datetime, now: datetime) -> datetime:
    when = ensure_utc(when)
    if when > now:
        raise DomainError(
            f"{name.replace('_', ' ')} time {when.isoformat()} is in the future: "
            "it can only be now or earlier"
        )
    return when


def _require_open(settings: Settings, incident: Incident, doing: str) -> None:
    if incident.status in policy.terminal_statuses(settings):
        raise DomainError(f"{incident.ref} is {incident.status}: cannot {doing}; reopen it first")
