"""The incident's timeline as a postmortem document tells it.

Which events are part of the story (not bookkeeping), the category each is shown under, and
what each says: role changes name the role by its label, runbook events are said by
:mod:`incidentbot.postmortems.runs`, everything else by its summary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from incidentbot.people import Directory
from incidentbot.postmortems import runs as pm_runs
from incidentbot.postmortems.contents import Entry, RunDoc
from incidentbot.postmortems.metrics import EventLike

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


def story(events: list[EventLike]) -> list[tuple[datetime, EventLike]]:
    """The events the document tells, each at the time it is told at, in that order: no
    bookkeeping, nothing about the postmortem itself, one row per runbook run (its last
    event: the steps are in the Actions taken section), a milestone at its own time (set
    later by hand, it is told where it happened)."""
    # What each kind is, decided once per kind (a long timeline has a handful of kinds).
    kinds: dict[str, tuple[bool, bool]] = {}  # kind -> (told, a runbook run's event)
    for kind in {ev.kind for ev in events}:
        run = kind.startswith("runbook.") and kind != "runbook.suggested"
        skip = kind in NOISE or is_postmortem(kind) or kind.startswith("runbook.step_")
        kinds[kind] = (not skip, run)
    last_of_run: dict[object, int] = {}
    for ev in events:
        if kinds[ev.kind][1]:
            run_id = ev.data.get("run_id")
            if run_id is not None and ev.id is not None:
                last_of_run[run_id] = ev.id
    told: list[tuple[datetime, EventLike]] = []
    for ev in events:
        keep, run = kinds[ev.kind]
        if not keep:
            continue
        if run:
            run_id = ev.data.get("run_id")
            if run_id is not None and last_of_run.get(run_id) != ev.id:
                continue
        told.append((_told_at(ev) if ev.kind == "milestone.set" else ev.occurred_at, ev))
    told.sort(key=lambda pair: pair[0])  # stable: same time keeps the recorded order
    return told


def _told_at(ev: EventLike) -> datetime:
    if ev.kind == "milestone.set" and isinstance(ev.data.get("at"), str):
        try:
            at = datetime.fromisoformat(str(ev.data["at"]))
        except ValueError:
            return ev.occurred_at
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return ev.occurred_at


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


def entries(
    story: list[tuple[datetime, EventLike]],
    fmt: Callable[[datetime], str],
    runs: dict[int, RunDoc],
    text: Callable[[str], str],
    names: Directory,
    role_labels: dict[str, str],
) -> list[Entry]:
    """The story's entries as the document shows them: time, who, category and what. What
    depends on the kind (said by its summary or from its data) is decided once per kind."""
    by_kind: dict[str, tuple[str, bool]] = {}  # kind -> (category, said by its summary)
    out = []
    for at, ev in story:
        kind = ev.kind
        known = by_kind.get(kind)
        if known is None:
            plain = kind not in _ROLE_KINDS and (
                not kind.startswith("runbook.") or kind == "runbook.suggested"
            )
            known = by_kind[kind] = (category(kind), plain)
        said = text(ev.summary) if known[1] else describe(ev, runs, text, names, role_labels)
        out.append(Entry(fmt(at), names(ev.actor), known[0], kind, said))
    return out


_ROLE_KINDS = ("role.assigned", "role.handover", "role.unassigned")


def describe(
    ev: EventLike,
    runs: dict[int, RunDoc],
    text: Callable[[str], str],
    names: Directory,
    role_labels: dict[str, str],
) -> str:
    """The event as the document says it. Role changes name the role by its label; runbook
    events are said from their data (their stored summaries carry timings measured on the
    database clock)."""
    kind = ev.kind
    if kind in _ROLE_KINDS and ev.data.get("user"):
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
