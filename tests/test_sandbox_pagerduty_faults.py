"""Faults (429, 5xx, timeouts) seen through the ``pagerduty`` clients, the request log, the
summary and the ``/_sandbox`` admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pagerduty
import pytest

from incidentbot.sandbox.pagerduty import PagerDutyRequest, PagerDutySandbox

ALICE = "alice@nodeworks.example"
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC).timestamp()  # carol carries the RPC pager


@pytest.fixture(scope="module")
def server() -> Iterator[PagerDutySandbox]:
    with PagerDutySandbox(clock=lambda: NOW, webhook_retry_delays=(0.0,)) as sandbox:
        yield sandbox


@pytest.fixture
def pd(server: PagerDutySandbox) -> PagerDutySandbox:
    server.reset()
    return server


def quick(client: Any) -> Any:
    """A client that waits milliseconds, not seconds, between its own retries."""
    client.sleep_timer = 0.001
    return client


def page(client: pagerduty.RestApiV2Client, pd: PagerDutySandbox, key: str | None = None) -> dict:
    body: dict[str, Any] = {
        "type": "incident",
        "title": "RPC nodes lagging",
        "service": {"id": pd.account.service("rpc").id, "type": "service_reference"},
    }
    if key:
        body["incident_key"] = key
    return client.rpost("incidents", json=body)


def test_429_carries_ratelimit_headers_and_the_client_retries(pd: PagerDutySandbox) -> None:
    client = quick(pd.rest_client(ALICE))
    pd.fail_next("POST /incidents", "ratelimited", count=2, retry_after=7)
    incident = page(client, pd)
    log = pd.requests("POST /incidents")
    assert [(e.status, e.fault) for e in log] == [(429, "ratelimited")] * 2 + [(201, None)]
    assert log[0].response == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
    assert log[0].response_headers["ratelimit-reset"] == "7"
    assert "retry-after" not in {h.lower() for h in log[0].response_headers}
    assert [i["id"] for i in pd.incidents()] == [incident["id"]]


def test_a_429_as_the_bot_sees_it_without_retries(pd: PagerDutySandbox) -> None:
    pd.fail_next("GET /oncalls", "ratelimited", retry_after=3)
    with httpx.Client(verify=pd.ssl_context()) as raw:
        answer = raw.get(
            pd.rest_url + "/oncalls", headers={"Authorization": f"Token token={pd.api_token}"}
        )
    assert answer.status_code == 429
    assert (answer.headers["ratelimit-remaining"], answer.headers["ratelimit-reset"]) == ("0", "3")


def test_server_errors_then_recovery(pd: PagerDutySandbox) -> None:
    client = quick(pd.rest_client(ALICE))
    pd.fail_next("POST /incidents", "server_error", status=503)
    with pytest.raises(pagerduty.ServerHttpError) as info:
        page(client, pd)
    assert info.value.response.status_code == 503
    assert pd.incidents() == []
    client.retry[500] = 2
    pd.fail_next("POST /incidents", "server_error", count=2)
    page(client, pd)
    assert [e.status for e in pd.requests("POST /incidents")] == [503, 500, 500, 201]
    assert len(pd.incidents()) == 1


def test_the_events_client_retries_5xx_by_itself(pd: PagerDutySandbox) -> None:
    events = quick(pd.events_client("rpc"))
    pd.fail_next("POST /v2/enqueue", "server_error", status=503, count=3)
    events.trigger("RPC down", "haproxy", dedup_key="rpc-down")
    assert [e.status for e in pd.requests("POST /v2/enqueue")] == [503, 503, 503, 202]
    assert len(pd.incidents()) == 1


def test_timeout_then_recovery(pd: PagerDutySandbox) -> None:
    client = quick(pd.rest_client(ALICE))
    client.timeout = 0.3
    client.max_network_attempts = 0
    pd.fail_next("POST /incidents", "timeout", hold_s=1.5)
    with pytest.raises(pagerduty.Error):
        page(client, pd)
    assert pd.incidents() == []  # the held call did nothing
    # One retry, which must be answered within the timeout: room for a busy machine.
    client.timeout = 2.0
    client.max_network_attempts = 1
    pd.fail_next("POST /incidents", "timeout", hold_s=4.0)
    page(client, pd)
    assert len(pd.incidents()) == 1


def test_a_lost_answer_then_the_retry_meets_the_incident_key(pd: PagerDutySandbox) -> None:
    """PagerDuty handled the first create but the bot never heard: the key stops a second."""
    client = quick(pd.rest_client(ALICE))
    client.timeout = 2.0  # the retry must be answered within it, on a busy machine too
    client.max_network_attempts = 1
    pd.fail_next("POST /incidents", "timeout", hold_s=4.0, applied=True)
    with pytest.raises(pagerduty.HttpError) as info:
        page(client, pd, key="incidentbot-9")
    assert info.value.response.status_code == 400
    assert info.value.response.json()["error"]["errors"] == [
        "Open incident with matching dedup key already exists on this service"
    ]
    assert len(pd.incidents()) == 1


def test_any_endpoint_fault_latency_and_bad_names(pd: PagerDutySandbox) -> None:
    client = quick(pd.rest_client(ALICE))
    client.retry[500] = 1
    pd.fail_next("*", "server_error")
    assert client.list_all("services")
    assert [e.status for e in pd.requests("GET /services")] == [500, 200]
    pd.set_latency(0.05, ["GET /users"])
    client.list_all("users")
    client.list_all("services")
    assert pd.requests("GET /users")[-1].delay_s == 0.05
    assert pd.requests("GET /services")[-1].delay_s == 0.0
    with pytest.raises(ValueError, match="unknown endpoint"):
        pd.fail_next("POST /incident")


def test_the_request_log_keeps_what_pagerduty_reads_but_no_token(pd: PagerDutySandbox) -> None:
    client = pd.rest_client(ALICE)
    client.list_all("incidents", params={"statuses": ["triggered"]})
    page(client, pd)
    listed, created = pd.requests()
    assert listed.args["statuses[]"] == ["triggered"] and listed.api == "rest"
    assert created.headers["from"] == ALICE
    assert created.headers["accept"] == "application/vnd.pagerduty+json;version=2"
    assert created.body["incident"]["title"] == "RPC nodes lagging"
    assert created.user == pd.account.user("alice").id and created.token_source == "header"
    assert pd.api_token not in str(created.to_json())
    again = PagerDutyRequest.from_json(created.to_json())
    assert again == created and again.ok and again.error is None


def test_summary_tells_the_story(pd: PagerDutySandbox) -> None:
    client = pd.rest_client(ALICE)
    incident = page(client, pd, key="incidentbot-3")
    pd.acknowledge(incident["id"], by="carol")
    pd.add_note(incident["id"], "failing over to node-4", by="carol")
    pd.resolve(incident["id"], by="carol", resolution="node-3 resynced")
    text = pd.summary()
    assert "PagerDuty sandbox: 1 incident(s)" in text
    assert "#1 " in text and "resolved" in text and '"RPC nodes lagging"' in text
    for line in (
        "Triggered through the API. (Alice Moreau)",
        "Assigned to Carol Nguyen.",
        "Acknowledged by Carol Nguyen.",
        'Note added by Carol Nguyen. "failing over to node-4"',
        'Resolved by Carol Nguyen. "node-3 resynced"',
    ):
        assert line in text
    with httpx.Client(verify=pd.ssl_context()) as web:
        page_text = web.get(incident["html_url"]).text
    assert "Acknowledged by Carol Nguyen." in page_text


def test_admin_api(pd: PagerDutySandbox) -> None:
    with httpx.Client(base_url=pd.url, verify=pd.ssl_context()) as admin:
        account = admin.get("/_sandbox/account").json()
        assert {s["name"] for s in account["services"]} == {"rpc", "validators", "indexer"}
        assert account["services"][0]["routing_key"] == pd.routing_key(
            account["services"][0]["name"]
        )
        armed = admin.post(
            "/_sandbox/faults", json={"endpoint": "GET /users", "kind": "server_error"}
        )
        assert armed.json()["fault"]["method"] == "GET /users"
        assert admin.post("/_sandbox/faults", json={"endpoint": "GET /nope"}).status_code == 400
        assert [f["method"] for f in admin.get("/_sandbox/faults").json()["faults"]] == [
            "GET /users"
        ]
        client = quick(pd.rest_client(ALICE))
        with pytest.raises(pagerduty.ServerHttpError):
            client.list_all("users")
        incident = page(client, pd)
        acted = admin.post(
            "/_sandbox/respond",
            json={"action": "acknowledge", "incident": incident["id"], "by": "bob"},
        ).json()
        assert acted["incident"]["status"] == "acknowledged"
        refused = admin.post("/_sandbox/respond", json={"action": "dance", "incident": "1"})
        assert refused.status_code == 400
        log = admin.get("/_sandbox/log", params={"endpoint": "POST /incidents"}).json()["requests"]
        assert [e["status"] for e in log] == [201]
        assert "Acknowledged by Bob Okafor." in admin.get("/_sandbox/summary").text
        subscribed = admin.post("/_sandbox/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert subscribed.json()["subscription"]["secret"]
        admin.post("/_sandbox/reset")
        assert pd.incidents() == [] and pd.requests() == []
        assert admin.get("/_sandbox/view/incidents/PNOPE00").status_code == 404


def test_a_call_held_across_a_reset_is_not_logged_after_it(pd: PagerDutySandbox) -> None:
    client = quick(pd.rest_client(ALICE))
    client.timeout = 0.2
    client.max_network_attempts = 0
    pd.fail_next("POST /incidents", "timeout", hold_s=1.0)
    with pytest.raises(pagerduty.Error):
        page(client, pd)  # the client gives up; the sandbox still holds the call
    pd.reset()
    held_until = time.monotonic() + 1.2
    while time.monotonic() < held_until:  # the held call finishes now, after the reset
        time.sleep(0.05)
    assert pd.log.entries() == []
