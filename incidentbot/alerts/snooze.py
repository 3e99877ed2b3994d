"""Snoozing an alert group for its incident: its message in the channel stops updating, and the
group does not declare a new incident, until the snooze ends.

The snooze is a timeline event (``alert.group_snoozed``, with the group and the end), so it is on
the incident's timeline and needs no state of its own: the latest such event of a group decides.
A snooze of zero ends it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from incidentbot.alerts.models import AlertGroup, AlertRecord
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent

KIND = "alert.group_snoozed"
MAX_SNOOZE = timedelta(days=7)


def snoozed_until(session: Session, group_id: int | None, now: datetime) -> datetime | None:
    """When the group's snooze ends, if it is snoozed now. Read once per transaction: a
    delivery that both may declare and queues the group's message asks twice."""
    if group_id is None:
        return None
    memo = _memo(session)
    if group_id not in memo:
        memo[group_id] = _last_end(session, group_id)
    until = memo[group_id]
    return until if until is not None and until > now else None


def not_snoozed(session: Session, group_id: int) -> None:
    """Note, for the rest of the transaction, that the group has no snooze (a group that was
    never on an incident: a snooze is of a group on its incident), so nothing reads it."""
    _memo(session)[group_id] = None


def read_with(session: Session, group_id: int, data: dict | None) -> None:
    """Note the group's latest snooze event's ``data`` (None: it has none), read by another
    statement of the transaction (:mod:`incidentbot.alerts.groups`), so nothing reads it."""
    _memo(session)[group_id] = _end(data)


_MEMO = "incidentbot.alerts.snooze_ends"


def _memo(session: Session) -> dict[int, datetime | None]:
    """The snooze ends read in the session's current transaction (a new one starts empty)."""
    transaction = session.get_transaction()
    held = session.info.get(_MEMO)
    if held is None or held[0] is not transaction:
        held = session.info[_MEMO] = (transaction, {})
    return held[1]


def _last_end(session: Session, group_id: int) -> datetime | None:
    """The end of the group's latest snooze event: the group is picked out by the database
    (not by reading every snooze of every group), the newest first."""
    return _end(session.execute(_LAST_SNOOZE, {"group_id": group_id}).scalar())


def _end(data: dict | None) -> datetime | None:
    return datetime.fromisoformat(data["until"]) if data is not None else None


# The same, for PostgreSQL statements that read it with other things (group id: ``g.id``).
LAST_SNOOZE_PG = (
    "SELECT e.data FROM timeline_event AS e WHERE e.kind = 'alert.group_snoozed'"
    " AND CAST(e.data ->> 'group_id' AS integer) = g.id ORDER BY e.id DESC LIMIT 1"
)
assert KIND == "alert.group_snoozed"


_EVENTS = TimelineEvent.__table__  # type: ignore[attr-defined]
# Core, built once: asked by each delivery to a group on an incident and each update of the
# group's message, where an ORM query built every time cost several times the statement.
_LAST_SNOOZE = (
    sa_select(_EVENTS.c.data)
    .where(
        _EVENTS.c.kind == KIND,
        _EVENTS.c.data["group_id"].as_integer() == bindparam("group_id"),
    )
    .order_by(_EVENTS.c.id.desc())
    .limit(1)
)


def group_label(group: AlertGroup) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(group.group_labels.items()))
    return f"group {group.id} {{{labels}}}"


def groups_of(session: Session, incident: Incident) -> list[AlertGroup]:
    """The groups with alerts on the incident, in the order they attached."""
    ids = session.exec(
        select(AlertRecord.group_id).where(AlertRecord.incident_id == incident.id).distinct()
    )
    found = [session.get(AlertGroup, gid) for gid in ids]
    return sorted((g for g in found if g is not None), key=lambda g: g.id or 0)


def snooze(
    session: Session,
    incident: Incident,
    group_id: int,
    length: timedelta,
    *,
    actor: str,
    now: datetime,
) -> tuple[AlertGroup, datetime | None]:
    """Snooze (or, with a zero length, wake) one of the incident's groups; returns the group and
    the end of the snooze (None: woken)."""
    if length < timedelta(0) or length > MAX_SNOOZE:
        raise DomainError("a snooze lasts from 0 (to end it) to 7d")
    groups = {g.id: g for g in groups_of(session, incident)}
    group = groups.get(group_id)
    if group is None:
        known = ", ".join(str(g) for g in groups) or "none"
        raise NotFound(
            f"{incident.ref} has no alert group {group_id} (its groups: {known}; "
            "see /incident alerts)"
        )
    until = now + length if length else None
    what = group_label(group)
    summary = (
        f"Alert {what} snoozed until {until:%Y-%m-%d %H:%M} UTC"
        if until
        else f"Alert {what} snooze ended"
    )
    svc.record(
        session,
        incident,
        KIND,
        actor,
        summary,
        now=now,
        data={"group_id": group.id, "until": (until or now).isoformat()},
    )
    _memo(session).pop(group_id, None)
    return group, until
