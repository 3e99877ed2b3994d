"""An alert's timeline entries are masked once, by the notification's walk, and that is never
less than masking them again: values whose lines joined make a secret are masked as joined,
and a rule added after the walk (or after the alert was stored) still applies to what the walk
masked (or to what was stored)."""

from __future__ import annotations

import importlib
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from incidentbot import db
from incidentbot.alerts import payload as payload_module
from incidentbot.alerts import service
from incidentbot.incidents import records as incident_records
from incidentbot.incidents import service as svc
from tests.test_alerts_support import T0, alert, notification, resolved, settings_for

redaction = importlib.import_module("incidentbot.ledger.redact")

HEX_KEY = "3f" * 32  # 64 hex digits: a private key's size


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def _events(engine, kind: str) -> list[dict[str, Any]]:
    with db.transaction(engine) as s:
        return [
            {"summary": e.summary, "data": e.data}
            for e in svc.timeline(s, svc.get(s, "INC-1"))
            if e.kind == kind
        ]


def _rpc(n: int, **kw: Any) -> dict[str, Any]:
    return alert(
        "RpcEndpointDown",
        instance=f"rpc-{n}:8545",
        chain="ethereum",
        starts_at=T0 + timedelta(minutes=n),
        **kw,
    )


def test_a_summary_whose_lines_joined_show_a_key_is_masked_as_joined(engine, settings):
    # Alone on its line the value reads as an identifier; the one-line summary puts the label
    # before it, which makes it a key.
    leaky = _rpc(1, annotations={"summary": f"deploy signer:\n0x{HEX_KEY}"})
    service.ingest(engine, settings, notification([leaky, _rpc(2)]))
    service.ingest(engine, settings, notification([resolved(leaky), _rpc(2)]))
    for kind in ("alert.firing", "alert.resolved"):
        summaries = [e["summary"] for e in _events(engine, kind)]
        assert any("deploy signer: ***" in s for s in summaries), summaries
        assert not any(HEX_KEY in s for s in summaries), summaries
    # the other alert's entry, on one line, says what it said
    firing = [e["summary"] for e in _events(engine, "alert.firing")]
    assert "Alert firing: RpcEndpointDown chain=ethereum instance=rpc-2:8545: " in "\n".join(firing)


def test_a_rule_added_after_the_walk_applies_to_the_timeline(engine, settings, monkeypatch):
    marker = f"zq-late-rule-{uuid.uuid4().hex[:8]}"  # a rule of its own per back end
    real_parse = service.parse

    def parse_then_add_a_rule(data: Any) -> Any:
        parsed = real_parse(data)  # masked under the rules in force until now
        redaction.add_redactor(lambda s: s.replace(marker, redaction.MASK))
        return parsed

    monkeypatch.setattr(service, "parse", parse_then_add_a_rule)
    fired = _rpc(1, annotations={"summary": f"canary {marker} seen"}, canary=marker)
    service.ingest(engine, settings, notification([fired]))
    monkeypatch.setattr(service, "parse", real_parse)

    (event,) = _events(engine, "alert.firing")
    assert marker not in repr(event), event
    assert event["data"]["labels"]["canary"] == redaction.MASK
    assert event["data"]["annotations"]["summary"] == f"canary {redaction.MASK} seen"
    assert f"canary={redaction.MASK}" in event["summary"]


def test_a_resolve_after_a_new_rule_masks_what_was_stored_before_it(engine, settings):
    # The resolved entry shows the alert as stored; stored before the rule existed, it differs
    # from what the resolve's walk masked, so it is masked again as it is written.
    marker = f"zq-rule-between-{uuid.uuid4().hex[:8]}"
    fired = _rpc(1, annotations={"summary": f"canary {marker} seen"}, canary=marker)
    service.ingest(engine, settings, notification([fired]))
    (before,) = _events(engine, "alert.firing")
    assert before["data"]["labels"]["canary"] == marker  # no rule knew it yet
    redaction.add_redactor(lambda s: s.replace(marker, redaction.MASK))
    service.ingest(engine, settings, notification([resolved(fired)]))

    (event,) = _events(engine, "alert.resolved")
    assert marker not in repr(event), event
    assert event["data"]["labels"]["canary"] == redaction.MASK
    assert event["data"]["annotations"]["summary"] == f"canary {redaction.MASK} seen"


def test_a_payload_not_built_by_the_walk_is_masked_on_the_timeline(engine, settings):
    # A payload made another way (not by ``parse``) carries no masking: its values are masked
    # when written, as any text.
    body = notification([_rpc(1, annotations={"summary": "PASSWORD=hunter2-Zk81"})])
    payload = payload_module.Payload.model_validate(body)
    assert payload.masked_under is None
    with db.transaction(engine) as s:
        delivery_id = s.execute(
            service._INSERT_DELIVERY,
            {
                "received_at": T0,
                "source": "alertmanager",
                "remote": None,
                "receiver": payload.receiver,
                "group_key": "test",
                "status": payload.status,
                "alert_count": 1,
                "truncated_alerts": 0,
                "payload": {},
                "processed_at": None,
                "outcome": None,
                "failed": False,
            },
        ).scalar_one()
        service.process(s, settings, payload, delivery_id)
    (event,) = _events(engine, "alert.firing")
    assert "hunter2" not in repr(event), event
    assert event["data"]["annotations"]["summary"] == f"PASSWORD={redaction.MASK}"


def test_a_rule_added_as_the_entries_are_written_applies_to_their_data(
    engine, settings, monkeypatch
):
    # The entries' short texts (fingerprint, times, rule) are masked once per batch before
    # the batch's rows are made (written at once, or with the delivery on PostgreSQL); a rule
    # added in between still applies to them, and to the labels and annotations the
    # payload's walk masked (the data, masked whole under one generation, is masked again)
    marker = f"zq{uuid.uuid4().hex[:10]}"
    fired = alert(
        "RpcEndpointDown",
        instance="rpc-1:8545",
        chain="ethereum",
        annotations={"summary": f"token {marker} leaked"},
        build=marker,
    )
    fired["fingerprint"] = marker
    real_event_rows = incident_records.event_rows

    def add_a_rule_then_make(*args: Any, **kw: Any) -> Any:
        redaction.add_redactor(lambda s: s.replace(marker, redaction.MASK))
        return real_event_rows(*args, **kw)

    monkeypatch.setattr(incident_records, "event_rows", add_a_rule_then_make)
    service.ingest(engine, settings, notification([fired]))
    monkeypatch.setattr(incident_records, "event_rows", real_event_rows)
    (event,) = _events(engine, "alert.firing")
    assert event["data"]["fingerprint"] == redaction.MASK, event
    assert event["data"]["rule"] == "rpc-down" and event["data"]["starts_at"].startswith("2024")
    assert event["data"]["labels"]["build"] == redaction.MASK, event
    assert event["data"]["annotations"]["summary"] == f"token {redaction.MASK} leaked", event
    assert marker not in json.dumps(event), event


def test_a_suggested_runbook_is_masked_and_a_rule_added_as_it_is_written_applies(
    engine, settings, monkeypatch
):
    # The suggestion's texts (its summary, the runbook's parameters from the alert's labels)
    # are masked once per batch before its rows are made: a secret in a label is masked in
    # both, and a rule added in between still applies to them.
    marker = f"zq{uuid.uuid4().hex[:10]}"
    leaky = alert(
        "RpcEndpointDown",
        instance=f"rpc-1:8545?pass={marker}&password=hunter2-Zk81",
        chain="ethereum",
        starts_at=T0 + timedelta(minutes=1),
    )
    real_event_rows = incident_records.event_rows

    def add_a_rule_then_make(*args: Any, **kw: Any) -> Any:
        redaction.add_redactor(lambda s: s.replace(marker, redaction.MASK))
        return real_event_rows(*args, **kw)

    monkeypatch.setattr(incident_records, "event_rows", add_a_rule_then_make)
    service.ingest(engine, settings, notification([leaky, _rpc(2)]))
    monkeypatch.setattr(incident_records, "event_rows", real_event_rows)
    events = _events(engine, "runbook.suggested")
    assert len(events) == 2, events
    text = json.dumps(events)
    assert marker not in text and "hunter2" not in text, events
    node = events[0]["data"]["params"]["node"]
    assert node.startswith("rpc-1:8545?pass=") and redaction.MASK in node, events
    assert f"node={node}" in events[0]["summary"], events
    data = events[0]["data"]
    assert (data["runbook"], data["rule"]) == ("restart-node", "rpc-down"), events
    # the other alert's suggestion says what it said
    assert events[1]["data"]["params"] == {"node": "rpc-2:8545"}, events
    assert events[1]["summary"] == (
        "Suggested runbook restart-node with node=rpc-2:8545 (alert RpcEndpointDown, rule rpc-down)"
    ), events
