"""Who took part in an incident, as its postmortem document names them.

:func:`actors` is everyone the document names (to look their names up); :func:`participants`
is the people among them who took part, one row a person, with the roles they held.
"""

from __future__ import annotations

import re
from datetime import datetime

from incidentbot.incidents.models import Incident
from incidentbot.people import Directory, plain_id
from incidentbot.people.render import event_people
from incidentbot.postmortems.contents import Participant
from incidentbot.postmortems.metrics import Fmt
from incidentbot.postmortems.rows import Rows
from incidentbot.postmortems.timeline import NOISE, is_postmortem

_MENTIONED = re.compile(r"<@([UW][A-Z0-9]+)")


def actors(rows: Rows, incident: Incident) -> set[str]:
    """Everyone the document names: actors, role holders, requesters, approvers, owners, and
    people mentioned in what was recorded or written."""
    out: set[str] = {e.actor for e in rows.events}
    out.update(r.user for r in rows.roles)
    out.update(r.assigned_by for r in rows.roles)
    out.update(r.requester for r in rows.runs)
    out.update(a.user for found in rows.approvals.values() for a in found)
    out.update(p.requested_by for p in rows.pages)
    out.update(i.owner for i in rows.items if i.owner)
    out.update(x for x in (incident.commander, incident.declared_by, rows.postmortem.owner) if x)
    for ev in rows.events:
        if "<@" in ev.summary:
            out.update(_MENTIONED.findall(ev.summary))
        if ev.data and isinstance(ev.data, dict):
            out.update(event_people(ev.data))
    for text in (rows.postmortem.sections or {}).values():
        out.update(_MENTIONED.findall(str(text)))
    return out


def participants(
    rows: Rows, names: Directory, role_labels: dict[str, str], fmt: Fmt, system: set[str]
) -> list[Participant]:
    """The people who acted, held a role, requested or approved a run, in the order they first
    showed up; ``system`` are the actors that are not people."""
    first: dict[str, datetime] = {}
    counts: dict[str, int] = {}
    held: dict[str, list[str]] = {}

    ids: dict[str | None, str | None] = {}  # actor -> the participant it is (None: not one)

    def seen(actor: str | None, when: datetime) -> str | None:
        try:
            who = ids[actor]
        except KeyError:
            plain = plain_id(actor)
            who = ids[actor] = plain if plain and plain not in system else None
        if who is None:
            return None
        if who not in first or when < first[who]:
            first[who] = when
        return who

    for ev in rows.events:
        if (ev.kind in NOISE and ev.kind != "participant.joined") or is_postmortem(ev.kind):
            continue
        who = seen(ev.actor, ev.occurred_at)
        if who and ev.kind != "participant.joined":
            counts[who] = counts.get(who, 0) + 1
    for r in rows.roles:
        who = seen(r.user, r.started_at)
        if who:
            label = role_labels.get(r.role, r.role)
            if label not in held.setdefault(who, []):
                held[who].append(label)
    for run in rows.runs:
        seen(run.requester, run.created_at)
        for a in rows.approvals.get(run.id or 0, []):
            seen(a.user, a.at)
    # One row per name: a Slack id and the PagerDuty name of the same person are one person.
    merged: dict[str, tuple[datetime, list[str], int, str]] = {}
    for w in sorted(first, key=lambda w: (first[w], w)):
        key = names(w).casefold()
        when, roles_held, n, shown = merged.get(key, (first[w], [], 0, names(w)))
        roles_held = roles_held + [r for r in held.get(w, []) if r not in roles_held]
        merged[key] = (min(when, first[w]), roles_held, n + counts.get(w, 0), shown)
    ordered = sorted(merged.values(), key=lambda m: (m[0], m[3].casefold()))
    return [Participant(shown, roles_held, fmt(when), n) for when, roles_held, n, shown in ordered]
