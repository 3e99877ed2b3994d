"""The incident lifecycle core, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from incidentbot import db
from incidentbot.errors import DomainError, NotFound
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent
from tests.conftest import count

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _declare(engine, settings, title="RPC p99 latency above 2s on mainnet", sev="2", **kw):
    with db.transaction(engine) as s:
        return svc.declare(s, settings, title=title, severity=sev, actor="cli:alice", **kw)


def _events(engine, ref="INC-1"):
    with db.transaction(engine) as s:
        return svc.timeline(s, svc.get(s, ref))


def test_full_lifecycle_records_every_change(engine, settings):
    inc = _declare(engine, settings, fields={"chain": "ethereum", "network": "mainnet"}, now=T0)
    assert inc.ref == "INC-1" and inc.severity == "SEV2" and inc.status == "triage"
    steps = [
        lambda s, t: svc.set_severity(s, settings, "INC-1", "sev1", actor="cli:bob", now=t),
        lambda s, t: svc.set_status(s, settings, "INC-1", "investigating", actor="cli:bob", now=t),
        lambda s, t: svc.assign_role(
            s, settings, "INC-1", "scribe", "carol", actor="cli:bob", now=t
        ),
        lambda s, t: svc.assign_role(s, settings, "INC-1", "ic", "bob", actor="cli:alice", now=t),
        lambda s, t: svc.add_note(
            s, settings, "INC-1", "geth on rpc-2 is 40 blocks behind", actor="cli:carol", now=t
        ),
        lambda s, t: svc.set_status(s, settings, "INC-1", "monitoring", actor="cli:bob", now=t),
        lambda s, t: svc.resolve(
            s, settings, "INC-1", "Failed over to rpc-3", actor="cli:bob", now=t
        ),
        lambda s, t: svc.close(s, settings, "INC-1", actor="cli:bob", now=t),
    ]
    for i, step in enumerate(steps, start=1):
        with db.transaction(engine) as s:
            step(s, T0 + timedelta(minutes=i))

    with db.transaction(engine) as s:
        inc = svc.get(s, "inc-1")
        roles = {a.role: a.user for a in svc.active_roles(s, inc)}
    assert inc.status == "closed" and inc.severity == "SEV1" and inc.commander == "bob"
    assert roles == {"commander": "bob", "scribe": "carol"}
    assert inc.acknowledged_at == T0 + timedelta(minutes=2)
    assert inc.mitigated_at == T0 + timedelta(minutes=6)
    assert inc.resolved_at == T0 + timedelta(minutes=7)
    assert inc.closed_at == T0 + timedelta(minutes=8)
    assert inc.resolution_summary == "Failed over to rpc-3"

    events = _events(engine)
    assert [e.kind for e in events] == [
        "incident.declared",
        "role.assigned",
        "severity.changed",
        "status.changed",
        "role.assigned",
        "role.handover",
        "note",
        "status.changed",
        "incident.resolved",
        "incident.closed",
    ]
    assert events[2].summary == "Raised severity SEV2 → SEV1" and events[2].actor == "cli:bob"
    assert events[5].summary == "bob is commander (handover from cli:alice)"
    assert all(e.occurred_at.tzinfo is not None for e in events)


def test_reopen_clears_resolution_milestones(engine, settings):
    _declare(engine, settings)
    with db.transaction(engine) as s:
        svc.resolve(s, settings, "INC-1", "restarted geth", actor="cli:bob")
    with db.transaction(engine) as s:
        inc = svc.reopen(s, settings, "INC-1", actor="cli:bob", reason="lag is back")
    assert inc.status == "investigating" and inc.resolved_at is None
    assert _events(engine)[-1].summary == "Reopened: lag is back"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (
            lambda s, st: svc.set_severity(s, st, "INC-1", "SEV5", actor="x"),
            "unknown severity 'SEV5': allowed are SEV1, SEV2, SEV3, SEV4",
        ),
        (lambda s, st: svc.set_severity(s, st, "INC-1", "2", actor="x"), "INC-1 is already SEV2"),
        (
            lambda s, st: svc.set_status(s, st, "INC-1", "fixed", actor="x"),
            "unknown status 'fixed': allowed are triage, investigating, identified, monitoring, "
            "resolved, closed",
        ),
        (
            lambda s, st: svc.set_status(s, st, "INC-1", "resolved", actor="x"),
            "resolving needs a summary: use `resolve <summary>`",
        ),
        (lambda s, st: svc.resolve(s, st, "INC-1", "  ", actor="x"), "resolving needs a summary"),
        (
            lambda s, st: svc.close(s, st, "INC-1", actor="x"),
            "INC-1 is triage: resolve it before closing",
        ),
        (
            lambda s, st: svc.reopen(s, st, "INC-1", actor="x"),
            "INC-1 is triage, not resolved or closed",
        ),
        (
            lambda s, st: svc.assign_role(s, st, "INC-1", "janitor", "bob", actor="x"),
            "unknown role 'janitor': allowed are commander, scribe, comms_lead, ops_lead",
        ),
        (
            lambda s, st: svc.assign_role(s, st, "INC-1", "commander", "cli:alice", actor="x"),
            "cli:alice is already commander of INC-1",
        ),
        (
            lambda s, st: svc.unassign_role(s, st, "INC-1", "commander", actor="x"),
            "an incident always has a commander",
        ),
        (
            lambda s, st: svc.unassign_role(s, st, "INC-1", "scribe", actor="x"),
            "nobody is scribe of INC-1",
        ),
        (lambda s, st: svc.add_note(s, st, "INC-1", " ", actor="x"), "the note is empty"),
        (lambda s, st: svc.set_severity(s, st, "INC-9", "1", actor="x"), "no incident INC-9"),
        (
            lambda s, st: svc.set_severity(s, st, "banana", "1", actor="x"),
            "'banana' is not an incident reference",
        ),
        (
            lambda s, st: svc.set_milestone(
                s, st, "INC-1", "detected", datetime.now(UTC) + timedelta(hours=1), actor="x"
            ),
            "detected time",
        ),
        (
            lambda s, st: svc.set_milestone(s, st, "INC-1", "lunch", datetime.now(UTC), actor="x"),
            "unknown milestone 'lunch'",
        ),
    ],
)
def test_invalid_requests_name_the_problem_and_change_nothing(engine, settings, action, message):
    _declare(engine, settings)
    before = count(engine, "timeline_event")
    with pytest.raises(DomainError) as err, db.transaction(engine) as s:
        action(s, settings)
    assert message in str(err.value)
    assert count(engine, "timeline_event") == before
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
    assert (inc.severity, inc.status, inc.commander) == ("SEV2", "triage", "cli:alice")


def test_declare_validation(engine, settings):
    for kwargs, message in [
        ({"title": "   "}, "the title is empty"),
        ({"title": "x" * 201}, "at most 200"),
        ({"sev": "sev0"}, "unknown severity 'sev0'"),
        ({"fields": {"planet": "mars"}}, "unknown field 'planet'"),
        ({"impact_started_at": datetime.now(UTC) + timedelta(days=1)}, "is in the future"),
    ]:
        with pytest.raises(DomainError, match=message):
            _declare(engine, settings, **kwargs)
    assert count(engine, "incident") == 0 and count(engine, "timeline_event") == 0


def test_declare_with_allowed_field_values(engine, tmp_path):
    from incidentbot.config import FieldSpec, Settings

    st = Settings(
        data_dir=tmp_path,
        fields=[
            FieldSpec(name="chain", label="Chain", allowed=["ethereum", "solana"], required=True)
        ],
    )
    with pytest.raises(DomainError, match="missing required field"):
        _declare(engine, st)
    with pytest.raises(DomainError, match="'cosmos' is not an allowed chain: allowed are"):
        _declare(engine, st, fields={"chain": "cosmos"})
    assert _declare(engine, st, fields={"chain": "solana"}).fields == {"chain": "solana"}


def test_idempotency_key_returns_the_same_incident(engine, settings):
    first = _declare(engine, settings, idempotency_key="slack:trigger:abc")
    again = _declare(engine, settings, idempotency_key="slack:trigger:abc")
    assert first.number == again.number == 1
    assert count(engine, "incident") == 1
    assert count(engine, "timeline_event") == 2  # declared, commander: not written again
    # The repeat took no number: the next incident is INC-2.
    assert _declare(engine, settings, idempotency_key="slack:trigger:def").number == 2


def test_past_milestones_keep_their_offsets(engine, settings):
    berlin = timezone(timedelta(hours=1))
    impact = datetime(2026, 11, 22, 4, 5, 6, 789000, tzinfo=berlin)
    inc = _declare(engine, settings, impact_started_at=impact, now=T0 + timedelta(hours=1))
    with db.transaction(engine) as s:
        stored = s.exec(select(Incident).where(Incident.id == inc.id)).one()
    assert stored.impact_started_at == impact
    assert stored.impact_started_at.utcoffset() == timedelta(0)
    assert stored.impact_started_at.hour == 3  # 04:05 at +01:00 is 03:05 UTC


def test_naive_datetime_is_refused(engine, settings):
    with pytest.raises(Exception, match="naive datetime"), db.transaction(engine) as s:
        svc.declare(s, settings, title="x", severity="1", actor="a", now=datetime(2026, 1, 1))


def test_timeline_is_append_only(engine, settings):
    _declare(engine, settings)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE timeline_event SET summary = 'rewritten'"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM timeline_event"))
    assert count(engine, "timeline_event") == 2


def test_timeline_orders_by_time_then_insertion(engine, settings):
    _declare(engine, settings, now=T0)
    with db.transaction(engine) as s:
        svc.add_note(s, settings, "INC-1", "later", actor="a", now=T0 + timedelta(minutes=5))
        svc.add_note(
            s,
            settings,
            "INC-1",
            "pinned from before",
            actor="a",
            now=T0 + timedelta(minutes=5),
            occurred_at=T0 - timedelta(minutes=3),
        )
        svc.add_note(
            s, settings, "INC-1", "same time, second", actor="a", now=T0 + timedelta(minutes=5)
        )
    summaries = [e.summary for e in _events(engine)]
    assert summaries[0] == "pinned from before"
    assert summaries[-2:] == ["later", "same time, second"]


def test_fifty_concurrent_declares_get_gap_free_numbers(engine, settings):
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            _declare(engine, settings, title=f"node {i} down", sev=str(1 + i % 4))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.transaction(engine) as s:
        numbers = sorted(i.number for i in s.exec(select(Incident)))
        declared = s.exec(select(TimelineEvent).where(TimelineEvent.kind == "incident.declared"))
        titles = sorted(e.data["title"] for e in declared)
    assert numbers == list(range(1, 51))
    assert titles == sorted(f"node {i} down" for i in range(50))
    assert count(engine, "timeline_event") == 100  # declared + commander assigned, each


def test_get_unknown_incident(engine):
    with pytest.raises(NotFound, match="no incident INC-42"), db.transaction(engine) as s:
        svc.get(s, "INC-42")
