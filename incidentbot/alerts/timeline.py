"""What alerts put on an incident's timeline: firing, resolved, suggested runbooks, milestones.

Each alert instance is on the timeline once as firing (at its ``startsAt``) and once as
resolved (at its ``endsAt``), however many times Alertmanager repeats it: the events carry a
``source_key`` built from the alert row, which the database keeps unique. Callers hold the
locks of :mod:`incidentbot.alerts.service`, so each event is written by exactly one delivery.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from incidentbot.alerts import records, routing
from incidentbot.alerts.finish import Deferred
from incidentbot.alerts.models import RESOLVED, AlertRecord
from incidentbot.alerts.payload import Payload
from incidentbot.alerts.records import AlertRow, GroupRow, Routed
from incidentbot.config import Settings
from incidentbot.incidents import records as incident_records
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.incidents.records import Masked
from incidentbot.ledger.redact import redact_text, rules_generation

log = logging.getLogger(__name__)

MAX_SUMMARY = 500
# Labels that say which alert it is without saying where; left out of one-line descriptions.
_QUIET = {"alertname", "severity", "prometheus", "monitor", "receive"}


def describe(row: AlertRow | AlertRecord) -> str:
    """``RpcDown instance=rpc-2:8545 job=geth: RPC endpoint not answering`` (redacted input)."""
    labels = " ".join(f"{k}={v}" for k, v in sorted(row.labels.items()) if k not in _QUIET)
    summary = row.annotations.get("summary") or row.annotations.get("description") or ""
    text = (row.alertname or "alert") + (f" {labels}" if labels else "")
    # Masked whole before it is cut: it is logged and put on the timeline.
    return routing.clip(redact_text(text + (f": {summary}" if summary else "")), MAX_SUMMARY)


def _summary(prefix: str, row: AlertRow) -> Masked | str:
    """``prefix`` and :func:`describe`'s text, masked once as it will be written.

    :func:`describe` masks its text, then joins its lines and cuts it; the timeline masks the
    result again, since joined lines can make a secret the lines alone did not show (a label
    that names a key before a value on the next line). A text on one line with single spaces
    that needs no cut is masked whole here, with its prefix, and not again; any other takes
    the long way."""
    generation = rules_generation()
    labels = " ".join(f"{k}={v}" for k, v in sorted(row.labels.items()) if k not in _QUIET)
    summary = row.annotations.get("summary") or row.annotations.get("description") or ""
    text = (row.alertname or "alert") + (f" {labels}" if labels else "")
    text += f": {summary}" if summary else ""
    text = prefix + text
    if len(text) <= MAX_SUMMARY and " ".join(text.split()) == text:
        masked = redact_text(text)
        if len(masked) <= MAX_SUMMARY:
            return Masked(masked, generation)
    return prefix + describe(row)


class _Masker:
    """Masks an event batch's short texts (fingerprints, times, rule names: a batch repeats
    most of them) once each, under the rules' generation read before the first: the batch's
    writer keeps them as they are while those rules are in force, and masks them again if a
    rule was added since (:class:`~incidentbot.incidents.records.Masked`)."""

    __slots__ = ("_done", "generation")

    def __init__(self) -> None:
        self.generation = rules_generation()
        self._done: dict[str, Masked] = {}

    def __call__(self, value: str | None) -> Masked | None:
        if value is None:
            return None
        known = self._done.get(value)
        if known is None:
            known = self._done[value] = Masked(redact_text(value), self.generation)
        return known

    def text(self, value: str | None) -> str | None:
        """The value masked, as :meth:`__call__` masks it, without its wrapper."""
        if value is None:
            return None
        known = self._done.get(value)
        if known is None:
            known = self._done[value] = Masked(redact_text(value), self.generation)
        return known.value


def _data(row: AlertRow, mask: _Masker) -> dict[str, Any] | Masked:
    """The entry's data. When the alert's labels, annotations and URL are the ones this
    notification's payload masked, under the rules the batch's short texts are masked under,
    every text in it is masked under one generation: it goes whole, as one :class:`Masked`,
    and the batch's writer does not walk it (it masks it all again if a rule was added
    since). Otherwise each value says how it was masked."""
    if row.masked_under is not None and row.masked_under == mask.generation:
        text = mask.text
        return Masked(
            {
                "alert_id": row.id,
                "fingerprint": text(row.fingerprint),
                "starts_at": text(row.starts_at.isoformat()),
                "ends_at": text(row.ends_at.isoformat() if row.ends_at else None),
                "labels": row.labels,
                "annotations": row.annotations,
                "generator_url": row.generator_url,
                "rule": text(row.rule),
                "severity": text(row.severity),
                "service": text(row.service),
                "group_id": row.group_id,
            },
            mask.generation,
        )

    def masked(value: Any) -> Any:
        # Labels, annotations and the URL of this notification's payload were masked by the
        # payload's walk: not again while the rules are the same.
        if row.masked_under is None or value is None:
            return value
        return Masked(value, row.masked_under)

    return {
        "alert_id": row.id,
        "fingerprint": mask(row.fingerprint),
        "starts_at": mask(row.starts_at.isoformat()),
        "ends_at": mask(row.ends_at.isoformat() if row.ends_at else None),
        "labels": masked(row.labels),
        "annotations": masked(row.annotations),
        "generator_url": masked(row.generator_url),
        "rule": mask(row.rule),
        "severity": mask(row.severity),
        "service": mask(row.service),
        "group_id": row.group_id,
    }


def attach(
    session: Session,
    settings: Settings,
    incident: Incident,
    rows: Iterable[Routed],
    *,
    actor: str,
    now: datetime,
    later: Deferred | None = None,
) -> int:
    """Attach unattached alerts to ``incident``: each goes on its timeline as firing, and the
    impact-started and detected milestones move earlier if an alert started earlier. With
    ``later``, the attach and the timeline entries are written with the delivery
    (:mod:`incidentbot.alerts.finish`)."""
    assert incident.id is not None
    attached = [row for row, _alert, _route in rows]
    if later is not None:
        later.attach(attached, incident.id)
    else:
        records.attach(session, attached, incident.id)
    earliest: datetime | None = None
    events = []
    mask = _Masker()
    for row in attached:
        started = min(row.starts_at, now)
        earliest = started if earliest is None else min(earliest, started)
        summary = _summary("Alert firing: ", row)
        events.append((summary, started, _data(row, mask), f"alert:{row.id}:firing"))
    _record_many(session, later, incident, "alert.firing", actor, events, now=now)
    count = len(events)
    if earliest is not None:
        for milestone in ("impact_started", "detected"):
            current = incident.milestone(milestone)
            if current is None or earliest < current:
                if later is not None:  # the entries made so far go first, as they did
                    later.flush(session)
                svc.set_milestone(
                    session, settings, incident.ref, milestone, earliest, actor=actor, now=now
                )
    return count


def _record_many(
    session: Session,
    later: Deferred | None,
    incident: Incident,
    kind: str,
    actor: str,
    events: list[Any],
    *,
    now: datetime,
) -> None:
    """The entries written now, or masked now and written with the delivery (``later``)."""
    if later is None:
        svc.record_many(session, incident, kind, actor, events, now=now)
    elif events:
        later.events.extend(incident_records.event_rows(incident, kind, actor, events, now=now))


def record_resolved(
    session: Session,
    rows: list[AlertRow],
    incident: Incident,
    *,
    actor: str,
    now: datetime,
    later: Deferred | None = None,
) -> None:
    """The alerts' resolutions on ``incident``'s timeline (at ``endsAt``, never in the future).
    Called once per alert instance: when it resolves while attached, or when it is attached
    already resolved."""
    mask = _Masker()
    events = [
        (
            _summary("Alert resolved: ", row),
            min(row.ends_at or row.resolved_received_at or now, now),
            _data(row, mask),
            f"alert:{row.id}:resolved",
        )
        for row in rows
        if row.status == RESOLVED
    ]
    _record_many(session, later, incident, "alert.resolved", actor, events, now=now)


def group_attached(
    session: Session,
    incident: Incident,
    group: GroupRow,
    payload: Payload,
    *,
    actor: str,
    now: datetime,
) -> None:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(payload.group_labels.items())) or "-"
    svc.record(
        session,
        incident,
        "alert.group_attached",
        actor,
        f"Alertmanager group {{{labels}}} joined {incident.ref}: it carries alerts already "
        "on this incident",
        now=now,
        data={"group_id": group.id, "group_labels": payload.group_labels},
    )


def suggest_runbooks(
    session: Session,
    incident: Incident,
    rows: Iterable[Routed],
    *,
    actor: str,
    now: datetime,
    declared_now: bool = False,
    later: Deferred | None = None,
) -> int:
    """One ``runbook.suggested`` event per distinct runbook and parameters on the incident
    (restart node rpc-1, restart node rpc-2, ...), however many alerts suggest it.
    ``declared_now``: the incident was declared in this transaction, so no other one can
    have suggested anything for it yet (nothing to look up, nothing to collide with)."""
    wanted: dict[str, tuple[AlertRow, routing.Route, routing.Suggestion]] = {}
    for row, alert, r in rows:
        suggestion = routing.suggestion(r.rule, alert)
        if suggestion is None:
            continue
        ident = json.dumps([suggestion.runbook, sorted(suggestion.params.items())])
        key = f"runbook:{incident.id}:{hashlib.sha256(ident.encode()).hexdigest()[:32]}"
        wanted.setdefault(key, (row, r, suggestion))
    if not wanted:
        return 0

    # Masked here, as the batch's writer would mask them, each distinct text once (a storm
    # suggests one runbook per alert: the runbook's and the rule's names repeat in every
    # entry); the writer keeps them as they are while these rules are in force.
    mask = _Masker()
    text = mask.text

    def events(todo: dict[str, tuple[AlertRow, routing.Route, routing.Suggestion]]) -> list[Any]:
        return [
            (
                mask(f"{suggestion.describe()} (alert {row.alertname}, rule {r.rule_name})"),
                now,
                Masked(
                    {
                        "runbook": text(suggestion.runbook),
                        "params": {k: text(v) for k, v in suggestion.params.items()},
                        "missing": [text(m) for m in suggestion.missing],
                        "alert_id": row.id,
                        "rule": text(r.rule_name),
                    },
                    mask.generation,
                ),
                key,
            )
            for key, (row, r, suggestion) in todo.items()
        ]

    kind = "runbook.suggested"
    if declared_now:  # one INSERT for them all (or with the delivery's, ``later``)
        _record_many(session, later, incident, kind, actor, events(wanted), now=now)
        return len(wanted)
    if later is not None:  # the entries made so far go first, as they did
        later.flush(session)
    # Another group's delivery may add the same suggestion to this incident at the same
    # moment (its alerts share the incident): if the batch collides, the other one has
    # committed by then, so the second look finds what it wrote.
    for _attempt in range(2):
        done = set(
            session.exec(
                select(TimelineEvent.source_key).where(col(TimelineEvent.source_key).in_(wanted))
            )
        )
        todo = {k: v for k, v in wanted.items() if k not in done}
        if not todo:
            return 0
        try:
            with session.begin_nested():
                svc.record_many(
                    session, incident, "runbook.suggested", actor, events(todo), now=now
                )
            return len(todo)
        except IntegrityError:
            log.debug("runbook suggestions for %s collided; looking again", incident.ref)
    return 0
