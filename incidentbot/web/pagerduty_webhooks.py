"""PagerDuty webhooks v3 at ``POST /webhooks/pagerduty``.

Each delivery is signed ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>`` (one
or more comma-separated signatures, several during a secret rotation). A bad or missing
signature is a 401 that records nothing. Triggered, on a service set to ``declare``, declares
an incident with the PagerDuty incident linked, once however often it is delivered.
Acknowledged, escalated, reassigned and resolved update our page and appear on the timeline with
the responder's name (resolved, while ours is open, also asks in the channel whether to resolve
ours); a redelivered event is recorded once.

This is a door: it authenticates the delivery, reads PagerDuty's payload and hands the change to
the paging core (:func:`incidentbot.paging.pager_actions.mark_page`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import Incident
from incidentbot.paging.pager_actions import mark_page
from incidentbot.ports import PageInfo
from incidentbot.typed_text import clean_tree
from incidentbot.usecases.core import Actor, Core
from incidentbot.usecases.paging import pagerduty_triggered

log = logging.getLogger(__name__)

HANDLED = {
    "incident.acknowledged": "acknowledged",
    "incident.escalated": "escalated",
    "incident.reassigned": "reassigned",
    "incident.resolved": "resolved",
}


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, sig.strip()) for sig in header.split(","))


def page_info(data: dict[str, Any]) -> PageInfo:
    """The PagerDuty incident an event's ``data`` describes."""
    service = data.get("service") if isinstance(data.get("service"), dict) else {}
    number = data.get("number")
    return PageInfo(
        id=str(data["id"]),
        number=int(number) if number is not None else None,
        url=str(data["html_url"]) if data.get("html_url") else None,
        status=str(data.get("status") or "triggered"),
        service_id=str(service["id"]) if service.get("id") else None,
        key=str(data["incident_key"]) if data.get("incident_key") else None,
    )


def handle(
    engine: Engine,
    payload: dict[str, Any],
    on_change: Callable[[Session, Incident], None] | None = None,
    core: Core | None = None,
) -> str:
    """Apply one webhook event; returns what happened (for the response and logs)."""
    event = payload.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise ValueError("not a webhooks v3 payload: no event.data")
    kind = str(event.get("event_type", ""))
    if kind == "incident.triggered" and core is not None:
        data = event["data"]
        out = pagerduty_triggered(
            core,
            Actor("pagerduty", "pagerduty"),
            event_id=str(event["id"]) if event.get("id") else None,
            info=page_info(data),
            title=str(data.get("title") or ""),
        )
        return f"{kind}: {out.outcome}"
    status = HANDLED.get(kind)
    if status is None:
        return f"ignored {kind or 'unknown event'}"
    external_id = str(event["data"].get("id", ""))
    agent = event.get("agent") or {}
    who = agent.get("summary") or agent.get("name") if isinstance(agent, dict) else None
    page = mark_page(
        engine,
        external_id,
        status,
        "pagerduty",
        who,
        source_key=f"pagerduty:{event.get('id')}" if event.get("id") else None,
        on_change=on_change,
    )
    return f"{kind} recorded" if page else f"{kind} for an incident we did not open: ignored"


def route(
    engine: Engine,
    settings: Settings,
    on_change: Callable[[Session, Incident], None] | None = None,
    core: Core | None = None,
) -> Route:
    async def endpoint(request: Request) -> Response:
        secret = settings.pagerduty_webhook_secret
        if secret is None:
            return JSONResponse({"error": "PagerDuty webhooks are not configured"}, 503)
        body = await request.body()
        if not signature_ok(
            secret.get_secret_value(), body, request.headers.get("X-PagerDuty-Signature")
        ):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            payload = clean_tree(json.loads(body))
            result = await run_in_threadpool(handle, engine, payload, on_change, core)
        except DomainError as exc:
            log.warning("pagerduty webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=422)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"malformed webhook: {exc}"}, status_code=400)
        log.info("pagerduty webhook: %s", result)
        return JSONResponse({"result": result})

    return Route("/webhooks/pagerduty", endpoint, methods=["POST"])
