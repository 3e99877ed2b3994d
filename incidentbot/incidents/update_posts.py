"""Posting an incident's status updates in the order they were written.

Each update is its own durable run, so a 429 on one delays it while workers take the next. To
keep the order people wrote them in, an update's run first posts every earlier update of the
same incident whose run has not finished yet, then its own, all under one per-incident lock. A
retry of the delayed run then finds its message already posted (by its block id) and posts
nothing twice. Independent incidents do not wait on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.effects import update_key
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.ledger.actions import PermanentError
from incidentbot.ledger.models import PARKED, PENDING, RUNNING, Run

# Runs still to go: an earlier update in one of these states has not left yet. One that failed
# for good (or needs attention) is not waited for, so it cannot hold back every later update.
STILL_TO_GO = (PENDING, RUNNING, PARKED)


def updates_to_post(engine: Engine, incident: Incident, event_id: int) -> list[TimelineEvent]:
    """The earlier updates of ``incident`` not posted yet, oldest first, then ``event_id``'s."""
    with db.transaction(engine) as s:
        event = s.get(TimelineEvent, event_id)
        if event is None or event.incident_id != incident.id:
            raise PermanentError(f"status update {event_id} of {incident.ref} does not exist")
        earlier = s.exec(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == incident.id)
            .where(TimelineEvent.kind == svc.STATUS_UPDATE)
            .where(col(TimelineEvent.id) < event_id)
            .order_by(col(TimelineEvent.id))
        ).all()
        keys = {update_key(incident.ref, e.id): e for e in earlier}
        pending = set(
            s.exec(
                select(Run.idempotency_key)
                .where(col(Run.idempotency_key).in_(list(keys)))
                .where(col(Run.status).in_(STILL_TO_GO))
            )
        ) if keys else set()  # fmt: skip
        waiting = [e for k, e in keys.items() if k in pending]
        return [*waiting, event]


def post_one(
    event: TimelineEvent,
    targets: list[str],
    *,
    find: Callable[[str, str, Any], str | None],
    post: Callable[[str, str, list[dict[str, Any]]], str],
    render: Callable[[TimelineEvent], tuple[str, list[dict[str, Any]], str]],
) -> dict[str, str]:
    """Post ``event`` in each target channel unless it is there already (a lost answer, or an
    earlier run posted it): ``{channel: ts}``."""
    text, blocks, block_id = render(event)
    posted = {}
    for channel in targets:
        ts = find(channel, block_id, event.recorded_at) or post(channel, text, blocks)
        posted[channel] = ts
    return posted
