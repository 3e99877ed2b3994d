"""What an Alertmanager delivery costs in statements, counted (a storm repeats a group's
notification many times): a repeat or a resolve writes its delivery row once, with its outcome,
and the stored rows say what happened."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import select

from incidentbot import db
from incidentbot.alerts import service
from incidentbot.alerts.models import AlertDelivery, AlertRecord
from incidentbot.incidents import service as svc
from tests.test_alerts_support import T0, alert, notification, resolved, settings_for
from tests.test_ledger_cost import begins, statements


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def _rpc(n: int) -> dict:
    return alert(
        "RpcEndpointDown",
        instance=f"rpc-{n}:8545",
        chain="ethereum",
        starts_at=T0 + timedelta(minutes=n),
    )


def _per_delivery(engine, alerts: str = "INSERT alert") -> Counter[str]:
    """A delivery's reads and writes besides its own: the group (one upsert), the alerts (one
    read, one write: ``INSERT alert``, the upsert of what changed, or ``UPDATE alert``, the
    count of a repeat), the group's incident; on PostgreSQL the group's upsert takes the
    delivery's locks first and reads the group's incident after, in the same statement
    (``WITH locked AS (...), g AS (INSERT ...) SELECT ... incident``)."""
    found = Counter({_GROUP_UPSERT[engine.dialect.name]: 1, "SELECT alert": 1, alerts: 1})
    if engine.dialect.name != "postgresql":
        found["SELECT incident"] = 1
    return found + begins(engine, 1)


_GROUP_UPSERT = {"sqlite": "INSERT alert_group", "postgresql": "WITH"}


def test_a_repeat_and_a_resolve_write_their_delivery_once(engine, settings):
    alerts = [_rpc(1), _rpc(2)]
    first = service.ingest(engine, settings, notification(alerts))
    assert first.declared and first.new == 2
    with statements(engine) as seen:
        repeat = service.ingest(engine, settings, notification(alerts))
    assert (repeat.new, repeat.repeats, repeat.incident) == (0, 2, "INC-1")
    # nothing but the count changed: the alerts are one UPDATE, not an upsert; on PostgreSQL
    # that UPDATE is a WITH clause of the delivery's INSERT (one round trip for both), and the
    # group's statement read its incident: three statements and the commit
    if engine.dialect.name == "postgresql":
        expected = Counter({"WITH": 2, "SELECT alert": 1}) + begins(engine, 1)
    else:
        expected = _per_delivery(engine, "UPDATE alert") + Counter({"INSERT alert_delivery": 1})
    assert Counter(seen) == expected, seen

    ended = [resolved(a) for a in alerts]
    with statements(engine) as seen:
        done = service.ingest(engine, settings, notification(ended))
    assert done.resolved == 2
    # the resolves on the timeline in one statement, the delivery written once; on
    # PostgreSQL the timeline's INSERT is a WITH clause of the delivery's
    if engine.dialect.name == "postgresql":
        resolve = Counter({"WITH": 1})
    else:
        resolve = Counter({"INSERT timeline_event": 1, "INSERT alert_delivery": 1})
    assert Counter(seen) == _per_delivery(engine) + resolve, seen

    with db.read(engine) as s:
        deliveries = s.exec(select(AlertDelivery).order_by(AlertDelivery.id)).all()
        stored = s.exec(select(AlertRecord).order_by(AlertRecord.id)).all()
    assert [d.id for d in deliveries] == [first.delivery_id, repeat.delivery_id, done.delivery_id]
    assert all(d.processed_at is not None and not d.failed for d in deliveries)
    assert "2 repeat" in (deliveries[1].outcome or ""), deliveries[1].outcome
    # the alerts keep the delivery that brought them first
    assert [(a.delivery_id, a.received_count, a.status) for a in stored] == [
        (first.delivery_id, 3, "resolved"),
        (first.delivery_id, 3, "resolved"),
    ]


def test_a_new_group_declares_without_reading_snoozes_or_incident_rows(engine, settings):
    """A group's first delivery: the alerts' statements are one each, the timeline's are one
    batch per kind, and a group never on an incident is not looked up for a snooze."""
    with statements(engine) as seen:
        first = service.ingest(engine, settings, notification([_rpc(1), _rpc(2), _rpc(3)]))
    assert first.declared and (first.new, first.attached) == (3, 3)
    found = Counter(seen)
    alerts_side = {
        _GROUP_UPSERT[engine.dialect.name]: 1,  # the upsert (and the locks)
        "SELECT alert": 1,  # the stored instances
        "INSERT alert_delivery": 1,  # named by the new alerts
        "INSERT alert": 1,  # their upsert
        "UPDATE alert": 1,  # attached to the incident declared
        "UPDATE alert_group": 1,  # its incident
        "UPDATE alert_delivery": 1,  # the outcome
    }
    postgresql = engine.dialect.name == "postgresql"
    if postgresql:  # the declare itself is one statement there, and it starts WITH too; the
        # delivery's row is a WITH clause of the alerts' upsert; the attach, the timeline's
        # batches and the group's incident are WITH clauses of the delivery's outcome; the
        # stored instances are read with the incident that may hold them (one statement,
        # its first FROM the incident's)
        alerts_side["WITH"] += 3
        for folded in (
            "SELECT alert",
            "INSERT alert_delivery",
            "INSERT alert",
            "UPDATE alert",
            "UPDATE alert_group",
            "UPDATE alert_delivery",
        ):
            alerts_side[folded] = 0
    assert {k: found[k] for k in alerts_side} == alerts_side, seen
    # the incident that may already hold the alerts (another group's), by id: no row loaded
    # (the declare's key is not looked up: a repeated one inserts nothing)
    assert found["SELECT incident"] == 1, seen
    assert found["SELECT timeline_event"] == 0, seen  # no snooze lookup
    # the three alerts firing and the suggested runbooks: one batch each, and the declare's
    # events one more, on SQLite; on PostgreSQL the declare's are inside its statement and
    # the others in the delivery's
    assert found["INSERT timeline_event"] == (0 if postgresql else 3), seen
    assert sum(found.values()) == (8 if postgresql else 20), seen  # all, COMMIT included
    with db.read(engine) as s:
        kinds = Counter(e.kind for e in svc.timeline(s, svc.get(s, "INC-1")))
    assert kinds["alert.firing"] == 3 and kinds["runbook.suggested"] == 3, kinds


def test_a_delivery_with_a_new_alert_names_its_row_first(engine, settings):
    service.ingest(engine, settings, notification([_rpc(1)]))
    out = service.ingest(engine, settings, notification([_rpc(1), _rpc(2)]))
    assert (out.new, out.repeats, out.attached) == (1, 1, 1)
    with db.read(engine) as s:
        stored = s.exec(select(AlertRecord).order_by(AlertRecord.id)).all()
        delivery = s.get(AlertDelivery, out.delivery_id)
    assert [a.delivery_id for a in stored] == [out.delivery_id - 1, out.delivery_id]
    assert delivery is not None and delivery.processed_at is not None
    assert delivery.outcome == out.summary()


TWIN = "0123456789abcdef"  # a fingerprint


def test_an_alert_stored_through_the_orm_is_the_same_instance_to_the_upsert(engine, settings):
    """Rows written by the column types (the ORM, as earlier versions wrote alerts) and rows
    written by the upsert's own value making compare equal on (fingerprint, startsAt), with
    startsAt given in another zone: a repeat is a repeat, not a second instance."""
    first = service.ingest(engine, settings, notification([_rpc(1)]))
    with db.transaction(engine) as s:
        stored = s.exec(select(AlertRecord)).one()
        twin = AlertRecord(
            fingerprint=TWIN,
            starts_at=stored.starts_at,
            status="firing",
            alertname="RpcEndpointDown",
            labels={"alertname": "RpcEndpointDown"},
            annotations={},
            group_id=stored.group_id,
            delivery_id=first.delivery_id,
            first_received_at=stored.first_received_at,
            last_received_at=stored.last_received_at,
        )
        s.add(twin)
    again = alert("RpcEndpointDown", starts_at=T0 + timedelta(minutes=1))
    again["fingerprint"] = TWIN
    again["startsAt"] = (T0 + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2)))
    again["startsAt"] = again["startsAt"].isoformat()
    out = service.ingest(engine, settings, notification([again]))
    assert (out.new, out.repeats) == (0, 1), out
    with db.read(engine) as s:
        rows = s.exec(select(AlertRecord).where(AlertRecord.fingerprint == TWIN)).all()
    assert [r.received_count for r in rows] == [2]


def test_repeats_are_counted_by_one_update_per_number_of_copies(engine, settings):
    """A delivery that repeats stored alerts (one listed twice), brings a new one and resolves
    another: the new and the resolved go through the upsert, the repeats are counted by an
    ``UPDATE`` per number of copies, and every count and status is right."""
    alerts = [_rpc(1), _rpc(2), _rpc(3)]
    service.ingest(engine, settings, notification(alerts))
    mixed = [alerts[0], alerts[0], alerts[1], resolved(alerts[2]), _rpc(4)]
    with statements(engine) as seen:
        out = service.ingest(engine, settings, notification(mixed))
    assert (out.new, out.repeats, out.resolved, out.attached) == (1, 2, 1, 1), out
    found = Counter(seen)
    if engine.dialect.name == "postgresql":  # counted and attached in the delivery's WITH,
        # the new and the resolved upserted with the delivery's row (WITH d AS (INSERT ...))
        assert (found["UPDATE alert"], found["INSERT alert"]) == (0, 0), seen
        assert found["INSERT alert_delivery"] == found["UPDATE alert_delivery"] == 0, seen
        assert found["WITH"] == 3, seen
    else:
        assert (found["UPDATE alert"], found["INSERT alert"]) == (2 + 1, 1), seen  # + attach
    with db.read(engine) as s:
        stored = s.exec(select(AlertRecord).order_by(AlertRecord.starts_at)).all()
    assert [(a.received_count, a.status) for a in stored] == [
        (3, "firing"),
        (2, "firing"),
        (2, "resolved"),
        (1, "firing"),
    ]
    assert len({a.last_received_at for a in stored[:2]}) == 1  # the repeat's receipt, both
    assert stored[0].last_received_at > stored[0].first_received_at


def test_an_unattached_repeat_follows_the_rules_in_force(engine, tmp_path):
    """A stored alert that no incident holds is routed again by each delivery: a repeat under
    a rule added since is no mere count, and the stored routing changes."""
    lagging = alert("NodeLagging", instance="n-1", env="staging")  # matched by no rule
    first = service.ingest(engine, settings_for(tmp_path), notification([lagging]))
    assert (first.new, first.unmatched, first.declared) == (1, 1, False)
    staging = {"name": "staging", "matchers": ['env="staging"'], "severity": "SEV4",
               "service": "staging", "declare": False}  # fmt: skip
    later = settings_for(tmp_path, rules=[staging])
    out = service.ingest(engine, later, notification([lagging]))
    assert (out.repeats, out.unmatched) == (1, 0), out
    with db.read(engine) as s:
        stored = s.exec(select(AlertRecord)).one()
    assert (stored.rule, stored.severity, stored.service) == ("staging", "SEV4", "staging")
    assert stored.received_count == 2


def test_the_locks_and_the_group_are_one_statement(engine, settings):
    """The group's upsert makes the group once and finds it again; on PostgreSQL it also takes
    the delivery's advisory locks (its group and each alert), every one of them, held to the
    end of the transaction (SQLite's write lock serialises writers there)."""
    from incidentbot.alerts import groups, payload

    parsed, _ = payload.parse(notification([_rpc(2), _rpc(1)]))
    key_hash = service.group_hash(parsed.group_key)
    keys = [f"group:{key_hash}", *sorted(f"alert:{a.fingerprint}" for a in parsed.alerts)]
    postgres = engine.dialect.name == "postgresql"
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND pid = pg_backend_pid() AND granted"
    )
    with db.transaction(engine) as s, statements(engine) as seen:
        row = groups.lock_and_upsert(s, parsed, key_hash, keys, T0)
        if postgres:
            assert s.execute(held).scalar_one() == 3
    sent = [x for x in seen if x.startswith(("INSERT", "UPDATE", "SELECT", "WITH"))]
    assert sent[:1] == [_GROUP_UPSERT[engine.dialect.name]], seen  # one statement, then ours
    assert len(sent) == (2 if postgres else 1), seen
    assert (row.incident_id, row.incidents_declared) == (None, 0)
    with db.transaction(engine) as s:
        again = groups.lock_and_upsert(s, parsed, key_hash, keys, T0)
        if postgres:
            assert s.execute(held).scalar_one() == 3  # the last transaction's are gone
    assert again.id == row.id and again.group_labels == parsed.group_labels


def test_stored_labels_are_compared_as_text_and_parsed_only_when_they_differ(engine, settings):
    """A stored alert's labels are read as their JSON text and compared with the payload's:
    stored in another spelling (compact, another key order), they are parsed, and the
    resolve's timeline entry still shows them as values."""
    service.ingest(engine, settings, notification([_rpc(1)]))
    with engine.begin() as conn:  # the same labels, spelt another way
        (labels,) = conn.exec_driver_sql("SELECT CAST(labels AS TEXT) FROM alert").one()
        respelt = json.dumps(dict(reversed(json.loads(labels).items())), separators=(",", ":"))
        conn.exec_driver_sql("UPDATE alert SET labels = CAST(%s AS json)" if
                             engine.dialect.name == "postgresql" else
                             "UPDATE alert SET labels = ?", (respelt,))  # fmt: skip
    out = service.ingest(engine, settings, notification([resolved(_rpc(1))]))
    assert out.resolved == 1
    with db.read(engine) as s:
        (entry,) = [e for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "alert.resolved"]
    assert entry.data["labels"] == json.loads(labels)
    assert "instance=rpc-1:8545" in entry.summary


def test_an_alert_repeated_and_attached_by_one_delivery_is_both(engine, settings):
    """A stored alert that no incident held, repeated by a delivery that attaches it (the
    delivery also brings an alert an incident already holds): its count and its incident are
    both written (on PostgreSQL by one UPDATE in the delivery's statement), and it goes on
    the timeline once as firing."""
    held = _rpc(1)
    first = service.ingest(engine, settings, notification([held]))
    assert first.declared
    lagging = alert("NodeLagging", instance="n-1", env="staging")  # matched by no rule
    alone = service.ingest(engine, settings, notification([lagging], group="NodeLagging"))
    assert (alone.new, alone.declared, alone.incident) == (1, False, None)
    with statements(engine) as seen:
        both = service.ingest(engine, settings, notification([lagging, held], group="NodeLagging"))
    assert (both.repeats, both.attached, both.incident) == (2, 1, "INC-1"), both
    if engine.dialect.name == "postgresql":
        assert "UPDATE alert" not in seen and "UPDATE alert_group" not in seen, seen
    with db.read(engine) as s:
        stored = {a.alertname: a for a in s.exec(select(AlertRecord)).all()}
        kinds = Counter(e.kind for e in svc.timeline(s, svc.get(s, "INC-1")))
        group_incidents = s.exec(text("SELECT incident_id FROM alert_group")).all()
    incident_id = stored["RpcEndpointDown"].incident_id
    assert (stored["NodeLagging"].received_count, stored["NodeLagging"].incident_id) == (
        2,
        incident_id,
    )
    assert stored["NodeLagging"].error is None
    assert stored["RpcEndpointDown"].received_count == 2
    assert kinds["alert.firing"] == 2 and kinds["alert.group_attached"] == 1, kinds
    assert [g for (g,) in group_incidents] == [incident_id, incident_id]


def test_a_resolve_that_updates_the_groups_message_reads_its_snooze_with_the_group(
    engine, settings
):
    """A resolve queues the update of the group's message unless the group is snoozed: on
    PostgreSQL the group's statement read the group's latest snooze with its incident (no
    statement of its own); SQLite reads it on its own (no round trip there). Snoozed, the
    message is not queued, on both back ends."""
    from incidentbot.alerts import messages, snooze
    from incidentbot.clock import utcnow
    from incidentbot.ledger.actions import ActionRegistry

    actions = ActionRegistry()
    actions.register(messages.ACTION, lambda _ctx, _input: {}, idempotent=True)

    queued: list[int | None] = []

    def on_alerts(s, st, incident, group):
        queued.append(messages.queue(s, st, incident, group, actions=actions))

    alerts = [_rpc(1), _rpc(2)]
    first = service.ingest(engine, settings, notification(alerts), on_alerts=on_alerts)
    assert first.declared
    with statements(engine) as seen:
        service.ingest(engine, settings, notification([resolved(alerts[0])]), on_alerts=on_alerts)
    snooze_reads = Counter(seen)["SELECT timeline_event"]
    assert snooze_reads == (0 if engine.dialect.name == "postgresql" else 1), seen
    assert queued[-1] is not None and queued[-1] == queued[0]  # joins the pending update

    with db.transaction(engine) as s:
        incident = svc.get(s, "INC-1")
        [group] = snooze.groups_of(s, incident)
        snooze.snooze(s, incident, group.id, timedelta(hours=1), actor="U1", now=utcnow())
    with statements(engine) as seen:
        done = service.ingest(
            engine, settings, notification([resolved(alerts[1])]), on_alerts=on_alerts
        )
    assert done.resolved == 1 and len(queued) == 3
    assert queued[-1] is None  # snoozed: the message waits
    assert Counter(seen)["SELECT timeline_event"] == snooze_reads, seen
