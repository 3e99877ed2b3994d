"""Webhooks v3: signed incident events POSTed to subscribers, retried like PagerDuty.

Each subscription has a URL, a secret, the event types it wants and optionally a service
filter. When an incident changes (through either API or a simulated responder) the payload is
built at once, from the incident as it is at that moment, and queued; a worker thread POSTs it
with PagerDuty's headers::

    Content-Type: application/json
    User-Agent: PagerDuty-Webhook/V3.0
    X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body with the subscription's secret>
    X-Webhook-Id: <event id>
    X-Webhook-Subscription: <subscription id>

Any answer other than 2xx, a connection error or no answer within ``timeout`` is a failed
attempt. PagerDuty retries a failed delivery 4 times over about 20 minutes; the sandbox makes
the same 4 retries on a compressed schedule (``retry_delays``, 1-2-4-8 s by default, settable
to zeros in tests), and records every attempt. A failing delivery does not hold up others.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from incidentbot.sandbox.pagerduty import render
from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.ids import iso
from incidentbot.sandbox.pagerduty.models import Agent, Incident, Note

INCIDENT_EVENTS = (
    "incident.triggered",
    "incident.acknowledged",
    "incident.escalated",
    "incident.reassigned",
    "incident.resolved",
    "incident.reopened",
    "incident.annotated",
)
DEFAULT_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "PagerDuty-Webhook/V3.0"


def sign(secret: str, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value for ``body``: ``v1=`` and the hex HMAC-SHA256."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether any ``v1=`` signature in ``header`` matches (PagerDuty may send several)."""
    expected = sign(secret, body)
    candidates = [part.strip() for part in (header or "").split(",")]
    return any(hmac.compare_digest(expected, c) for c in candidates if c)


@dataclass
class Subscription:
    id: str
    url: str
    secret: str
    events: frozenset[str]
    service_ids: frozenset[str] | None = None
    custom_headers: dict[str, str] = field(default_factory=dict)
    active: bool = True

    def wants(self, event_type: str, incident: Incident) -> bool:
        return (
            self.active
            and event_type in self.events
            and (self.service_ids is None or incident.service_id in self.service_ids)
        )


@dataclass
class Attempt:
    at: float
    status: int | None
    error: str | None
    elapsed_s: float
    response: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Delivery:
    """One webhook and every attempt to deliver it."""

    seq: int
    subscription_id: str
    url: str
    event_type: str
    event_id: str
    incident_id: str
    body: bytes
    headers: dict[str, str]
    attempts: list[Attempt] = field(default_factory=list)
    forged: bool = False
    finished: bool = False
    # A repeat of delivery ``again_of`` (same event), as PagerDuty sends at least once.
    again_of: int | None = None

    @property
    def delivered(self) -> bool:
        return any(a.ok for a in self.attempts)

    @property
    def status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "subscription_id": self.subscription_id,
            "url": self.url,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "incident_id": self.incident_id,
            "payload": self.payload,
            "signature": self.headers.get("X-PagerDuty-Signature"),
            "forged": self.forged,
            "delivered": self.delivered,
            "finished": self.finished,
            "attempts": [vars(a) for a in self.attempts],
        }


def _occurred_at(account: Account) -> str:
    """The account's clock, to the millisecond as PagerDuty writes it."""
    moment = datetime.fromtimestamp(account.clock(), tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def incident_data(account: Account, incident: Incident) -> dict[str, Any]:
    """The ``data`` of an incident event, as webhooks v3 shape it (not the REST shape)."""
    ref = render.incident_ref(account, incident)
    return {
        "id": incident.id,
        "type": "incident",
        "self": ref["self"],
        "html_url": ref["html_url"],
        "number": incident.number,
        "status": incident.status,
        "incident_key": incident.incident_key,
        "created_at": iso(incident.created_at),
        "title": incident.title,
        "service": render.service_ref(account, incident.service_id),
        "assignees": [render.user_ref(account, a.user_id) for a in incident.assignments],
        "escalation_policy": render.policy_ref(account, incident.escalation_policy_id),
        "teams": [],
        "priority": None,
        "urgency": incident.urgency,
        "conference_bridge": None,
        "resolve_reason": None,
    }


def event_payload(
    account: Account,
    event_type: str,
    incident: Incident,
    agent: Agent | None,
    event_id: str,
    note: Note | None = None,
) -> dict[str, Any]:
    """The whole webhook body: ``{"event": {...}}``."""
    if note is not None:
        data = {
            "incident": render.incident_ref(account, incident),
            "id": note.id,
            "content": note.content,
            "trimmed": False,
            "type": "incident_note",
        }
    else:
        data = incident_data(account, incident)
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": _occurred_at(account),
            "agent": render.agent_ref(account, agent) if agent is not None else None,
            "client": None,
            "data": data,
        }
    }


class WebhookSender:
    """Subscriptions, the delivery queue and its worker thread."""

    def __init__(
        self,
        *,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self._queue: list[tuple[float, int, Delivery]] = []
        self._busy = 0
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # -- subscriptions and events ---------------------------------------------------------

    def subscribe(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: list[str] | None = None,
        service_ids: list[str] | None = None,
        custom_headers: dict[str, str] | None = None,
        sub_id: str,
    ) -> Subscription:
        unknown = set(events or ()) - set(INCIDENT_EVENTS)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; use {INCIDENT_EVENTS}")
        sub = Subscription(
            sub_id,
            url,
            secret or secrets.token_urlsafe(48),
            frozenset(events or INCIDENT_EVENTS),
            frozenset(service_ids) if service_ids else None,
            dict(custom_headers or {}),
        )
        with self._cond:
            self.subscriptions[sub.id] = sub
        return sub

    def on_event(
        self,
        account: Account,
        event_type: str,
        incident: Incident,
        agent: Agent | None,
        extra: dict[str, Any],
    ) -> None:
        """The account listener: queue one delivery per interested subscription."""
        with self._cond:
            subs = [s for s in self.subscriptions.values() if s.wants(event_type, incident)]
        for sub in subs:
            event_id = account.ids.uuid()
            payload = event_payload(
                account, event_type, incident, agent, event_id, extra.get("note")
            )
            self.enqueue(self.build(sub, payload))

    def build(
        self,
        sub: Subscription,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        signature: str | None = None,
    ) -> Delivery:
        """A signed delivery; ``secret``/``signature`` forge a bad one for negative tests."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        event = payload["event"]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-PagerDuty-Signature": signature or sign(secret or sub.secret, body),
            "X-Webhook-Id": event["id"],
            "X-Webhook-Subscription": sub.id,
            **sub.custom_headers,
        }
        incident = event["data"].get("incident", event["data"])
        return Delivery(
            next(self._seq),
            sub.id,
            sub.url,
            event["event_type"],
            event["id"],
            incident["id"],
            body,
            headers,
            forged=secret is not None or signature is not None,
        )

    def again(self, delivery: Delivery) -> Delivery:
        """A new delivery of the same event: same body, headers and event id."""
        return Delivery(
            next(self._seq),
            delivery.subscription_id,
            delivery.url,
            delivery.event_type,
            delivery.event_id,
            delivery.incident_id,
            delivery.body,
            dict(delivery.headers),
            again_of=delivery.seq,
        )

    # -- delivery -------------------------------------------------------------------------

    def enqueue(self, delivery: Delivery, delay: float = 0.0, *, retry: bool = False) -> None:
        with self._cond:
            if delivery not in self.deliveries:
                if retry:  # cleared (``reset``) while in flight: forget it
                    delivery.finished = True
                    return
                self.deliveries.append(delivery)
            heapq.heappush(self._queue, (time.monotonic() + delay, delivery.seq, delivery))
            self._cond.notify_all()

    def attempt(self, delivery: Delivery) -> Attempt:
        """POST once and record the outcome."""
        with self._cond:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            client = self._client
        started, t0 = time.time(), time.perf_counter()
        try:
            resp = client.post(delivery.url, content=delivery.body, headers=delivery.headers)
            result = Attempt(
                started, resp.status_code, None, time.perf_counter() - t0, resp.text[:500]
            )
        except httpx.HTTPError as exc:
            result = Attempt(
                started, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
            )
        with self._cond:
            delivery.attempts.append(result)
        return result

    def send_now(self, delivery: Delivery) -> Delivery:
        """Deliver synchronously, once, without retries (tests of the bot's refusals)."""
        with self._cond:
            self.deliveries.append(delivery)
        self.attempt(delivery)
        delivery.finished = True
        return delivery

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._closing:
                    return
                _, _, delivery = heapq.heappop(self._queue)
                self._busy += 1
            try:
                result = self.attempt(delivery)
                retries_done = len(delivery.attempts) - 1
                if not result.ok and retries_done < len(self.retry_delays):
                    self.enqueue(delivery, self.retry_delays[retries_done], retry=True)
                else:
                    delivery.finished = True
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="pd-webhooks", daemon=True)
            self._thread.start()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued, retrying or in flight; False if ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.05))
        return True

    def clear(self) -> None:
        """Forget subscriptions, queued retries and recorded deliveries."""
        with self._cond:
            self.subscriptions.clear()
            self.deliveries.clear()
            self._queue.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.timeout + 1)
        with self._cond:
            if self._client is not None:
                self._client.close()
                self._client = None
