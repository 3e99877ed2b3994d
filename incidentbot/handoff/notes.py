"""Watch notes and acknowledgements of handoffs (tables ``handoff_note`` and ``handoff_ack``).

Neither belongs to an incident, so neither goes on a timeline. A note's ``source_key`` makes a
retried command find the note already written; an acknowledgement is unique per rotation and
handoff, so a second click (or a second copy of the message) finds the first one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from incidentbot.errors import DomainError
from incidentbot.handoff.models import HandoffAck, HandoffNote, HandoffPost

MAX_NOTE = 1000


@dataclass(frozen=True)
class Note:
    rotation: str
    text: str
    by: str
    at: datetime


@dataclass(frozen=True)
class Ack:
    rotation: str
    handoff_at: datetime
    by: str
    at: datetime


def _insert(session: Session, row: Any, find: Any) -> Any:
    """Insert ``row``, or return the row ``find`` selects (written earlier or concurrently)."""
    existing = session.exec(find).first()
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # a concurrent insert of the same note or acknowledgement won
        found = session.exec(find).first()
        assert found is not None
        return found
    return row


def add_note(
    session: Session, rotation: str, text: str, *, actor: str, now: datetime, key: str | None
) -> Note:
    clean = " ".join(str(text).split())
    if not clean:
        raise DomainError("the watch note is empty: say what the next on-call should watch")
    if len(clean) > MAX_NOTE:
        raise DomainError(f"the watch note is {len(clean)} characters long: at most {MAX_NOTE}")
    source = f"handoff-note:{rotation}:{key or uuid.uuid4().hex}"[:200]
    row = HandoffNote(
        rotation=rotation, text=clean, created_by=actor[:128], created_at=now, source_key=source
    )
    stored = _insert(session, row, select(HandoffNote).where(HandoffNote.source_key == source))
    return _note(stored)


def _note(row: HandoffNote) -> Note:
    return Note(row.rotation, row.text, row.created_by, row.created_at)


def notes_between(session: Session, rotation: str, since: datetime, until: datetime) -> list[Note]:
    rows = session.exec(
        select(HandoffNote)
        .where(HandoffNote.rotation == rotation)
        .where(col(HandoffNote.created_at) >= since)
        .where(col(HandoffNote.created_at) <= until)
        .order_by(col(HandoffNote.created_at), col(HandoffNote.id))
    )
    return [_note(row) for row in rows]


def _ack_query(rotation: str, handoff_at: datetime) -> Any:
    return select(HandoffAck).where(
        HandoffAck.rotation == rotation, HandoffAck.handoff_at == handoff_at
    )


def acknowledge(
    session: Session, rotation: str, handoff_at: datetime, *, actor: str, now: datetime
) -> tuple[Ack, bool]:
    """Record the acknowledgement of a handoff; returns (the ack, whether this call made it)."""
    row = HandoffAck(
        rotation=rotation, handoff_at=handoff_at, acknowledged_by=actor[:128], acknowledged_at=now
    )
    stored = _insert(session, row, _ack_query(rotation, handoff_at))
    return _ack(stored), stored is row


def acknowledgement(session: Session, rotation: str, handoff_at: datetime) -> Ack | None:
    row = session.exec(_ack_query(rotation, handoff_at)).first()
    return _ack(row) if row is not None else None


def _ack(row: HandoffAck) -> Ack:
    return Ack(row.rotation, row.handoff_at, row.acknowledged_by, row.acknowledged_at)


# -- the handoff as posted ---------------------------------------------------------------------


def _post_query(rotation: str, handoff_at: datetime) -> Any:
    return select(HandoffPost).where(
        HandoffPost.rotation == rotation, HandoffPost.handoff_at == handoff_at
    )


def claim_post(
    session: Session,
    rotation: str,
    handoff_at: datetime,
    *,
    channel_id: str,
    incoming: list[str],
    now: datetime,
) -> tuple[HandoffPost, bool]:
    """The post of this handoff, made now (True) or found (False: posted, or being posted)."""
    row = HandoffPost(
        rotation=rotation, handoff_at=handoff_at, channel_id=channel_id,
        incoming=list(incoming), posted_at=now,
    )  # fmt: skip
    stored = _insert(session, row, _post_query(rotation, handoff_at))
    return stored, stored is row


def record_post(session: Session, post_id: int, ts: str, now: datetime) -> None:
    row = session.get(HandoffPost, post_id)
    if row is not None and row.message_ts is None:
        row.message_ts, row.posted_at = ts, now
        session.add(row)


def posts_to_remind(session: Session, rotation: str, posted_before: datetime) -> list[HandoffPost]:
    """Posted handoffs of ``rotation`` not acknowledged, not reminded of, posted before the
    time given, newest first."""
    acked = select(HandoffAck.id).where(
        HandoffAck.rotation == HandoffPost.rotation, HandoffAck.handoff_at == HandoffPost.handoff_at
    )
    return list(
        session.exec(
            select(HandoffPost)
            .where(HandoffPost.rotation == rotation)
            .where(col(HandoffPost.message_ts).is_not(None))
            .where(col(HandoffPost.reminded_at).is_(None))
            .where(col(HandoffPost.posted_at) <= posted_before)
            .where(~acked.exists())
            .order_by(col(HandoffPost.handoff_at).desc())
        )
    )


def latest_post(session: Session, rotation: str) -> HandoffPost | None:
    return session.exec(
        select(HandoffPost)
        .where(HandoffPost.rotation == rotation)
        .order_by(col(HandoffPost.handoff_at).desc())
    ).first()
