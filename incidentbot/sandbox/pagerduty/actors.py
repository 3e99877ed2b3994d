"""What happens outside the API: responders, monitoring tools, webhook subscribers.

``PagerDutySandbox`` mixes these in. A responder acknowledging from the PagerDuty app, an
escalation timer firing, Prometheus sending an event: each changes the account exactly as the
API would (same lifecycle code, same log entries) and so sends the same signed webhooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from incidentbot.sandbox.pagerduty import incidents as lifecycle
from incidentbot.sandbox.pagerduty import render
from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.events import SEVERITIES, apply_event
from incidentbot.sandbox.pagerduty.models import Agent, Incident, PagerDutyError
from incidentbot.sandbox.pagerduty.webhooks import (
    INCIDENT_EVENTS,
    Delivery,
    Subscription,
    WebhookSender,
    event_payload,
)


class Actors:
    """Responder, monitoring-tool and webhook methods of ``PagerDutySandbox``."""

    account: Account
    webhooks: WebhookSender

    # -- webhooks ---------------------------------------------------------------------------

    def subscribe(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: list[str] | None = None,
        services: list[str] | None = None,
    ) -> Subscription:
        """Send webhooks v3 for ``events`` (default: every incident event) to ``url``."""
        service_ids = [self.account.service(s).id for s in services] if services else None
        return self.webhooks.subscribe(
            url,
            secret=secret,
            events=events,
            service_ids=service_ids,
            sub_id=self.account.ids.new(),
        )

    @staticmethod
    def subscription_json(sub: Subscription) -> dict[str, Any]:
        return {"id": sub.id, "url": sub.url, "secret": sub.secret, "events": sorted(sub.events)}

    def webhook_deliveries(self, event_type: str | None = None) -> list[Delivery]:
        """Webhooks sent so far (optionally of one event type), oldest first."""
        return [d for d in list(self.webhooks.deliveries) if event_type in (None, d.event_type)]

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook (and retry) is done; False on timeout."""
        return self.webhooks.wait(timeout)

    def send_webhook(
        self,
        incident: str,
        event_type: str = "incident.acknowledged",
        *,
        by: str | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> list[Delivery]:
        """Send one webhook for ``incident`` now to every subscription, once, no retries.

        ``secret`` signs with the wrong secret, ``signature`` sends that header verbatim: a
        deliberately badly signed webhook the bot must refuse.
        """
        if event_type not in INCIDENT_EVENTS:
            raise ValueError(f"unknown event type {event_type!r}")
        acct = self.account
        with acct.lock:
            inc = acct.incident(incident)
            agent = Agent("user", acct.user(by).id) if by else None
            subs = list(self.webhooks.subscriptions.values())
            payloads = [event_payload(acct, event_type, inc, agent, acct.ids.uuid()) for _ in subs]
        sent = []
        for sub, payload in zip(subs, payloads, strict=True):
            delivery = self.webhooks.build(sub, payload, secret=secret, signature=signature)
            sent.append(self.webhooks.send_now(delivery))
        return sent

    def redeliver(self, event_type: str, incident: str | None = None) -> list[Delivery]:
        """Deliver again, once and now, every delivery of ``event_type`` (for ``incident``):
        the same body, signature and event id, as PagerDuty does when it did not hear an
        answer (webhooks are delivered at least once). Safe to call from several threads."""
        with self.account.lock:
            wanted = self.account.incident(incident).id if incident is not None else None
        again = []
        for old in self.webhook_deliveries(event_type):
            if old.forged or old.again_of is not None:
                continue
            if wanted is not None and old.incident_id != wanted:
                continue
            again.append(self.webhooks.send_now(self.webhooks.again(old)))
        return again

    # -- responders and monitoring tools ----------------------------------------------------

    def open_incident(self, service: str, title: str, *, by: str) -> dict[str, Any]:
        """``by`` opens an incident on ``service`` from the PagerDuty website (not through
        the bot): it is assigned by the service's policy and sends ``incident.triggered``."""
        acct = self.account
        with acct.lock:
            agent = self._user(by)
            inc = lifecycle.create_incident(
                acct, acct.service(service), title, agent, channel="website"
            )
            return render.incident(acct, inc)

    def _act(self, incident: str, action: Callable[[Incident], object]) -> dict[str, Any]:
        acct = self.account
        with acct.lock:
            inc = acct.incident(incident)
            try:
                action(inc)
            except PagerDutyError as exc:
                raise ValueError(f"PagerDuty refuses: {exc.message} {exc.errors}") from None
            return render.incident(acct, inc)

    def _user(self, ref: str) -> Agent:
        return Agent("user", self.account.user(ref).id)

    def acknowledge(self, incident: str, *, by: str) -> dict[str, Any]:
        """``by`` (name, email or id) acknowledges, as from the PagerDuty app."""
        agent = self._user(by)
        return self._act(
            incident, lambda i: lifecycle.acknowledge(self.account, i, agent, "website")
        )

    def resolve(self, incident: str, *, by: str, resolution: str | None = None) -> dict[str, Any]:
        agent = self._user(by)
        return self._act(
            incident, lambda i: lifecycle.resolve(self.account, i, agent, resolution, "website")
        )

    def reassign(self, incident: str, *, to: list[str], by: str) -> dict[str, Any]:
        agent, users = self._user(by), [self.account.user(u).id for u in to]
        return self._act(
            incident, lambda i: lifecycle.reassign(self.account, i, users, agent, "website")
        )

    def escalate(
        self, incident: str, *, level: int | None = None, by: str | None = None
    ) -> dict[str, Any]:
        """Escalate (without ``by``: the policy's timer firing, as PagerDuty does on its own)."""
        agent = self._user(by) if by else None
        channel = "website" if by else "timeout"
        return self._act(
            incident, lambda i: lifecycle.escalate(self.account, i, level, agent, channel)
        )

    def add_note(self, incident: str, content: str, *, by: str) -> dict[str, Any]:
        agent = self._user(by)
        return self._act(incident, lambda i: lifecycle.add_note(self.account, i, agent, content))

    def respond(
        self, action: str, incident: str, by: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        """The admin API's entry point to the responder methods above."""
        actions: dict[str, Callable[..., dict[str, Any]]] = {
            "acknowledge": self.acknowledge,
            "resolve": self.resolve,
            "reassign": self.reassign,
            "escalate": self.escalate,
            "note": self.add_note,
        }
        if action not in actions:
            raise ValueError(f"unknown action {action!r}; use one of {sorted(actions)}")
        if by is not None:
            kw["by"] = by
        return actions[action](incident, **kw)

    def trigger_alert(
        self,
        service: str,
        summary: str,
        *,
        dedup_key: str | None = None,
        severity: str = "critical",
        source: str = "prometheus",
    ) -> str:
        """A monitoring tool's trigger event, with the Events API's dedup rules; its dedup key."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        acct = self.account
        with acct.lock:
            payload = {"summary": summary, "source": source, "severity": severity}
            return apply_event(acct, acct.service(service), "trigger", dedup_key, payload)
