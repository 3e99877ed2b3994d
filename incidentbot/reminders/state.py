"""Reading and changing reminder rows: what was sent, snoozes and dismissals.

Every change is one row update in the caller's transaction; a snooze or dismissal names the
``basis`` it was made for, so a click on a reminder an update has since made moot changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from incidentbot.errors import DomainError
from incidentbot.reminders.models import Reminder


def get(session: Session, kind: str, subject: str) -> Reminder | None:
    return session.exec(
        select(Reminder).where(Reminder.kind == kind).where(Reminder.subject == subject)
    ).first()


def rows(session: Session, kind: str) -> dict[str, Reminder]:
    return {r.subject: r for r in session.exec(select(Reminder).where(Reminder.kind == kind))}


def ensure(session: Session, kind: str, subject: str, now: datetime) -> Reminder:
    row = get(session, kind, subject)
    if row is None:
        row = Reminder(kind=kind, subject=subject, updated_at=now)
        session.add(row)
        session.flush()
    return row


def restart(row: Reminder, basis: datetime, now: datetime) -> None:
    """Count from a new ``basis``: earlier sends, snoozes and dismissals no longer apply."""
    row.basis = basis
    row.sent_count = 0
    row.last_sent_at = None
    row.snoozed_until = row.snoozed_by = None
    row.dismissed_at = row.dismissed_by = None
    row.channel_id = row.message_ts = None
    row.updated_at = now


def sent(row: Reminder, now: datetime, channel_id: str, ts: str) -> None:
    row.sent_count += 1
    row.last_sent_at = now
    row.channel_id, row.message_ts = channel_id, ts
    row.snoozed_until = row.snoozed_by = None
    row.updated_at = now


@dataclass(frozen=True)
class Decision:
    row: Reminder
    changed: bool  # False: it was already so (a double click)


def _current(session: Session, kind: str, subject: str, basis: datetime | None) -> Reminder:
    row = get(session, kind, subject)
    if row is None or (basis is not None and row.basis != basis):
        raise DomainError("this reminder no longer applies: an update was posted since")
    return row


def snooze(
    session: Session,
    kind: str,
    subject: str,
    *,
    basis: datetime | None,
    minutes: int,
    actor: str,
    now: datetime,
) -> Decision:
    row = _current(session, kind, subject, basis)
    if row.dismissed_at is not None:
        return Decision(row, False)
    row.snoozed_until = now + timedelta(minutes=minutes)
    row.snoozed_by = actor
    row.updated_at = now
    session.add(row)
    return Decision(row, True)


def dismiss(
    session: Session, kind: str, subject: str, *, basis: datetime | None, actor: str, now: datetime
) -> Decision:
    row = _current(session, kind, subject, basis)
    if row.dismissed_at is not None:
        return Decision(row, False)
    row.dismissed_at, row.dismissed_by = now, actor
    row.snoozed_until = row.snoozed_by = None
    row.updated_at = now
    session.add(row)
    return Decision(row, True)


def pending(session: Session, kind: str) -> list[Reminder]:
    """Rows of ``kind`` not dismissed (for listings)."""
    return list(
        session.exec(
            select(Reminder)
            .where(Reminder.kind == kind)
            .where(col(Reminder.dismissed_at).is_(None))
            .order_by(col(Reminder.subject))
        )
    )
