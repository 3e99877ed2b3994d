"""A local PagerDuty-compatible server: REST API v2, Events API v2, webhooks v3, faults.

Typical use::

    with PagerDutySandbox(webhook_url="http://127.0.0.1:3000/webhooks/pagerduty") as pd:
        client = pd.rest_client(from_email="alice@nodeworks.example")  # pagerduty.RestApiV2Client
        client.rpost("incidents", json={"type": "incident", "title": "RPC lag", ...})
        pd.acknowledge("1", by="bob")  # a responder acts; a signed webhook goes to the bot
        print(pd.summary())

See docs/sandbox.md for the endpoints served, the seeded account and fault injection.
"""

from incidentbot.sandbox.pagerduty.account import DEFAULT_API_TOKEN, Account
from incidentbot.sandbox.pagerduty.log import PagerDutyRequest
from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
from incidentbot.sandbox.pagerduty.tls import SandboxTls, TlsUnavailable
from incidentbot.sandbox.pagerduty.webhooks import (
    INCIDENT_EVENTS,
    Attempt,
    Delivery,
    Subscription,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_API_TOKEN",
    "INCIDENT_EVENTS",
    "Account",
    "Attempt",
    "Delivery",
    "PagerDutyRequest",
    "PagerDutySandbox",
    "SandboxTls",
    "Subscription",
    "TlsUnavailable",
    "sign",
    "verify",
]
