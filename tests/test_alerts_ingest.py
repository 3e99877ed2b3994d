"""Ingesting notifications on SQLite and PostgreSQL: declare or attach, dedupe, the timeline,
milestones, unmatched alerts, and what survives a failure."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts import queries, service
from incidentbot.alerts.models import AlertDelivery, AlertGroup, AlertRecord
from incidentbot.clock import utcnow
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import Incident, TimelineEvent
from tests.conftest import count
from tests.slack_harness import wait_for
from tests.test_alerts_support import T0, alert, notification, resolved, settings_for


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def rpc(n: int, **kw):
    kw.setdefault("chain", "ethereum")
    kw.setdefault("starts_at", T0 + timedelta(minutes=n))
    return alert("RpcEndpointDown", instance=f"rpc-{n}:8545", **kw)


def timeline(engine, ref="INC-1"):
    with db.transaction(engine) as s:
        return svc.timeline(s, svc.get(s, ref))


def kinds(engine, ref="INC-1", prefix="alert."):
    return [e.kind for e in timeline(engine, ref) if e.kind.startswith(prefix)]


def incidents(engine):
    with db.transaction(engine) as s:
        return list(s.exec(select(Incident).order_by(Incident.number)))


def alerts(engine):
    with db.transaction(engine) as s:
        return list(s.exec(select(AlertRecord).order_by(AlertRecord.id)))


def test_a_firing_group_declares_then_later_alerts_attach(engine, settings):
    out = service.ingest(engine, settings, notification([rpc(1)]))
    assert (out.declared, out.incident, out.new, out.attached) == (True, "INC-1", 1, 1)

    inc = incidents(engine)[0]
    assert inc.title == "RpcEndpointDown on rpc-1:8545 (ethereum)"
    assert (inc.severity, inc.declared_by, inc.fields) == ("SEV1", "alertmanager", {
        "chain": "ethereum"})  # fmt: skip
    assert inc.idempotency_key.startswith("alertmanager:")
    assert inc.impact_started_at == inc.detected_at == T0 + timedelta(minutes=1)
    assert "rule rpc-down, service rpc" in inc.description
    with db.transaction(engine) as s:
        assert queries.incident_service(s, inc) == "rpc"  # whom paging should page

    out = service.ingest(engine, settings, notification([rpc(1), rpc(2)]))
    assert (out.declared, out.incident, out.new, out.repeats) == (False, "INC-1", 1, 1)
    assert len(incidents(engine)) == 1
    assert kinds(engine) == ["alert.firing", "alert.firing"]
    suggested = [e for e in timeline(engine) if e.kind == "runbook.suggested"]
    assert [e.data["params"] for e in suggested] == [{"node": "rpc-1:8545"}, {"node": "rpc-2:8545"}]
    assert all(e.actor == "alertmanager" for e in suggested)


def test_repeats_are_counted_but_are_not_new_events(engine, settings):
    for _ in range(3):
        out = service.ingest(engine, settings, notification([rpc(1), rpc(2)], truncatedAlerts=3))
    assert out.summary() == (
        "2 alert(s): 0 new, 2 repeated; 3 more left out by Alertmanager (max_alerts); "
        "attached to INC-1 (0 attached)"
    )
    assert kinds(engine) == ["alert.firing", "alert.firing"]
    assert [a.received_count for a in alerts(engine)] == [3, 3]
    assert count(engine, "alert_delivery") == 3
    assert len([e for e in timeline(engine) if e.kind == "runbook.suggested"]) == 2


def test_resolved_alerts_go_on_the_timeline_once_at_their_end(engine, settings):
    a1, a2 = rpc(1), rpc(2)
    service.ingest(engine, settings, notification([a1, a2]))
    ended = T0 + timedelta(minutes=9)
    out = service.ingest(engine, settings, notification([resolved(a1, ended), a2]))
    assert out.resolved == 1
    service.ingest(engine, settings, notification([resolved(a1, ended), a2]))  # a repeat
    # a late copy of the firing notification does not revive the resolved alert
    service.ingest(engine, settings, notification([a1, a2]))
    events = [e for e in timeline(engine) if e.kind.startswith("alert.")]
    assert [e.kind for e in events] == ["alert.firing", "alert.firing", "alert.resolved"]
    assert events[2].occurred_at == ended
    assert events[2].data["labels"]["instance"] == "rpc-1:8545"
    rows = alerts(engine)
    assert [r.status for r in rows] == ["resolved", "firing"]
    assert rows[0].ends_at == ended
    # the incident stays open: people resolve incidents, alerts only inform them
    assert incidents(engine)[0].status == "triage"


def test_an_alert_first_seen_resolved_is_recorded_without_an_incident(engine, settings):
    out = service.ingest(engine, settings, notification([resolved(rpc(1))]))
    assert (out.incident, out.new, out.resolved) == (None, 1, 1)
    assert incidents(engine) == []
    with db.transaction(engine) as s:
        [view] = queries.list_alerts(s, status="resolved")
    assert view.incident_ref is None and view.alert.rule == "rpc-down"


def test_milestones_come_from_the_earliest_start_and_never_the_future(engine, settings):
    future = utcnow() + timedelta(hours=1)
    service.ingest(engine, settings, notification([rpc(5, starts_at=future)]))
    inc = incidents(engine)[0]
    assert inc.impact_started_at <= inc.declared_at
    assert inc.detected_at == inc.impact_started_at
    firing = [e for e in timeline(engine) if e.kind == "alert.firing"]
    assert firing[0].occurred_at <= firing[0].recorded_at

    # an alert of the group that started earlier moves both milestones earlier
    service.ingest(engine, settings, notification([rpc(5, starts_at=future), rpc(2)]))
    inc = incidents(engine)[0]
    assert inc.impact_started_at == inc.detected_at == T0 + timedelta(minutes=2)
    moved = [e.data["milestone"] for e in timeline(engine) if e.kind == "milestone.set"]
    assert moved == ["impact_started", "detected", "impact_started", "detected"]


def test_after_the_incident_is_resolved_a_new_firing_declares_a_new_one(engine, settings):
    a1 = rpc(1)
    service.ingest(engine, settings, notification([a1]))
    with db.transaction(engine) as s:
        svc.resolve(s, settings, "INC-1", "restarted geth", actor="alice")
    # Alertmanager repeating the same, still-firing alert does not reopen anything
    out = service.ingest(engine, settings, notification([a1]))
    assert (out.incident, out.repeats) == (None, 1)
    assert len(incidents(engine)) == 1
    # the same alert firing again (a new startsAt) is a new episode: a new incident
    again = rpc(1, starts_at=T0 + timedelta(hours=2))
    out = service.ingest(engine, settings, notification([again]))
    assert (out.declared, out.incident) == (True, "INC-2")
    first, second = incidents(engine)
    assert first.idempotency_key != second.idempotency_key
    with db.transaction(engine) as s:
        group = s.exec(select(AlertGroup)).one()
    assert (group.incidents_declared, group.incident_id) == (2, second.id)


def test_unmatched_alerts_are_stored_and_listed_never_dropped(engine, settings):
    out = service.ingest(
        engine, settings, notification([alert("DiskFilling", instance="idx-1")], group="Disk")
    )
    assert (out.incident, out.unmatched, out.new) == (None, 1, 1)
    out = service.ingest(
        engine, settings, notification([alert("Chatty", severity="info")], group="Chatty")
    )
    assert (out.incident, out.unmatched) == (None, 0)  # matched a rule that never declares
    assert incidents(engine) == []
    with db.transaction(engine) as s:
        unmatched = queries.list_alerts(s, unmatched=True)
        everything = queries.list_alerts(s)
        with pytest.raises(DomainError, match="out of range"):
            queries.list_alerts(s, limit=0)
    assert [v.alert.alertname for v in unmatched] == ["DiskFilling"]
    assert "no rule matched" in unmatched[0].line()
    assert [v.alert.alertname for v in everything] == ["Chatty", "DiskFilling"]
    assert everything[0].alert.rule == "info-only"


def test_an_unmatched_alert_in_a_group_with_an_incident_joins_it(engine, settings):
    service.ingest(engine, settings, notification([rpc(1)]))
    stray = alert("RpcEndpointDown", instance="rpc-9:8545", env="lab")
    stray["labels"]["alertname"] = "RpcEndpointDownLab"  # no rule matches this name
    out = service.ingest(engine, settings, notification([rpc(1), stray]))
    assert (out.incident, out.unmatched, out.attached) == ("INC-1", 1, 1)
    with db.transaction(engine) as s:
        [view] = queries.list_alerts(s, unmatched=True)
    assert view.incident_ref == "INC-1"


def test_the_same_alert_via_another_group_attaches_to_its_incident(engine, settings):
    a1 = rpc(1)
    service.ingest(engine, settings, notification([a1]))
    other = notification([a1, rpc(3)], receiver="incidentbot-ha")
    other["groupKey"] = '{}/{team="rpc"}:{chain="ethereum"}'
    out = service.ingest(engine, settings, other)
    assert (out.declared, out.incident, out.new) == (False, "INC-1", 1)
    assert len(incidents(engine)) == 1
    assert "alert.group_attached" in kinds(engine)
    assert kinds(engine).count("alert.firing") == 2


def test_a_declare_the_policy_refuses_keeps_the_alerts_and_says_why(engine, tmp_path):
    strict = settings_for(
        tmp_path, fields=[{"name": "network", "label": "Network", "required": True}],
        rules=[{"name": "any", "severity": "SEV2"}],
    )  # fmt: skip
    out = service.ingest(engine, strict, notification([rpc(1)]))
    assert out.incident is None and "missing required field(s): network" in out.error
    [row] = alerts(engine)
    assert row.incident_id is None and "network" in row.error
    with db.transaction(engine) as s:
        delivery = s.exec(select(AlertDelivery)).one()
    assert delivery.failed and "could not declare" in delivery.outcome

    fixed = settings_for(
        tmp_path, fields=[{"name": "network", "label": "Network", "required": True}],
        rules=[{"name": "any", "severity": "SEV2", "fields": {"network": "mainnet"}}],
    )  # fmt: skip
    out = service.ingest(engine, fixed, notification([rpc(1)]))  # Alertmanager's next attempt
    assert (out.declared, out.incident, out.error) == (True, "INC-1", None)
    [row] = alerts(engine)
    assert row.incident_id is not None and row.error is None


def test_a_field_value_the_policy_refuses_is_left_out_with_a_note(engine, tmp_path):
    settings = settings_for(
        tmp_path, fields=[{"name": "chain", "label": "Chain", "allowed": ["ethereum", "gnosis"]}],
        rules=[{"name": "any", "fields": {"chain": "{{ labels.chain }}"}}],
    )  # fmt: skip
    out = service.ingest(engine, settings, notification([rpc(1, chain="solana")]))
    assert (out.declared, incidents(engine)[0].fields) == (True, {})
    assert "field left out: 'solana' is not an allowed chain" in out.summary()
    with db.transaction(engine) as s:
        assert "not an allowed chain" in s.exec(select(AlertDelivery)).one().outcome


def test_the_delivery_survives_a_failure_and_a_retry_declares_once(engine, settings):
    calls = []

    def broken(session, settings, incident, actor, service):
        calls.append(incident.ref)
        raise RuntimeError("the ledger is down")

    payload = notification([rpc(1), rpc(2)])
    with pytest.raises(service.IngestFailed) as info:
        service.ingest(engine, settings, payload, on_declare=broken)
    assert calls == ["INC-1"]
    # the declare and its side effects share one transaction: neither is left behind
    assert incidents(engine) == [] and alerts(engine) == []
    assert count(engine, "timeline_event") == 0
    with db.transaction(engine) as s:
        delivery = s.get(AlertDelivery, info.value.delivery_id)
    assert delivery.failed and "the ledger is down" in delivery.outcome
    assert len(delivery.payload["alerts"]) == 2

    declared = []
    out = service.ingest(
        engine,
        settings,
        payload,
        on_declare=lambda s, st, inc, actor, svc: declared.append(inc.ref),
    )
    # The failed attempt's number is given back on SQLite, left unused on PostgreSQL.
    ref = "INC-1" if engine.dialect.name == "sqlite" else "INC-2"
    assert (out.declared, out.incident, declared) == (True, ref, [ref])
    assert count(engine, "alert_delivery") == 2
    assert len(alerts(engine)) == 2


def test_secrets_in_alerts_never_reach_the_timeline_or_the_database(engine, settings):
    leaky = rpc(1, api_key="sk_live_abcdef123456",
                annotations={"summary": "see https://user:pa55word@grafana.local/d/x"})  # fmt: skip
    service.ingest(engine, settings, notification([leaky]))
    with engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("alert_delivery", "alert", "timeline_event", "incident")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    assert "sk_live_abcdef123456" not in dump and "pa55word" not in dump
    assert "grafana.local" in dump  # the rest of the text is kept


def test_concurrent_deliveries_of_one_group_declare_one_incident(engine, settings):
    """Alertmanager HA peers and retries deliver the same group at the same moment."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        payload = notification([rpc(1), rpc(2 + i)])
        barrier.wait()
        try:
            service.ingest(engine, settings, payload)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [i.ref for i in incidents(engine)] == ["INC-1"]
    rows = alerts(engine)
    assert len(rows) == 9 and all(r.incident_id == incidents(engine)[0].id for r in rows)
    assert kinds(engine).count("alert.firing") == 9
    with db.transaction(engine) as s:
        keys = s.exec(select(TimelineEvent.source_key).where(TimelineEvent.kind == "alert.firing"))
        assert len(set(keys)) == 9


def test_a_delivery_that_waited_for_the_group_joins_the_incident_declared_meanwhile(
    engine, settings
):
    """On PostgreSQL the group's statement reads the group's incident too, in a snapshot taken
    before it waits for the group's lock: a delivery that waited while another declared finds
    that incident all the same (read once the lock is its), and declares no second one."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock keeps the second delivery from starting meanwhile")
    declared, release = threading.Event(), threading.Event()
    outcomes: dict[str, service.Outcome] = {}

    def hold(*_args) -> None:  # in the declare's transaction, before its commit
        declared.set()
        assert release.wait(30)

    def first() -> None:
        outcomes["first"] = service.ingest(
            engine, settings, notification([rpc(1)]), on_declare=hold
        )

    def second() -> None:
        # another alert of the group: only the group leads to the incident
        outcomes["second"] = service.ingest(engine, settings, notification([rpc(2)]))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert declared.wait(30)
    threads[1].start()

    def waiting() -> bool:
        with engine.connect() as c:
            found = c.execute(
                text(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND wait_event = 'advisory' AND query LIKE 'WITH locked AS%'"
                )
            ).first()
            return found is not None

    wait_for(waiting, what="the second delivery to wait for the group's lock")
    release.set()
    for t in threads:
        t.join()
    assert outcomes["first"].declared and outcomes["first"].incident == "INC-1"
    assert not outcomes["second"].declared and outcomes["second"].incident == "INC-1"
    assert [i.ref for i in incidents(engine)] == ["INC-1"]
    assert {r.incident_id for r in alerts(engine)} == {incidents(engine)[0].id}
    assert kinds(engine).count("alert.firing") == 2


def test_an_alert_listed_twice_in_one_notification_is_one_instance(engine, settings):
    """A sender may list one alert more than once: each copy is counted, a resolved copy
    resolves it whatever its place, and the timeline has it once."""
    a1, a2 = rpc(1), rpc(2)
    ended = T0 + timedelta(minutes=7)
    out = service.ingest(engine, settings, notification([a1, a1, a2]))
    assert (out.new, out.repeats, out.attached) == (2, 0, 2)
    out = service.ingest(engine, settings, notification([a1, resolved(a1, ended), a2]))
    assert (out.new, out.repeats, out.resolved) == (0, 2, 1)
    out = service.ingest(engine, settings, notification([resolved(a2, ended), a2]))
    assert (out.repeats, out.resolved) == (0, 1)
    rows = alerts(engine)
    assert [(r.status, r.ends_at, r.received_count) for r in rows] == [
        ("resolved", ended, 4),
        ("resolved", ended, 4),
    ]
    assert kinds(engine) == ["alert.firing", "alert.firing", "alert.resolved", "alert.resolved"]


def test_a_notification_of_1100_alerts_is_stored_whole(engine, settings):
    """More alerts than one batch of the upsert: every one stored once, with its own id, and
    counted again as a repeat."""
    many = [alert("DiskFilling", instance=f"idx-{i}") for i in range(1100)]
    body = notification(many, group="Disk")
    out = service.ingest(engine, settings, body)
    assert (out.new, out.unmatched) == (1100, 1100)
    out = service.ingest(engine, settings, body)
    assert (out.new, out.repeats) == (0, 1100)
    rows = alerts(engine)
    assert len({r.id for r in rows}) == 1100
    assert {r.labels["instance"] for r in rows} == {f"idx-{i}" for i in range(1100)}
    assert {r.received_count for r in rows} == {2}
