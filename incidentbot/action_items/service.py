"""Action items: plain functions over a session, each change on its incident's timeline.

Like :mod:`incidentbot.incidents.service`, callers wrap a call in ``incidentbot.db.transaction``
so that the change and its timeline event commit together or not at all, and a refused request
(a :class:`~incidentbot.errors.DomainError`) changes nothing. Actors and owners are plain
strings: a Slack user id (``U123``) or a name typed in the CLI.

An item is ``open``, ``done`` or ``wont_do`` (with a reason). It is overdue when it is open and
its due date is before today in the team's time zone: an item due today is not overdue until
that day has ended there.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from incidentbot.action_items.due import today as team_today
from incidentbot.action_items.fields import (
    DEFAULT_PRIORITY,
    DONE,
    MAX_REASON,
    MAX_TEXT,
    WONT_DO,
    clean_owner,
    clean_text,
    label,
    parse_id,
    parse_priority,
)
from incidentbot.action_items.report import (
    OPEN,
    ItemView,
    Report,
    Tally,
    is_overdue,
    list_items,
    overdue,
    report,
    view,
)
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import records
from incidentbot.incidents.models import ActionItem, Incident

__all__ = [
    "ItemView",
    "Report",
    "Tally",
    "add",
    "assign",
    "done",
    "edit",
    "get",
    "is_overdue",
    "list_items",
    "overdue",
    "reopen",
    "report",
    "view",
    "wont_do",
]


# -- reading -----------------------------------------------------------------------------------


def get(
    session: Session,
    item_id: str | int,
    *,
    incident: Incident | None = None,
    for_update: bool = False,
) -> ActionItem:
    """The item; with ``incident``, refuse an item of another incident."""
    number = parse_id(item_id)
    stmt = select(ActionItem).where(ActionItem.id == number)
    if for_update:
        stmt = stmt.with_for_update()
    item = session.exec(stmt).first()
    if item is None:
        raise NotFound(f"there is no action item #{number}")
    if incident is not None and item.incident_id != incident.id:
        other = session.get(Incident, item.incident_id)
        where = other.ref if other else "another incident"
        raise DomainError(f"action item #{number} belongs to {where}, not {incident.ref}")
    return item


def find_by_source(session: Session, source_key: str) -> ActionItem | None:
    """The item made from this source (a Slack message), if one was."""
    return session.exec(select(ActionItem).where(ActionItem.source_key == source_key)).first()


def add(
    session: Session,
    settings: Settings,
    incident: Incident | str | int,
    text: str,
    *,
    actor: str,
    owner: str | None = None,
    due: date | None = None,
    priority: str | None = None,
    source_key: str | None = None,
    now: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> ActionItem:
    """Add an item to an incident (open or not: follow-ups outlive incidents). ``data`` is
    kept with the timeline event (where the item came from)."""
    now = now or utcnow()
    inc = incident if isinstance(incident, Incident) else records.get(session, incident)
    clean = clean_text(text, "the action item's text", MAX_TEXT)
    actor = records._clean_actor(actor, "the creator")
    owner = clean_owner(owner)
    prio = parse_priority(priority) if priority else DEFAULT_PRIORITY
    if due is not None and due < team_today(settings.timezone, now):
        raise DomainError(
            f"due date {due.isoformat()} is in the past: a due date is today or later"
        )
    item = ActionItem(
        incident_id=records._id(inc),
        text=clean,
        owner=owner,
        due_date=due,
        priority=prio,
        status=OPEN,
        created_by=actor,
        created_at=now,
        updated_at=now,
        source_key=source_key,
    )
    session.add(item)
    session.flush()
    details = [f"owner {owner}" if owner else "no owner"]
    if due:
        details.append(f"due {due.isoformat()}")
    details.append(f"{prio} priority")
    records.record(
        session,
        inc,
        "action.added",
        actor,
        f"Action item #{item.id} added: {clean} ({', '.join(details)})",
        now=now,
        data={
            "item": item.id,
            "text": clean,
            "owner": owner,
            "due_date": due.isoformat() if due else None,
            "priority": prio,
            "source": source_key,
            **(data or {}),
        },
    )
    return item


def assign(
    session: Session,
    settings: Settings,
    item_id: str | int,
    owner: str,
    *,
    actor: str,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> ActionItem:
    now = now or utcnow()
    item = get(session, item_id, incident=incident, for_update=True)
    owner_clean = clean_owner(owner)
    assert owner_clean is not None
    _require_open(item, "assign it")
    if item.owner == owner_clean:
        raise DomainError(f"action item #{item.id} is already owned by {owner_clean}")
    previous = item.owner
    item.owner = owner_clean
    _changed(
        session,
        item,
        "action.assigned",
        f"Action item #{item.id} assigned to {owner_clean}"
        + (f" (was {previous})" if previous else ""),
        actor,
        now,
        {"item": item.id, "owner": owner_clean, "previous": previous},
    )
    return item


def done(
    session: Session,
    settings: Settings,
    item_id: str | int,
    *,
    actor: str,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> ActionItem:
    now = now or utcnow()
    item = get(session, item_id, incident=incident, for_update=True)
    if item.status == DONE:
        when = f" (since {item.done_at:%Y-%m-%d %H:%M} UTC)" if item.done_at else ""
        raise DomainError(f"action item #{item.id} is already done{when}")
    _require_open(item, "mark it done")
    item.status = DONE
    item.done_at = now
    _changed(
        session,
        item,
        "action.done",
        f"Action item #{item.id} done: {item.text}",
        actor,
        now,
        {"item": item.id},
    )
    return item


def wont_do(
    session: Session,
    settings: Settings,
    item_id: str | int,
    reason: str,
    *,
    actor: str,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> ActionItem:
    now = now or utcnow()
    item = get(session, item_id, incident=incident, for_update=True)
    clean = clean_text(reason, "the reason", MAX_REASON)
    if item.status == WONT_DO:
        raise DomainError(
            f"action item #{item.id} is already closed as won't do ({item.status_reason})"
        )
    _require_open(item, "mark it won't do")
    item.status = WONT_DO
    item.status_reason = clean
    _changed(
        session,
        item,
        "action.wont_do",
        f"Action item #{item.id} won't be done: {clean}",
        actor,
        now,
        {"item": item.id, "reason": clean},
    )
    return item


def reopen(
    session: Session,
    settings: Settings,
    item_id: str | int,
    *,
    actor: str,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> ActionItem:
    now = now or utcnow()
    item = get(session, item_id, incident=incident, for_update=True)
    if item.status == OPEN:
        raise DomainError(f"action item #{item.id} is already open")
    previous, reason = item.status, item.status_reason
    item.status = OPEN
    item.status_reason = None
    item.done_at = None
    _changed(
        session,
        item,
        "action.reopened",
        f"Action item #{item.id} reopened (was {label(previous)})",
        actor,
        now,
        {"item": item.id, "previous": previous, "previous_reason": reason},
    )
    return item


EDITABLE = ("due", "priority", "text")


def edit(
    session: Session,
    settings: Settings,
    item_id: str | int,
    field: str,
    value: str | date | None,
    *,
    actor: str,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> tuple[ActionItem, str | None, str | None]:
    """Change one field of an open item: ``due`` (a date, or None to clear it), ``priority``
    or ``text``. Returns the item and the field's old and new values as people read them."""
    now = now or utcnow()
    if field not in EDITABLE:
        raise DomainError(f"cannot edit '{field}': edit {', '.join(EDITABLE)}")
    item = get(session, item_id, incident=incident, for_update=True)
    _require_open(item, f"edit its {field}")
    if field == "due":
        if value is not None and not isinstance(value, date):
            raise DomainError("a due date is a date, e.g. 2026-05-06")
        if value is not None and value < team_today(settings.timezone, now):
            raise DomainError(
                f"due date {value.isoformat()} is in the past: a due date is today or later"
            )
        old = item.due_date.isoformat() if item.due_date else None
        new = value.isoformat() if value else None
        item.due_date = value
    elif field == "priority":
        old, new = item.priority, parse_priority(str(value))
        item.priority = new
    else:
        old, new = item.text, clean_text(str(value or ""), "the action item's text", MAX_TEXT)
        item.text = new
    if old == new:
        shown = new if new is not None else "not set"
        raise DomainError(f"action item #{item.id}'s {field} is already {shown}")
    what = {"due": "due date", "priority": "priority", "text": "text"}[field]
    summary = f"Action item #{item.id} {what}: {new or 'none'} (was {old or 'none'})"
    _changed(session, item, "action.edited", summary, actor, now,
             {"item": item.id, "field": field, "old": old, "new": new})  # fmt: skip
    return item, old, new


def mark_exported(
    session: Session,
    item: ActionItem,
    url: str,
    *,
    actor: str,
    now: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> ActionItem:
    """Record where the item is tracked besides here (set once)."""
    now = now or utcnow()
    if item.external_url:
        raise DomainError(f"action item #{item.id} is already exported to {item.external_url}")
    item.external_url = url
    _changed(
        session,
        item,
        "action.exported",
        f"Action item #{item.id} exported to {url}",
        actor,
        now,
        {"item": item.id, "url": url, **(data or {})},
    )
    return item


def _require_open(item: ActionItem, doing: str) -> None:
    if item.status != OPEN:
        raise DomainError(
            f"action item #{item.id} is {label(item.status)}: cannot {doing}; reopen it first"
        )


def _changed(
    session: Session,
    item: ActionItem,
    kind: str,
    summary: str,
    actor: str,
    now: datetime,
    data: dict[str, Any],
) -> None:
    """Save a change to ``item`` and put it on its incident's timeline, in one step."""
    item.updated_at = now
    session.add(item)
    records.record(session, item.incident_id, kind, actor, summary, now=now, data=data)
