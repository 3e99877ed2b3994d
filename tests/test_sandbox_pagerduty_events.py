"""Events API v2 on the local PagerDuty server, through the pagerduty EventsApiV2Client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pagerduty
import pytest

from incidentbot.sandbox.pagerduty import PagerDutySandbox


@pytest.fixture(scope="module")
def server() -> Iterator[PagerDutySandbox]:
    with PagerDutySandbox() as sandbox:
        yield sandbox


@pytest.fixture
def pd(server: PagerDutySandbox) -> PagerDutySandbox:
    server.reset()
    return server


@pytest.fixture
def events(pd: PagerDutySandbox) -> pagerduty.EventsApiV2Client:
    return pd.events_client("rpc")


def raw_event(pd: PagerDutySandbox, body: Any, path: str = "/v2/enqueue") -> tuple[int, Any]:
    """POST a body as-is (the pagerduty client writes its own routing_key into every body)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(verify=pd.ssl_context()) as client:
        response = client.post(
            pd.events_url + path, content=content, headers={"Content-Type": "application/json"}
        )
    return response.status_code, response.json()


def test_a_trigger_opens_an_incident_the_rest_api_shows(
    pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client
) -> None:
    key = events.trigger(
        "eth-node-3 is 40 blocks behind",
        "eth-node-3",
        dedup_key="alertmanager/rpc/lag",
        severity="warning",
        custom_details={"lag": 40},
    )
    assert key == "alertmanager/rpc/lag"
    assert pd.requests("POST /v2/enqueue")[0].response == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": key,
    }
    assert pd.requests("POST /v2/enqueue")[0].status == 202
    listed = pd.rest_client().list_all("incidents", params={"incident_key": key})
    assert len(listed) == 1
    incident = listed[0]
    assert incident["title"] == "eth-node-3 is 40 blocks behind"
    assert incident["urgency"] == "low"  # warning and info events open low-urgency incidents
    assert incident["service"]["summary"] == "rpc"
    assert incident["alert_counts"] == {"all": 1, "triggered": 1, "resolved": 0}
    assert incident["body"]["details"] == {"lag": 40}


def test_dedup_key_groups_acknowledges_and_resolves(
    pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client
) -> None:
    key = events.trigger("RPC 5xx rate above 5%", "haproxy", dedup_key="rpc-5xx")
    assert events.trigger("RPC 5xx rate above 8%", "haproxy", dedup_key="rpc-5xx") == key
    (incident,) = pd.incidents()
    assert incident["alert_counts"]["all"] == 2 and incident["title"] == "RPC 5xx rate above 5%"
    events.acknowledge(key)
    acked = pd.incident(incident["id"])
    assert acked["status"] == "acknowledged"
    assert acked["acknowledgements"][0]["acknowledger"]["type"] == "service_reference"
    events.resolve(key)
    assert pd.incident(incident["id"])["status"] == "resolved"
    # A resolved incident no longer groups: the same key opens a new incident.
    events.trigger("RPC 5xx rate above 5% again", "haproxy", dedup_key="rpc-5xx")
    assert [(i["incident_number"], i["status"]) for i in pd.incidents()] == [
        (1, "resolved"),
        (2, "triggered"),
    ]


def test_dedup_is_per_service(pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client) -> None:
    events.trigger("disk 90% full", "node-1", dedup_key="disk-full")
    pd.events_client("indexer").trigger("disk 90% full", "node-1", dedup_key="disk-full")
    assert sorted(i["service"]["summary"] for i in pd.incidents()) == ["indexer", "rpc"]


def test_a_trigger_without_dedup_key_gets_one(
    pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client
) -> None:
    first = events.trigger("validator missed 3 attestations", "validator-2")
    second = events.trigger("validator missed 3 attestations", "validator-2")
    assert first != second and len(first) == 32 and int(first, 16) >= 0
    assert [i["incident_key"] for i in pd.incidents()] == [first, second]


def test_acknowledge_or_resolve_of_an_unknown_key_is_accepted_and_changes_nothing(
    pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client
) -> None:
    events.trigger("beacon node down", "beacon-1", dedup_key="beacon-1")
    assert events.acknowledge("never-triggered") == "never-triggered"
    assert events.resolve("never-triggered") == "never-triggered"
    assert [i["status"] for i in pd.incidents()] == ["triggered"]
    assert [e.status for e in pd.requests("POST /v2/enqueue")] == [202, 202, 202]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"routing_key": "0" * 32}, "Invalid routing key"),
        (
            {"routing_key": "short"},
            "Length of 'routing_key' is incorrect (should be 32 characters)",
        ),
        ({"routing_key": None}, "'routing_key' is missing or blank"),
        (
            {"event_action": "poke"},
            "'event_action' is invalid (must be one of trigger, acknowledge, resolve)",
        ),
        (
            {"payload": {"summary": "x", "source": "y", "severity": "fatal"}},
            "'payload.severity' is invalid (must be one of critical, error, warning, info)",
        ),
        ({"payload": {"severity": "info", "source": "y"}}, "'payload.summary' is missing or blank"),
        ({"payload": None}, "'payload' is missing or blank"),
        ({"event_action": "acknowledge", "dedup_key": None}, "'dedup_key' is missing or blank"),
    ],
)
def test_invalid_events_are_refused(
    pd: PagerDutySandbox, change: dict[str, Any], error: str
) -> None:
    event: dict[str, Any] = {
        "routing_key": pd.routing_key("rpc"),
        "event_action": "trigger",
        "payload": {"summary": "x", "source": "y", "severity": "info"},
    }
    event.update(change)
    event = {k: v for k, v in event.items() if v is not None}
    status, body = raw_event(pd, event)
    assert status == 400
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert error in body["errors"]
    assert pd.incidents() == []


def test_the_client_surfaces_a_refusal(pd: PagerDutySandbox) -> None:
    stranger = pagerduty.EventsApiV2Client(
        "f" * 32, base_url=pd.events_url, verify=pd.ssl_context()
    )
    with pytest.raises(pagerduty.HttpError) as info:
        stranger.trigger("x", "y")
    assert info.value.response.status_code == 400
    assert info.value.response.json()["errors"] == ["Invalid routing key"]


def test_a_body_that_is_not_json_is_unrecognized(pd: PagerDutySandbox) -> None:
    status, body = raw_event(pd, b"{not json")
    assert (status, body) == (
        400,
        {
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"],
        },
    )


def test_events_sent_to_the_rest_base_url_are_refused(pd: PagerDutySandbox) -> None:
    """The REST API (like api.pagerduty.com) knows no /v2/enqueue and wants a token first."""
    misconfigured = pagerduty.EventsApiV2Client(
        pd.routing_key("rpc"), base_url=pd.rest_url, verify=pd.ssl_context()
    )
    with pytest.raises(pagerduty.HttpError) as info:
        misconfigured.trigger("x", "y")
    assert info.value.response.status_code == 401
    with httpx.Client(verify=pd.ssl_context()) as client:
        authed = client.post(
            pd.rest_url + "/v2/enqueue",
            json={},
            headers={"Authorization": f"Token token={pd.api_token}"},
        )
    assert authed.status_code == 404
    assert [(e.api, e.method) for e in pd.requests()] == [("rest", "POST /v2/enqueue")] * 2
    assert pd.incidents() == []


def test_change_events_are_recorded(
    pd: PagerDutySandbox, events: pagerduty.EventsApiV2Client
) -> None:
    events.send_change_event(
        payload={
            "summary": "Deployed haproxy config v42",
            "source": "ci",
            "custom_details": {"sha": "abc"},
        },
        links=[{"href": "https://ci.example/42", "text": "build 42"}],
    )
    (entry,) = pd.requests("POST /v2/change/enqueue")
    assert (entry.status, entry.response) == (
        202,
        {"status": "success", "message": "Change event processed"},
    )
    (change,) = pd.account.change_events
    assert change.summary == "Deployed haproxy config v42" and change.links[0]["text"] == "build 42"
    assert "Deployed haproxy config v42 (ci)" in pd.summary()
    status, body = raw_event(
        pd, {"routing_key": pd.routing_key("rpc"), "payload": {}}, "/v2/change/enqueue"
    )
    assert (status, body["errors"]) == (400, ["'payload.summary' is missing or blank"])


def test_a_monitoring_tool_can_be_played_from_python(pd: PagerDutySandbox) -> None:
    key = pd.trigger_alert("validators", "validator-7 slashed?", dedup_key="slash-7")
    assert pd.trigger_alert("validators", "validator-7 slashed?", dedup_key="slash-7") == key
    (incident,) = pd.incidents()
    assert incident["service"]["summary"] == "validators" and incident["alert_counts"]["all"] == 2
    with pytest.raises(ValueError, match="severity"):
        pd.trigger_alert("validators", "x", severity="fatal")
