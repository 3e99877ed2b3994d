"""Queueing an incident's durable side effects, in the transaction of the change that needs them.

Each effect is a ledger run started in the same transaction as the change, so a crash, a Slack
429 or an outage delays it but never loses it. The actions the runs name (``chat.*``) are in
:mod:`incidentbot.incidents.flows`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlmodel import Session

from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident
from incidentbot.ledger import folded
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import registry

# Slack retries are the ledger's: quick first retries, capped, enough to outlast a short outage.
CHAT_RETRY = {"max_attempts": 8, "backoff": 0.5, "max_backoff": 30.0}
CHAT_TIMEOUT = 30.0


def _step(name: str, action: str, **input: Any) -> dict[str, Any]:
    return {
        "name": name,
        "action": action,
        "input": input,
        "idempotent": True,
        "retry": CHAT_RETRY,
        "timeout": CHAT_TIMEOUT,
    }


def start_declare_effects(session: Session, incident: Incident, *, declarer: str) -> None:
    """Queue the channel (create, furnish, invite, header) and the digest announcement.

    Two runs, so the digest does not wait for the channel: workers take them concurrently.
    The channel is one step (created, then furnished at once: the header is on the critical
    path, and a second step would put the ledger's commits between the two); runs queued
    before it had two, ``chat.furnish_channel`` second, and still run as they are.
    """
    # Both runs in two statements (ledger.start_runs): a declare's acknowledgement waits on them.
    ledger.start_runs(
        session,
        [(kind, incident.ref + suffix, steps) for kind, suffix, steps in _declare_runs(declarer)],
        incident_id=incident.id,
        actor=declarer,
    )


def declare_runs(declarer: str) -> folded.Folded:
    """The runs of :func:`start_declare_effects`, checked, for the declare to write with the
    incident (``declare_claimed(runs=...)``; on PostgreSQL in its own statement)."""
    # Checked once per declarer and registration of their actions (the check's only other
    # input); a refusal is not kept, so it is made again the next time.
    actions = tuple(registry.get(name) for name in _DECLARE_ACTIONS)
    checked = _checked_declare_runs(declarer, actions)
    return folded.Folded(checked.runs, checked.actor)


@lru_cache(maxsize=1024)
def _checked_declare_runs(declarer: str, _actions: tuple[object, ...]) -> folded.Folded:
    # Shared by the declares that get it: read only (its steps are frozen).
    return folded.fold(_declare_runs(declarer), actor=declarer)


def _declare_runs(declarer: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(kind, key after the incident's ref, steps) of the declare's two runs."""
    channel = _step(
        "Create the incident channel, set its topic and purpose, invite, post the header",
        "chat.open_channel",
        declarer=declarer,
        furnish=True,
    )
    # A fixed key, so that a repeated declare finds the announcement it already queued. Its
    # first attempt posts without looking: nothing can have announced the incident before.
    announce = _refresh_steps(header=False, digest=True, announce=True)
    return [
        ("incident.channel", ":channel", [channel]),
        ("incident.refresh", ":refresh:declared", announce),
    ]


def refresh(
    session: Session,
    incident: Incident,
    *,
    actor: str,
    reason: str,
    header: bool = True,
    digest: bool = True,
) -> None:
    """Queue updates of the header and digest messages after a change (in the change's
    transaction). Each change gets its own run, numbered by the incident's refresh counter (one
    row, however long the timeline)."""
    n = svc.next_in_sequence(session, svc.refresh_counter(incident))
    _refresh_run(session, incident, str(n), actor=actor, header=header, digest=digest)


def _refresh_run(
    session: Session,
    incident: Incident,
    suffix: str,
    *,
    actor: str,
    header: bool,
    digest: bool,
) -> None:
    ledger.start_run(
        session,
        kind="incident.refresh",
        key=f"{incident.ref}:refresh:{suffix}",
        steps=_refresh_steps(header=header, digest=digest, announce=False),
        incident_id=incident.id,
        actor=actor,
    )


def _refresh_steps(*, header: bool, digest: bool, announce: bool) -> list[dict[str, Any]]:
    steps = []
    if header:
        steps.append(_step("Update the incident header", "chat.header"))
    if digest:
        extra = {"announce": True} if announce else {}
        steps.append(_step("Update the digest announcement", "chat.digest", **extra))
    return steps


def update_key(ref: str, event_id: int | None) -> str:
    """The idempotency key of the run posting status update ``event_id``."""
    return f"{ref}:update:{event_id}"


def post_update(
    session: Session, settings: Settings, incident: Incident, *, actor: str, text: str
) -> svc.TimelineEvent:
    """A status update: recorded now, posted in the channel and the digest channel durably."""
    event = svc.add_note(session, settings, incident.ref, text, actor=actor, kind="status.update")
    session.flush()
    ledger.start_run(
        session,
        kind="incident.update",
        key=update_key(incident.ref, event.id),
        steps=[_step("Post the status update", "chat.status_update", event_id=event.id)],
        incident_id=incident.id,
        actor=actor,
    )
    return event


EFFECTS = {
    "incident.channel": "create and set up the incident channel",
    "incident.refresh": "update the incident header and digest",
    "incident.update": "post the status update",
    "incident.alerts": "post the alerts message",
    "incident.archive_warning": "warn that the incident channel will be archived",
    "incident.archive": "archive the incident channel",
}


# The actions the declare's runs name (whose registration their check reads).
_DECLARE_ACTIONS = tuple(
    step["action"] for _kind, _suffix, steps in _declare_runs("") for step in steps
)
