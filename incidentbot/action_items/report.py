"""Reading action items: views with overdue computed in the team's time zone, the overdue list,
and the report of open and overdue items by owner and by incident."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from incidentbot.action_items.due import today as team_today
from incidentbot.config import Settings
from incidentbot.incidents.models import ActionItem, Incident
from incidentbot.people import Directory

OPEN = "open"  # the status an item has until done or won't do (fields.OPEN)


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
    days_overdue: int = 0  # whole days past the due date in the team's time zone (0: not)

    @property
    def overdue_text(self) -> str:
        """``overdue by 5 days`` (empty when it is not overdue)."""
        n = self.days_overdue
        return f"overdue by {n} day{'s' if n != 1 else ''}" if self.overdue else ""

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
            "days_overdue": self.days_overdue,
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
    late = is_overdue(item, today)
    days = (today - item.due_date).days if late and item.due_date else 0
    return ItemView(item, inc.ref, inc.title, inc.channel_id, late, days)


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
    days_overdue: dict[int, int] = field(default_factory=dict)  # item id -> days overdue

    def to_json(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.key}
        if name == "incident":
            out["title"] = self.title
        out |= {
            "open": self.open,
            "overdue": self.overdue,
            "items": self.items,
            "overdue_items": self.overdue_items,
            "days_overdue": {str(k): v for k, v in self.days_overdue.items()},
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
    # One human is one owner, whether items name them as bob, Bob Okafor or U0N581U33XT.
    people = Directory.load(session, settings.people, [v.item.owner for v in views])
    owners: dict[str | None, Tally] = {}
    incidents: dict[str, Tally] = {}
    for v in views:
        assert v.item.id is not None
        owner = v.item.owner
        who = people.find(owner) if owner else None
        key = who.key if who is not None else owner
        o = owners.setdefault(key, Tally((who.slack_id if who else None) or owner))
        i = incidents.setdefault(v.incident_ref, Tally(v.incident_ref, v.incident_title))
        for tally in (o, i):
            tally.open += 1
            tally.items.append(v.item.id)
            if v.overdue:
                tally.overdue += 1
                tally.overdue_items.append(v.item.id)
                tally.days_overdue[v.item.id] = v.days_overdue
    by_owner = sorted(
        owners.values(), key=lambda t: (t.key is None, -t.overdue, -t.open, t.key or "")
    )
    return Report(
        team_today(settings.timezone, now), settings.timezone, by_owner, list(incidents.values())
    )


# -- writing -----------------------------------------------------------------------------------
