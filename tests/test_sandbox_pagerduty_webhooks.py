"""Webhooks v3 from the local PagerDuty server, received by a tiny Starlette app that checks
``X-PagerDuty-Signature`` the way the bot must."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidentbot.sandbox.pagerduty import PagerDutySandbox, sign, verify

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC).timestamp()  # carol carries the RPC pager
SECRET = "whsec-test-secret"
ALICE = "alice@nodeworks.example"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)["event"]


@dataclass
class Receiver:
    """What the bot's /webhooks/pagerduty does: verify, then accept or refuse."""

    secret: str = SECRET
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        expected = "v1=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        offered = request.headers.get("x-pagerduty-signature", "").split(",")
        ok = any(hmac.compare_digest(expected, s.strip()) for s in offered)
        self.received.append(Received(dict(request.headers), body, ok))
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": "try later"}, status_code=500)
        return Response(status_code=204)

    def events(self) -> list[tuple[str, bool]]:
        return [(r.event["event_type"], r.verified) for r in self.received]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    app = Starlette(routes=[Route("/webhooks/pagerduty", hook.handle, methods=["POST"])])
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    hook.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/pagerduty"
    yield hook
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(receiver: Receiver) -> Iterator[PagerDutySandbox]:
    with PagerDutySandbox(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        clock=lambda: NOW,
        webhook_retry_delays=(0.0, 0.0, 0.0, 0.0),
    ) as sandbox:
        yield sandbox


@pytest.fixture
def pd(server: PagerDutySandbox, receiver: Receiver) -> PagerDutySandbox:
    server.reset()
    receiver.received.clear()
    receiver.fail_next = 0
    return server


def page(pd: PagerDutySandbox, service: str = "rpc") -> dict[str, Any]:
    return pd.rest_client(ALICE).rpost(
        "incidents",
        json={
            "type": "incident",
            "title": "RPC nodes lagging",
            "service": {"id": pd.account.service(service).id, "type": "service_reference"},
        },
    )


def test_an_api_acknowledgement_is_sent_signed(pd: PagerDutySandbox, receiver: Receiver) -> None:
    incident = page(pd)
    client = pd.rest_client(ALICE)
    client.rput(incident, json={"type": "incident_reference", "status": "acknowledged"})
    assert pd.wait_for_webhooks()
    assert receiver.events() == [("incident.triggered", True), ("incident.acknowledged", True)]
    ack = receiver.received[1]
    event = ack.event
    assert event["resource_type"] == "incident"
    assert event["occurred_at"] == "2026-03-04T10:00:00.000Z"  # the account's clock
    assert (
        event["agent"]["type"] == "user_reference" and event["agent"]["summary"] == "Alice Moreau"
    )
    data = event["data"]
    assert (data["id"], data["number"], data["status"]) == (incident["id"], 1, "acknowledged")
    assert data["type"] == "incident" and data["service"]["summary"] == "rpc"
    assert [a["summary"] for a in data["assignees"]] == ["Carol Nguyen"]
    assert ack.headers["x-webhook-id"] == event["id"]
    assert ack.headers["x-webhook-subscription"] == pd.describe()["webhook_subscriptions"][0]["id"]
    assert ack.headers["user-agent"] == "PagerDuty-Webhook/V3.0"
    assert ack.headers["content-type"] == "application/json"
    delivery = pd.webhook_deliveries("incident.acknowledged")[0]
    assert delivery.delivered and delivery.status == 204 and len(delivery.attempts) == 1


def test_responders_in_the_pagerduty_app_send_webhooks(
    pd: PagerDutySandbox, receiver: Receiver
) -> None:
    incident = page(pd)
    pd.acknowledge(incident["id"], by="carol")
    pd.reassign(incident["id"], to=["bob"], by="carol")
    pd.escalate(incident["id"])  # the policy's timer: no agent
    pd.add_note(incident["id"], "bob is on it", by="alice")
    pd.resolve(incident["id"], by="bob@nodeworks.example")
    assert pd.wait_for_webhooks()
    assert [kind for kind, ok in receiver.events() if ok] == [
        "incident.triggered",
        "incident.acknowledged",
        "incident.reassigned",
        "incident.escalated",
        "incident.annotated",
        "incident.resolved",
    ]
    by_type = {r.event["event_type"]: r.event for r in receiver.received}
    assert by_type["incident.acknowledged"]["agent"]["summary"] == "Carol Nguyen"
    assert [a["summary"] for a in by_type["incident.reassigned"]["data"]["assignees"]] == [
        "Bob Okafor"
    ]
    assert by_type["incident.escalated"]["agent"] is None
    assert [a["summary"] for a in by_type["incident.escalated"]["data"]["assignees"]] == [
        "Dave Kim"
    ]
    note = by_type["incident.annotated"]["data"]
    assert note["type"] == "incident_note" and note["content"] == "bob is on it"
    assert note["incident"]["id"] == incident["id"]
    assert by_type["incident.resolved"]["agent"]["summary"] == "Bob Okafor"
    assert by_type["incident.resolved"]["data"]["status"] == "resolved"
    with pytest.raises(ValueError, match="Incident Already Resolved"):
        pd.resolve(incident["id"], by="bob")


def test_events_api_changes_are_sent_with_the_service_as_agent(
    pd: PagerDutySandbox, receiver: Receiver
) -> None:
    events = pd.events_client("rpc")
    key = events.trigger("RPC down", "haproxy", dedup_key="rpc-down")
    events.trigger("RPC still down", "haproxy", dedup_key="rpc-down")  # grouped: no new event
    events.acknowledge(key)
    assert pd.wait_for_webhooks()
    assert receiver.events() == [("incident.triggered", True), ("incident.acknowledged", True)]
    assert receiver.received[1].event["agent"]["type"] == "service_reference"


def test_failed_deliveries_are_retried(pd: PagerDutySandbox, receiver: Receiver) -> None:
    receiver.fail_next = 2
    page(pd)
    assert pd.wait_for_webhooks()
    (delivery,) = pd.webhook_deliveries()
    assert [a.status for a in delivery.attempts] == [500, 500, 204]
    assert delivery.delivered and delivery.finished
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1  # a retry is the same event, byte for byte


def test_a_delivery_that_keeps_failing_gives_up_after_four_retries(
    pd: PagerDutySandbox, receiver: Receiver
) -> None:
    receiver.fail_next = 100
    page(pd)
    assert pd.wait_for_webhooks()
    (delivery,) = pd.webhook_deliveries()
    assert [a.status for a in delivery.attempts] == [500] * 5
    assert delivery.finished and not delivery.delivered
    assert "incident.triggered failed [500,500,500,500,500]" in pd.summary()


def test_an_unreachable_subscriber_is_recorded(pd: PagerDutySandbox) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    pd.subscribe(dead, events=["incident.triggered"])
    page(pd)
    assert pd.wait_for_webhooks()
    failed = [d for d in pd.webhook_deliveries() if d.url == dead]
    assert len(failed) == 1 and len(failed[0].attempts) == 5
    assert all(a.status is None and a.error for a in failed[0].attempts)


def test_a_badly_signed_webhook_is_refused_by_the_receiver(
    pd: PagerDutySandbox, receiver: Receiver
) -> None:
    incident = page(pd)
    assert pd.wait_for_webhooks()
    receiver.received.clear()
    (wrong,) = pd.send_webhook(incident["id"], "incident.acknowledged", by="bob", secret="guess")
    (forged,) = pd.send_webhook(incident["id"], "incident.resolved", signature="v1=deadbeef")
    (genuine,) = pd.send_webhook(incident["id"], "incident.acknowledged", by="bob")
    assert [(d.status, d.forged) for d in (wrong, forged, genuine)] == [
        (401, True),
        (401, True),
        (204, False),
    ]
    assert receiver.events() == [
        ("incident.acknowledged", False),
        ("incident.resolved", False),
        ("incident.acknowledged", True),
    ]
    assert len(wrong.attempts) == 1  # sent once, never retried


def test_subscriptions_filter_by_event_and_service(
    pd: PagerDutySandbox, receiver: Receiver
) -> None:
    sub = pd.subscribe(
        receiver.url, secret=SECRET, events=["incident.resolved"], services=["validators"]
    )
    incident = page(pd, "validators")
    rpc = page(pd, "rpc")
    pd.resolve(incident["id"], by="dave")
    pd.resolve(rpc["id"], by="carol")
    assert pd.wait_for_webhooks()
    mine = [d for d in pd.webhook_deliveries() if d.subscription_id == sub.id]
    assert [(d.event_type, d.incident_id) for d in mine] == [("incident.resolved", incident["id"])]
    with pytest.raises(ValueError, match="unknown event types"):
        pd.subscribe(receiver.url, events=["incident.exploded"])


def test_sign_and_verify_helpers() -> None:
    body = b'{"event":{}}'
    signature = sign(SECRET, body)
    assert signature == "v1=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify(SECRET, body, signature)
    assert verify(SECRET, body, f"v1=00, {signature}")  # several signatures during rotation
    assert not verify(SECRET, body + b" ", signature)
    assert not verify("other", body, signature)
    assert not verify(SECRET, body, None)
