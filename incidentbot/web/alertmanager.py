"""``POST /webhooks/alertmanager``: authenticate, read, hand over to the ingest service.

Alertmanager retries a notification on a 5xx and gives up on a 4xx, so the status codes here
say whether trying again can help: 401 (wrong or missing credentials) and 400 (not an
Alertmanager payload) record nothing and are final; 503 (no token configured) and 500 (the
delivery was stored but processing failed) are worth a retry. The work, decoding the body
included, runs in the thread pool so that a burst of notifications never stalls the event loop
that Slack's requests share.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from incidentbot import priority
from incidentbot.alerts import messages, service
from incidentbot.alerts.payload import PayloadError
from incidentbot.config import Settings
from incidentbot.usecases.incidents import declare_effects

log = logging.getLogger(__name__)

PATH = "/webhooks/alertmanager"
MAX_BODY = 8 * 1024 * 1024
# Deliveries processed at once; the others wait without a thread. A delivery spends much of
# its time on database round trips and its commit, during which another can run: with 4, a
# storm's senders waited while the process used half a core (on PostgreSQL above all, where
# a declaring delivery makes a dozen round trips). The engine's pool holds this many besides
# the ledger workers' connections (incidentbot.bot), so none is opened per delivery.
CONCURRENCY = 8
# How long a delivery waits for the Slack answers being sent (incidentbot.priority): well
# inside Alertmanager's 10 s webhook timeout.
YIELD_TO_SLACK_S = 2.0
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="incidentbot", Basic realm="incidentbot"'}


def _token(settings: Settings) -> bytes | None:
    """The configured token; an empty one counts as none (it would accept an empty header)."""
    secret = settings.alertmanager_token
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value.encode() if value else None


def authorized(settings: Settings, header: str | None) -> bool:
    """``Bearer <token>``, or basic auth with the configured user name and the token as the
    password. Compared in constant time."""
    token = _token(settings)
    if token is None or not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        expected_user = settings.alerts.basic_auth_username.encode()
        same_user = hmac.compare_digest(user, expected_user)
        return bool(sep) & same_user & hmac.compare_digest(password, token)
    return False


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than :data:`MAX_BODY` (read no further)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _NotJson(ValueError):
    """The body does not decode as JSON."""


def _decode_and_ingest(
    engine: Engine,
    settings: Settings,
    body: bytes,
    *,
    on_declare: service.OnDeclare | None,
    on_alerts: service.OnAlerts | None,
    remote: str | None,
    on_cpu: Callable[[float], None] | None = None,
) -> service.Outcome:
    """Decode the body and hand it to the ingest, in a worker thread: a large body is decoded
    off the event loop that Slack's requests share, and then walked once (cleaned, validated
    and redacted by :func:`incidentbot.alerts.payload.parse`). It starts once the Slack answers
    being sent are out, and asks again between its phases (the decode, the walk, the
    transaction), all these waits together at most YIELD_TO_SLACK_S: a storm that arrives
    with a burst of commands, or before it, does not take the CPU the acks need.
    ``on_cpu`` is given the CPU time this thread spent on it (the waits excluded)."""
    pause = priority.yielding(YIELD_TO_SLACK_S)
    pause()
    began = time.thread_time()
    try:
        try:
            data: Any = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _NotJson(str(exc)) from None
        return service.ingest(
            engine,
            settings,
            data,
            on_declare=on_declare,
            on_alerts=on_alerts,
            remote=remote,
            pause=pause,
        )
    finally:
        if on_cpu is not None:
            on_cpu(time.thread_time() - began)


def alertmanager_route(
    engine: Engine,
    settings: Settings,
    *,
    # An alert's incident gets what every declare gets: channel, invites, header, digest, and
    # the page of the rule's service by severity policy.
    on_declare: service.OnDeclare | None = declare_effects,
    # The group's one message in the incident channel, updated as its alerts fire and resolve.
    on_alerts: service.OnAlerts | None = messages.queue,
    # Told the CPU time each delivery took in its thread (the bot's metrics count it).
    on_cpu: Callable[[float], None] | None = None,
) -> Route:
    """The Starlette route; ``on_declare`` runs in each declare's transaction."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def endpoint(request: Request) -> Response:
        if _token(settings) is None:
            return _error(
                503,
                "alert ingestion is not configured: set INCIDENTBOT_ALERTMANAGER_TOKEN "
                "(environment or secrets directory)",
            )
        if not authorized(settings, request.headers.get("authorization")):
            client = request.client.host if request.client else "?"
            log.warning("alertmanager webhook: refused credentials from %s", client)
            return _error(
                401,
                "missing or wrong credentials: send Authorization: Bearer <token> or basic "
                "auth with the configured user name",
                _CHALLENGE,
            )
        try:
            body = await _read_body(request)
        except ClientDisconnect:
            return _error(400, "the request body was cut off")
        if body is None:
            return _error(413, f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB")
        remote = request.client.host if request.client else None
        try:
            async with slots:
                outcome = await run_in_threadpool(
                    _decode_and_ingest,
                    engine,
                    settings,
                    body,
                    on_declare=on_declare,
                    on_alerts=on_alerts,
                    remote=remote,
                    on_cpu=on_cpu,
                )
        except _NotJson as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        except PayloadError as exc:
            return _error(400, str(exc))
        except service.IngestFailed as exc:
            error = f"stored, not processed: {exc}"
            reply = {"ok": False, "delivery": exc.delivery_id, "error": error}
            return JSONResponse(reply, status_code=500)
        status = 500 if outcome.error else 200
        return JSONResponse({"ok": outcome.error is None, **outcome.as_dict()}, status_code=status)

    return Route(PATH, endpoint, methods=["POST"])
