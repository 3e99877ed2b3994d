"""Action items: add, assign, edit, done, won't do, reopen, export, for every door.

Each function takes the :class:`Actor` and typed arguments (the door parsed them), changes the
item and writes its timeline event in one transaction, and returns a :class:`Item` snapshot
(data, never markup). ``incident`` names the incident the request is about when the door knows
it (an incident's Slack channel, ``--incident``): an item of another incident is then refused.

Whether an owner is a person who exists is the door's to check before calling (Slack asks
``users.info``; the command line takes names as typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from incidentbot import db
from incidentbot.action_items import github
from incidentbot.action_items import service as items
from incidentbot.errors import DomainError
from incidentbot.incidents import service as incidents
from incidentbot.incidents.models import ActionItem, Incident
from incidentbot.usecases.core import Actor, Core


@dataclass(frozen=True)
class Item:
    """An action item as it is after the change."""

    id: int
    incident_ref: str
    text: str
    owner: str | None
    due: date | None
    priority: str
    status: str
    status_reason: str | None
    external_url: str | None


@dataclass(frozen=True)
class Change:
    field: str  # due, priority or text
    old: str | None  # as people read it (a due date in ISO form; None: not set)
    new: str | None


@dataclass(frozen=True)
class ItemEdited:
    item: Item
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ExportStarted:
    """The item can be exported: :func:`export` will open the issue in ``repo``."""

    item_id: int
    repo: str


def _snapshot(row: ActionItem, ref: str) -> Item:
    assert row.id is not None
    return Item(
        id=row.id,
        incident_ref=ref,
        text=row.text,
        owner=row.owner,
        due=row.due_date,
        priority=row.priority,
        status=row.status,
        status_reason=row.status_reason,
        external_url=row.external_url,
    )


def _scope(s: Any, incident: str | None) -> Incident | None:
    return incidents.get(s, incident) if incident else None


def _ref(s: Any, row: ActionItem) -> str:
    inc = s.get(Incident, row.incident_id)
    return inc.ref if inc is not None else "?"


def add(
    core: Core,
    actor: Actor,
    incident: str,
    text: str,
    *,
    owner: str | None = None,
    due: date | None = None,
    priority: str | None = None,
    source_key: str | None = None,
    data: dict[str, Any] | None = None,
) -> Item | None:
    """Add an item to the incident. With ``source_key`` (the message it was made from) it is
    made once: None when that source already made one."""
    with db.transaction(core.engine) as s:
        if source_key is not None and items.find_by_source(s, source_key) is not None:
            return None
        inc = incidents.get(s, incident)
        row = items.add(s, core.settings, inc, text, actor=actor.id, owner=owner, due=due,
                        priority=priority, source_key=source_key, data=data)  # fmt: skip
        return _snapshot(row, inc.ref)


def assign(
    core: Core, actor: Actor, item_id: int | str, owner: str, *, incident: str | None = None
) -> Item:
    with db.transaction(core.engine) as s:
        row = items.assign(s, core.settings, item_id, owner, actor=actor.id,
                           incident=_scope(s, incident))  # fmt: skip
        return _snapshot(row, _ref(s, row))


def edit(
    core: Core,
    actor: Actor,
    item_id: int | str,
    changes: Mapping[str, str | date | None],
    *,
    incident: str | None = None,
) -> ItemEdited:
    """Change an open item's ``due`` (a date; None clears it), ``priority`` and/or ``text``,
    together (one timeline event each) or not at all."""
    if not changes:
        raise DomainError("nothing to change: give a due date, a priority or a text")
    with db.transaction(core.engine) as s:
        scope = _scope(s, incident)
        done: list[Change] = []
        for field, value in changes.items():
            row, old, new = items.edit(s, core.settings, item_id, field, value, actor=actor.id,
                                       incident=scope)  # fmt: skip
            done.append(Change(field, old, new))
        return ItemEdited(_snapshot(row, _ref(s, row)), tuple(done))


def done(core: Core, actor: Actor, item_id: int | str, *, incident: str | None = None) -> Item:
    with db.transaction(core.engine) as s:
        row = items.done(s, core.settings, item_id, actor=actor.id, incident=_scope(s, incident))
        return _snapshot(row, _ref(s, row))


def wont_do(
    core: Core, actor: Actor, item_id: int | str, reason: str, *, incident: str | None = None
) -> Item:
    with db.transaction(core.engine) as s:
        row = items.wont_do(s, core.settings, item_id, reason, actor=actor.id,
                            incident=_scope(s, incident))  # fmt: skip
        return _snapshot(row, _ref(s, row))


def reopen(core: Core, actor: Actor, item_id: int | str, *, incident: str | None = None) -> Item:
    with db.transaction(core.engine) as s:
        row = items.reopen(s, core.settings, item_id, actor=actor.id, incident=_scope(s, incident))
        return _snapshot(row, _ref(s, row))


def check_export(
    core: Core, actor: Actor, item_id: int | str, *, incident: str | None = None
) -> ExportStarted | github.Exported:
    """Whether :func:`export` can go ahead (a door that answers before GitHub does says so at
    once), or where the item already is. Changes nothing."""
    with db.transaction(core.engine) as s:
        draft = github.prepare(s, core.settings, item_id, incident=_scope(s, incident))
    if isinstance(draft, github.Exported):
        return draft
    # prepare has refused already when no repository is configured
    return ExportStarted(draft.item_id, core.settings.action_items.github_repo or "")


def export(
    core: Core,
    actor: Actor,
    item_id: int | str,
    *,
    incident: str | None = None,
    again: bool = False,
) -> github.Exported:
    """Open the item as a GitHub issue, once (``created`` False: it already was, ``url`` says
    where). GitHub is called while the caller waits; see :mod:`incidentbot.action_items.github`
    for how a second export meanwhile is kept from opening a second issue."""
    with db.transaction(core.engine) as s:
        scope = _scope(s, incident)
    return github.export(core.engine, core.settings, item_id, actor=actor.id, incident=scope,
                         again=again)  # fmt: skip
