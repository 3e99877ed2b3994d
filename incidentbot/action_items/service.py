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

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from incidentbot.action_items.due import today as team_today
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import records
from incidentbot.incidents.models import ActionItem, Incident

PRIORITIES = ("low", "medium", "high", "urgent")
DEFAULT_PRIORITY = "medium"  # the column's default: an item nobody ranked
OPEN, DONE, WONT_DO = "open", "done", "wont_do"
STATUSES = (OPEN, DONE, WONT_DO)
MAX_TEXT = 2000
MAX_REASON = 1000
MAX_OWNER = 128
_ID = re.compile(r"^\s*#?(\d{1,12})\s*$")


def label(status: str) -> str:
    """How a status reads to people: ``wont_do`` is "won't do"."""
    return "won't do" if status == WONT_DO else status


def parse_id(text: str | int) -> int:
    """``12`` and ``#12`` both name action item 12."""
    match = _ID.match(str(text))
    if not match:
        shown = str(text) if len(str(text)) <= 40 else str(text)[:40] + "…"
        raise DomainError(f"'{shown}' is not an action item id: use its number, e.g. 12")
    return int(match.group(1))


def parse_priority(text: str) -> str:
    value = str(text).strip().lower().removeprefix("priority:")
    if value not in PRIORITIES:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise DomainError(f"unknown priority '{shown}': use {', '.join(PRIORITIES)}")
    return value


def parse_status(text: str) -> str:
    value = str(text).strip().lower().replace("'", "").replace("-", "_").replace(" ", "_")
    value = {"wontdo": WONT_DO}.get(value, value)
    if value not in STATUSES:
        raise DomainError(f"unknown status '{text}': use open, done or wont_do")
    return value


def _clean(text: str, what: str, limit: int) -> str:
    clean = " ".join(str(text).split())
    if not clean:
        raise DomainError(f"{what} is empty")
    if len(clean) > limit:
        raise DomainError(f"{what} is {len(clean)} characters long: at most {limit}")
    return clean


def _owner(owner: str | None) -> str | None:
    if owner is None:
        return None
    return _clean(owner, "the owner", MAX_OWNER)


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


def is_overdue(item: ActionItem, today: date) -> bool:
    return item.status == OPEN and item.due_date is not None and item.due_date < today


@dataclass(frozen=True)
class ItemView:
    """An item with what lists show beside it: its incident, and whether it is overdue."""

    item: ActionItem
    incident_ref: str
    incident_title: str
    channel_id: str | None
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        i = self.item
        return {
            "id": i.id,
            "incident": self.incident_ref,
            "text": i.text,
            "owner": i.owner,
            "due_date": i.due_date.isoformat() if i.due_date else None,
            "priority": i.priority,
            "status": i.status,
            "status_reason": i.status_reason,
            "overdue": self.overdue,
            "created_by": i.created_by,
            "created_at": i.created_at.isoformat(),
            "done_at": i.done_at.isoformat() if i.done_at else None,
            "external_url": i.external_url,
        }


def list_items(
    session: Session,
    settings: Settings,
    *,
    incident: Incident | None = None,
    owner: str | None = None,
    status: str | None = OPEN,
    overdue: bool = False,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[ItemView]:
    """Items by incident, then id. ``status=None`` lists every status; ``overdue`` only the
    open items past their due date."""
    today = team_today(settings.timezone, now)
    stmt = select(ActionItem, Incident).join(Incident, col(Incident.id) == ActionItem.incident_id)
    if incident is not None:
        stmt = stmt.where(ActionItem.incident_id == incident.id)
    if owner is not None:
        stmt = stmt.where(ActionItem.owner == owner)
    if overdue:
        status = OPEN
        stmt = stmt.where(col(ActionItem.due_date).is_not(None))
        stmt = stmt.where(col(ActionItem.due_date) < today)
    if status is not None:
        stmt = stmt.where(ActionItem.status == status)
    stmt = stmt.order_by(col(Incident.number), col(ActionItem.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_view(item, inc, today) for item, inc in session.exec(stmt)]


def view(session: Session, settings: Settings, item: ActionItem) -> ItemView:
    inc = session.get(Incident, item.incident_id)
    assert inc is not None
    return _view(item, inc, team_today(settings.timezone))


def _view(item: ActionItem, inc: Incident, today: date) -> ItemView:
    return ItemView(item, inc.ref, inc.title, inc.channel_id, is_overdue(item, today))


def overdue(session: Session, settings: Settings, now: datetime | None = None) -> list[ItemView]:
    return list_items(session, settings, overdue=True, now=now)


# -- the report --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Open and overdue items of one owner or one incident."""

    key: str | None
    title: str | None = None
    open: int = 0
    overdue: int = 0
    items: list[int] = field(default_factory=list)
    overdue_items: list[int] = field(default_factory=list)

    def to_json(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.key}
        if name == "incident":
            out["title"] = self.title
        out |= {
            "open": self.open,
            "overdue": self.overdue,
            "items": self.items,
            "overdue_items": self.overdue_items,
        }
        return out


@dataclass
class Report:
    today: date
    timezone: str
    by_owner: list[Tally]
    by_incident: list[Tally]

    @property
    def open(self) -> int:
        return sum(t.open for t in self.by_incident)

    @property
    def overdue(self) -> int:
        return sum(t.overdue for t in self.by_incident)

    def to_json(self) -> dict[str, Any]:
        return {
            "today": self.today.isoformat(),
            "timezone": self.timezone,
            "open": self.open,
            "overdue": self.overdue,
            "by_owner": [t.to_json("owner") for t in self.by_owner],
            "by_incident": [t.to_json("incident") for t in self.by_incident],
        }


def report(session: Session, settings: Settings, now: datetime | None = None) -> Report:
    """Open items, and how many are overdue, per owner (most overdue first; the unowned
    last) and per incident (by number)."""
    views = list_items(session, settings, status=OPEN, now=now)
    owners: dict[str | None, Tally] = {}
    incidents: dict[str, Tally] = {}
    for v in views:
        assert v.item.id is not None
        o = owners.setdefault(v.item.owner, Tally(v.item.owner))
        i = incidents.setdefault(v.incident_ref, Tally(v.incident_ref, v.incident_title))
        for tally in (o, i):
            tally.open += 1
            tally.items.append(v.item.id)
            if v.overdue:
                tally.overdue += 1
                tally.overdue_items.append(v.item.id)
    by_owner = sorted(
        owners.values(), key=lambda t: (t.key is None, -t.overdue, -t.open, t.key or "")
    )
    return Report(
        team_today(settings.timezone, now), settings.timezone, by_owner, list(incidents.values())
    )


# -- writing -----------------------------------------------------------------------------------


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
    clean = _clean(text, "the action item's text", MAX_TEXT)
    actor = records._clean_actor(actor, "the creator")
    owner = _owner(owner)
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
    owner_clean = _owner(owner)
    assert owner_clean is not None
    _require_open(item, "assign it")
    if item.owner == owner_clean:
        raise DomainError(f"action item #{item.id} is already owned by {owner_clean}")
    previous = item.owner
    item.owner = owner_clean
    _touch(session, item, now)
    records.record(
        session,
        item.incident_id,
        "action.assigned",
        actor,
        f"Action item #{item.id} assigned to {owner_clean}"
        + (f" (was {previous})" if previous else ""),
        now=now,
        data={"item": item.id, "owner": owner_clean, "previous": previous},
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
    _touch(session, item, now)
    records.record(
        session,
        item.incident_id,
        "action.done",
        actor,
        f"Action item #{item.id} done: {item.text}",
        now=now,
        data={"item": item.id},
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
    clean = _clean(reason, "the reason", MAX_REASON)
    if item.status == WONT_DO:
        raise DomainError(
            f"action item #{item.id} is already closed as won't do ({item.status_reason})"
        )
    _require_open(item, "mark it won't do")
    item.status = WONT_DO
    item.status_reason = clean
    _touch(session, item, now)
    records.record(
        session,
        item.incident_id,
        "action.wont_do",
        actor,
        f"Action item #{item.id} won't be done: {clean}",
        now=now,
        data={"item": item.id, "reason": clean},
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
    _touch(session, item, now)
    records.record(
        session,
        item.incident_id,
        "action.reopened",
        actor,
        f"Action item #{item.id} reopened (was {label(previous)})",
        now=now,
        data={"item": item.id, "previous": previous, "previous_reason": reason},
    )
    return item


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
    _touch(session, item, now)
    records.record(
        session,
        item.incident_id,
        "action.exported",
        actor,
        f"Action item #{item.id} exported to {url}",
        now=now,
        data={"item": item.id, "url": url, **(data or {})},
    )
    return item


def _require_open(item: ActionItem, doing: str) -> None:
    if item.status != OPEN:
        raise DomainError(
            f"action item #{item.id} is {label(item.status)}: cannot {doing}; reopen it first"
        )


def _touch(session: Session, item: ActionItem, now: datetime) -> None:
    item.updated_at = now
    session.add(item)
