"""The ASGI app: Slack's HTTP endpoint, webhooks, ``/healthz`` and ``/metrics``.

Slack's endpoint (:class:`~incidentbot.web.slack_edge.SlackEndpoint`) dispatches each request
in the thread pool, so the loop stays free to accept the next one within Slack's 3 seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.ledger.models import PENDING, RUNNING, Run
from incidentbot.metrics import Metrics
from incidentbot.web.alertmanager import alertmanager_route
from incidentbot.web.slack_edge import SlackEndpoint


def create_app(
    *,
    bolt: App | None,
    engine: Engine,
    metrics: Metrics,
    slack_state: Callable[[], str] = lambda: "unknown",
    ready: Callable[[], bool] = lambda: True,
    settings: Settings | None = None,
    extra_routes: Sequence[Route] = (),
    signing_secret: str | None = None,
) -> Starlette:
    async def healthz(_request: Request) -> Response:
        if not ready():  # still warming up: a command now would pay for the start-up
            return JSONResponse({"ok": False, "ready": False}, status_code=503)
        report = await run_in_threadpool(_health, engine, slack_state)
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        data = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/slack/events", SlackEndpoint(bolt, signing_secret), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if settings is not None:
        routes.append(alertmanager_route(engine, settings, on_cpu=metrics.alert_ingest_cpu.inc))
    routes.extend(extra_routes)
    return Starlette(routes=routes)


def _health(engine: Engine, slack_state: Callable[[], str]) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": True, "ready": True}
    try:
        with db.read(engine) as s:
            s.execute(text("SELECT 1"))
            backlog = s.exec(
                select(func.count()).where(col(Run.status).in_([PENDING, RUNNING]))
            ).one()
            oldest = s.exec(select(func.min(Run.created_at)).where(Run.status == PENDING)).one()
        report["database"] = "ok"
        report["ledger_backlog"] = int(backlog)
        report["ledger_oldest_pending"] = oldest.isoformat() if oldest else None
    except Exception as exc:
        report["ok"] = False
        report["database"] = f"error: {type(exc).__name__}"
    report["slack"] = slack_state()
    return report
