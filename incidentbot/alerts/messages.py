"""One message per Alertmanager group in its incident's channel, updated in place.

When a delivery attaches alerts to an incident, or resolves alerts already on it, the ingest
transaction queues (:func:`queue`) a ledger run whose one step, ``chat.alert_group``, posts or
updates the group's message (:class:`AlertMessages`). The step reads the group's alerts when it
runs, so whichever run comes last shows the latest state.

Flapping is rate-limited per group, without losing the last state:

- while the group's latest run has not been claimed yet, a new change joins it (no new run);
- otherwise the next run is due no earlier than ``alerts.message_interval`` seconds after the
  previous one started, so a group updates its message at most once per interval, and the run
  queued after the last change always runs.

The action is idempotent: it finds its own message by block id (an interrupted attempt may have
posted it) and updates it rather than posting another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from incidentbot import db
from incidentbot.alerts.declare import declared_here
from incidentbot.alerts.models import ALERT_TABLE, FIRING, AlertDelivery, AlertGroup
from incidentbot.alerts.records import GroupRow
from incidentbot.alerts.routing import Suggestion
from incidentbot.alerts.snooze import snoozed_until
from incidentbot.alerts.timeline import describe
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.installation import installation_id
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import ActionRegistry, PermanentError, RetryableError, StepContext
from incidentbot.ledger.actions import registry as default_registry
from incidentbot.ledger.models import PENDING, Run
from incidentbot.ports import Chat

log = logging.getLogger(__name__)

KIND = "incident.alerts"
ACTION = "chat.alert_group"
CHAT_RETRY = {"max_attempts": 8, "backoff": 0.5, "max_backoff": 30.0}
MAX_LINES = 20  # alerts listed on the message; the rest are counted
MAX_SUGGESTIONS = 5  # Run buttons on the message


@dataclass
class AlertLine:
    status: str
    text: str  # redacted one-line description: name, the labels that matter, summary
    url: str | None  # Prometheus generatorURL (redacted)


@dataclass
class GroupView:
    """What the group's message shows, platform-neutral."""

    ref: str
    number: int
    group_id: int
    group_labels: dict[str, str]
    firing: int
    resolved: int
    lines: list[AlertLine] = field(default_factory=list)
    source_url: str | None = None  # Alertmanager's externalURL
    # Runbooks the group's rules suggested, with params from the alerts' labels (each once).
    suggestions: list[Suggestion] = field(default_factory=list)
    snoozed_until: datetime | None = None


# (view, installation) -> (text, blocks); and (incident number, group id, installation) ->
# block id. Supplied by the chat adapter.
Render = Callable[[GroupView, str], tuple[str, list[dict[str, Any]]]]
BlockId = Callable[[Incident, int, str], str]


def _prefix(incident: Incident, group: AlertGroup | GroupRow) -> str:
    return f"{incident.ref}:alerts:{group.id}:"


def queue(
    session: Session,
    settings: Settings,
    incident: Incident,
    group: AlertGroup | GroupRow,
    *,
    actions: ActionRegistry = default_registry,
    force: bool = False,
) -> int | None:
    """Queue the update of the group's message (in the ingest transaction, which holds the
    group's lock). Returns the id of the run that will show this change; None while the group
    is snoozed (unless ``force``: the update that shows the snooze itself)."""
    if actions.get(ACTION) is None:
        log.debug("no chat adapter: the alerts of %s are not posted", incident.ref)
        return None
    if not force and snoozed_until(session, group.id, utcnow()) is not None:
        return None
    prefix = _prefix(incident, group)
    last = None if declared_here(session, incident) else _last_run(session, incident, prefix)
    if last is not None and last.status == PENDING and _still_pending(session, last.id):
        # Not started yet (or waiting to retry): it will read this change.
        return int(last.id)
    if last is not None and last.status == PENDING:  # claimed meanwhile: read it again
        last = _last_run(session, incident, prefix)
    n = 1 if last is None else int(last.idempotency_key.rsplit(":", 1)[1]) + 1
    interval = settings.alerts.message_interval
    wake = None
    if last is not None and interval > 0:
        wake = (last.started_at or last.created_at) + timedelta(seconds=interval)
    run = ledger.start_run(
        session,
        kind=KIND,
        key=f"{prefix}{n}",
        steps=[
            {
                "name": "Post or update the alerts message",
                "action": ACTION,
                "input": {"group_id": group.id},
                "idempotent": True,
                "retry": CHAT_RETRY,
                "timeout": 30.0,
            }
        ],
        incident_id=incident.id,
        actor=settings.alerts.actor,
        actions=actions,
        wake_at=wake,  # kept if ahead of the database clock
    )
    return run.id


_RUNS = Run.__table__  # type: ignore[attr-defined]
_LOCK_RUN = select(_RUNS.c.status).where(_RUNS.c.id == bindparam("id")).with_for_update()


def _still_pending(session: Session, run_id: int) -> bool:
    """Whether the pending run this change joins will read it. On PostgreSQL a worker could
    claim it and read the alerts before this transaction commits, and the change would be
    shown by no run: the row is locked until the commit (a claim skips a locked run) and its
    status read again, as a claim committed since the first read left it. SQLite's write lock
    already keeps a claim from committing inside this transaction."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return session.execute(_LOCK_RUN, {"id": run_id}).scalar() == PENDING


def _last_run(session: Session, incident: Incident, prefix: str) -> Any:
    """The group's latest message run on the incident (the columns :func:`queue` reads)."""
    # The prefix ends with ":" and holds no LIKE wildcard (a ref, "alerts", an id).
    params = {"incident_id": incident.id, "pattern": prefix + "%"}
    return session.execute(_LAST_RUN, params).first()


# Built once (a new statement and its cache key at each delivery cost more than running it).
_LAST_RUN = (
    select(
        _RUNS.c.id,
        _RUNS.c.status,
        _RUNS.c.idempotency_key,
        _RUNS.c.started_at,
        _RUNS.c.created_at,
    )
    .where(
        _RUNS.c.kind == KIND,
        _RUNS.c.incident_id == bindparam("incident_id"),
        _RUNS.c.idempotency_key.like(bindparam("pattern")),
    )
    .order_by(_RUNS.c.id.desc())
    .limit(1)
)


_ALERTS = ALERT_TABLE
_DELIVERIES = AlertDelivery.__table__  # type: ignore[attr-defined]
_EVENTS = TimelineEvent.__table__  # type: ignore[attr-defined]
_GROUPS = AlertGroup.__table__  # type: ignore[attr-defined]
# Read with Core, the columns shown: no ORM instance, and of the delivery only its
# externalURL (not the whole stored payload).
_VIEW_ALERTS = (
    select(
        _ALERTS.c.id,
        _ALERTS.c.status,
        _ALERTS.c.alertname,
        _ALERTS.c.labels,
        _ALERTS.c.annotations,
        _ALERTS.c.generator_url,
        _ALERTS.c.delivery_id,
    )
    .where(_ALERTS.c.group_id == bindparam("group_id"))
    .where(_ALERTS.c.incident_id == bindparam("incident_id"))
    .order_by(_ALERTS.c.starts_at, _ALERTS.c.id)
)
_SOURCE = select(_DELIVERIES.c.payload["externalURL"].as_string()).where(
    _DELIVERIES.c.id == bindparam("delivery_id")
)
_SUGGESTED = (
    select(_EVENTS.c.data)
    .where(_EVENTS.c.incident_id == bindparam("incident_id"))
    .where(_EVENTS.c.kind == "runbook.suggested")
    .order_by(_EVENTS.c.id)
)
_GROUP = select(_GROUPS.c.id, _GROUPS.c.group_labels).where(_GROUPS.c.id == bindparam("id"))


def view(session: Session, incident: Incident, group: AlertGroup | GroupRow | Any) -> GroupView:
    """The group's alerts on the incident: firing first, then resolved, earliest first.
    ``group``: anything with its ``id`` and ``group_labels``."""
    rows = session.execute(_VIEW_ALERTS, {"group_id": group.id, "incident_id": incident.id}).all()
    rows.sort(key=lambda r: r.status != FIRING)
    firing = sum(1 for r in rows if r.status == FIRING)
    source = None
    if rows:
        latest = max(r.delivery_id for r in rows)
        source = session.execute(_SOURCE, {"delivery_id": latest}).scalar() or None
    assert group.id is not None
    ids = {r.id for r in rows}
    suggested = session.execute(_SUGGESTED, {"incident_id": incident.id}).scalars()
    suggestions = [
        Suggestion(str(data["runbook"]), dict(data.get("params") or {}))
        for data in suggested
        if data.get("alert_id") in ids and data.get("runbook")
    ][:MAX_SUGGESTIONS]
    return GroupView(
        ref=incident.ref,
        number=incident.number,
        group_id=group.id,
        group_labels=dict(group.group_labels),
        firing=firing,
        resolved=len(rows) - firing,
        lines=[AlertLine(r.status, describe(r), r.generator_url) for r in rows[:MAX_LINES]],
        source_url=source,
        suggestions=suggestions,
        snoozed_until=snoozed_until(session, group.id, utcnow()),
    )


class AlertMessages:
    """The ``chat.alert_group`` ledger action, bound to a Chat adapter and a renderer."""

    def __init__(
        self, chat: Chat, engine: Engine, settings: Settings, render: Render, block_id: BlockId
    ):
        self.chat = chat
        self.engine = engine
        self.settings = settings
        self.render = render
        self.block_id = block_id
        self._installation: str | None = None
        self._posted: dict[tuple[int, int], str] = {}  # (incident, group) -> ts
        self._locks: dict[tuple[int, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def install(self, registry: ActionRegistry = default_registry) -> None:
        registry.register(ACTION, self.post, idempotent=True, replace=True)

    def _lock(self, key: tuple[int, int]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def post(self, ctx: StepContext, input: dict[str, Any]) -> dict[str, Any]:
        with db.read(self.engine) as s:
            inc = s.get(Incident, ctx.incident_id)
            group = s.execute(_GROUP, {"id": input["group_id"]}).first()
            if inc is None or group is None:
                raise PermanentError(f"incident {ctx.incident_id} or its alert group is gone")
            if not inc.channel_id:  # nothing more to read until it does
                raise RetryableError("the incident channel does not exist yet")
            shown = view(s, inc, group)
        if self._installation is None:
            self._installation = installation_id(self.engine)
        text, blocks = self.render(shown, self._installation)
        assert inc.id is not None and group.id is not None
        key = (inc.id, group.id)
        with self._lock(key):  # find-then-post must not interleave for one group
            ts = self._posted.get(key) or self.chat.find_message(
                inc.channel_id,
                self.block_id(inc, group.id, self._installation),
                since=inc.declared_at,
            )
            updated = bool(ts)
            if ts:
                self.chat.update(inc.channel_id, ts, text, blocks)
            else:
                ts = self.chat.post(inc.channel_id, text, blocks)
            self._posted[key] = ts
        return {"ts": ts, "updated": updated, "firing": shown.firing, "resolved": shown.resolved}
