"""The Starlette app: REST API v2 at the root, Events API v2 under ``/events``, the
``/_sandbox`` admin API, and readable pages standing in for PagerDuty's web UI.

PagerDuty serves the two APIs on different hosts (``api.pagerduty.com``,
``events.pagerduty.com``); here they share a port but not a base URL, so a bot that sends
events to its REST base URL gets PagerDuty's 404 instead of a silent success. Any path the
sandbox does not serve is answered with that 404 and logged, so the spec check names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from incidentbot.sandbox.admin import admin_routes, read_json
from incidentbot.sandbox.pagerduty import events, rest
from incidentbot.sandbox.pagerduty.api import EVENTS, REST, Call, Endpoint, PagerDutyApi, Reply
from incidentbot.sandbox.pagerduty.models import not_found

if TYPE_CHECKING:
    from incidentbot.sandbox.pagerduty.server import PagerDutySandbox

EVENTS_PREFIX = "/events"
ENDPOINTS: tuple[Endpoint, ...] = rest.ENDPOINTS + events.ENDPOINTS
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _unknown(call: Call) -> Reply:
    raise not_found()


def _route(api: PagerDutyApi, endpoint: Endpoint) -> Route:
    async def handle(request: Request) -> Response:
        return await api.handle(request, endpoint)

    prefix = EVENTS_PREFIX if endpoint.api == EVENTS else ""
    return Route(prefix + endpoint.template, handle, methods=[endpoint.http_method])


def build_app(sandbox: PagerDutySandbox) -> Starlette:
    """Routes for one sandbox; every handler reads the sandbox's live state."""
    api = PagerDutyApi(lambda: sandbox.account, sandbox.faults, sandbox.log, sandbox.closing)

    async def unknown(request: Request) -> Response:
        path = request.url.path
        kind = EVENTS if path.startswith(EVENTS_PREFIX + "/") else REST
        logged = path.removeprefix(EVENTS_PREFIX) if kind == EVENTS else path
        return await api.handle(request, Endpoint(kind, request.method, logged, _unknown))

    async def account(request: Request) -> Response:
        return JSONResponse({"ok": True, **sandbox.describe()})

    async def summary(request: Request) -> Response:
        return PlainTextResponse(sandbox.summary() + "\n")

    async def webhooks(request: Request) -> Response:
        if request.method == "POST":
            data = await read_json(request)
            try:
                sub = sandbox.subscribe(
                    data["url"],
                    secret=data.get("secret"),
                    events=data.get("events"),
                    services=data.get("services"),
                )
            except (KeyError, ValueError) as exc:
                return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
            return JSONResponse({"ok": True, "subscription": sandbox.subscription_json(sub)})
        sent = [d.to_json() for d in sandbox.webhook_deliveries()]
        return JSONResponse({"ok": True, "deliveries": sent})

    async def respond(request: Request) -> Response:
        """A responder acts: ``{"action", "incident", "by", "to", "level", "content", ...}``."""
        data = await read_json(request)
        try:
            result = await anyio.to_thread.run_sync(lambda: sandbox.respond(**data))
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "incident": result})

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"ok": True})

    async def view(request: Request) -> Response:
        kind, ref = request.path_params["kind"], request.path_params["id"]
        text = sandbox.view(kind, ref)
        if text is None:
            return PlainTextResponse("Not Found\n", status_code=404)
        return PlainTextResponse(text + "\n")

    routes = [_route(api, e) for e in ENDPOINTS]
    routes += [
        Route("/_sandbox/account", account, methods=["GET"]),
        *admin_routes(sandbox, selector="endpoint", default_hold_s=61.0),
        Route("/_sandbox/summary", summary, methods=["GET"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET", "POST"]),
        Route("/_sandbox/respond", respond, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/view/{kind}/{id:path}", view, methods=["GET"]),
        Route("/{path:path}", unknown, methods=ALL_METHODS),
    ]
    return Starlette(routes=routes)
