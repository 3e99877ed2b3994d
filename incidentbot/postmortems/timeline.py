"""The incident's timeline as a postmortem document tells it.

Which events are part of the story (not bookkeeping), the category each is shown under, and
what each says: role changes name the role by its label, runbook events are said by
:mod:`incidentbot.postmortems.runs`, everything else by its summary.
"""

from __future__ import annotations

from collections.abc import Callable

from incidentbot.incidents.models import TimelineEvent
from incidentbot.people import Directory
from incidentbot.postmortems import runs as pm_runs
from incidentbot.postmortems.contents import RunDoc

# Timeline events that are bookkeeping, not part of the story.
NOISE = frozenset(
    {
        "channel.created",
        "header.posted",
        "responders.invited",
        "participant.joined",
        "runbook.step_started",
    }
)
CATEGORIES = {
    "status.changed": "status",
    "severity.changed": "severity",
    "milestone.set": "milestone",
    "note": "note",
    "timeline.pinned": "pin",
    "status.update": "update",
    "effect.failed": "problem",
}


def story(events: list[TimelineEvent]) -> list[TimelineEvent]:
    """The events the document tells: no bookkeeping, nothing about the postmortem itself."""
    return [ev for ev in events if ev.kind not in NOISE and not is_postmortem(ev.kind)]


def is_postmortem(kind: str) -> bool:
    return kind.startswith("postmortem.")


def category(kind: str) -> str:
    if kind in CATEGORIES:
        return CATEGORIES[kind]
    head = kind.split(".", 1)[0]
    return {
        "incident": "incident",
        "role": "role",
        "page": "page",
        "runbook": "runbook",
        "alert": "alert",
    }.get(head, "other")


def describe(
    ev: TimelineEvent,
    runs: dict[int, RunDoc],
    text: Callable[[str], str],
    names: Directory,
    role_labels: dict[str, str],
) -> str:
    """The event as the document says it. Role changes name the role by its label; runbook
    events are said from their data (their stored summaries carry timings measured on the
    database clock)."""
    kind = ev.kind
    if kind in ("role.assigned", "role.handover", "role.unassigned") and ev.data.get("user"):
        role = role_labels.get(str(ev.data.get("role")), str(ev.data.get("role")))
        who = names(str(ev.data["user"]))
        if kind == "role.unassigned":
            return f"{who} is no longer {role.lower()}"
        previous = ev.data.get("previous")
        return f"{who} is {role.lower()}" + (
            f" (handover from {names(str(previous))})" if previous else ""
        )
    if not kind.startswith("runbook.") or kind == "runbook.suggested":
        return text(ev.summary)
    return pm_runs.describe(ev, runs, text)
