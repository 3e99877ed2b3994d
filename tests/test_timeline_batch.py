"""Many timeline events written at once (an alert storm writes hundreds): on both back ends they
keep the order given, their masking, their data as given, and a naive time is refused with
nothing written. On PostgreSQL the batch is one statement whatever its size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents.records import Masked
from incidentbot.ledger.redact import MASK, rules_generation
from tests.test_ledger_cost import statements

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _declared(engine, settings) -> int:
    with db.transaction(engine) as s:
        incident = svc.declare(s, settings, title="Batch", severity="SEV3", actor="U1", now=T0)
        assert incident.id is not None
        return incident.id


def test_a_batch_keeps_its_order_data_and_masking(engine, settings):
    incident_id = _declared(engine, settings)
    events = [
        (
            f"event {n} token=hunter2-secret-{n}"
            if n % 2
            else Masked(f"event {n}", rules_generation()),
            T0 - timedelta(minutes=n % 3),  # out of time order: ids follow the order given
            {"n": n, "note": f"password=pw-{n}", "nested": {"ok": [1, "two", None]}},
            f"batch:{n}",
        )
        for n in range(25)
    ]
    with statements(engine) as seen, db.transaction(engine) as s:
        svc.record_many(s, incident_id, "test.batch", "U1", events, now=T0)
    assert seen.count("INSERT timeline_event") == 1, seen

    with db.read(engine) as s:
        stored = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "test.batch"]
    stored.sort(key=lambda e: e.id)
    assert [e.source_key for e in stored] == [f"batch:{n}" for n in range(25)]
    assert [e.data["n"] for e in stored] == list(range(25))
    assert all(e.data["nested"] == {"ok": [1, "two", None]} for e in stored)
    assert all(e.occurred_at.tzinfo is not None for e in stored)
    assert stored[4].occurred_at == T0 - timedelta(minutes=1)
    assert stored[0].summary == "event 0"
    assert "hunter2" not in stored[1].summary and MASK in stored[1].summary
    assert all("pw-" not in str(e.data) for e in stored)


def test_a_naive_time_in_a_batch_is_refused_and_nothing_is_written(engine, settings):
    incident_id = _declared(engine, settings)
    events = [("fine", T0, {}, None), ("naive", datetime(2024, 5, 1, 12, 0), {}, None)]
    with pytest.raises(Exception, match="naive datetime"), db.transaction(engine) as s:
        svc.record_many(s, incident_id, "test.batch", "U1", events, now=T0)
    with db.read(engine) as s:
        kinds = [e.kind for e in svc.timeline(s, svc.get(s, "INC-1"))]
    assert "test.batch" not in kinds
