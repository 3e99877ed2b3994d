"""The Web API endpoint: ``/api/{method}`` as slack.com serves it.

Order of events for one call, as Slack applies them: read the body (form or JSON), wait the
configured latency, authenticate, find the method, apply an armed fault, apply the rate limit,
run the handler under the workspace lock, log the call. Errors are HTTP 200 with
``{"ok": false, "error": ...}``, except 429 (with ``Retry-After``) and injected 5xx.

Two kinds of token are told apart as Slack does: bot (and user) tokens call the workspace
methods, the app-level token (``xapp-…``) calls only the app-level ``apps.connections.open``;
either one used on the other's methods is ``not_allowed_token_type``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from incidentbot.sandbox.slack.faults import RESPONSE_URL, Fault, FaultPlan, RateLimiter
from incidentbot.sandbox.slack.log import LoggedRequest, RequestLog
from incidentbot.sandbox.slack.methods import HANDLERS, Args, load_all
from incidentbot.sandbox.slack.models import SlackError, User
from incidentbot.sandbox.slack.socket_mode import SocketModeHub
from incidentbot.sandbox.slack.workspace import Workspace

load_all()
logger = logging.getLogger(__name__)


class _BadRequest(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Parsed:
    args: dict[str, Any]
    token: str | None
    token_source: str | None
    content_type: str


async def _parse(request: Request) -> _Parsed:
    """Arguments from the query string and the body; the token from header or body."""
    args: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if raw:
        if content_type == "application/json":
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _BadRequest("invalid_json") from None
            if not isinstance(body, dict):
                raise _BadRequest("json_not_object")
            args.update(body)
        elif content_type in ("application/x-www-form-urlencoded", ""):
            try:
                args.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise _BadRequest("invalid_charset") from None
        else:
            raise _BadRequest("invalid_form_data")
    token, source = None, None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token, source = auth[7:].strip(), "header"
    body_token = args.pop("token", None)
    if token is None and body_token and content_type != "application/json":
        # Slack reads a token from a form body, never from a JSON body.
        token, source = str(body_token), "body"
    return _Parsed(args, token, source, content_type or "none")


class WebApi:
    """The ``/api/{method}`` endpoint, wired to one workspace and its fault plan."""

    def __init__(
        self,
        workspace: Callable[[], Workspace],
        faults: FaultPlan,
        limiter: RateLimiter,
        log: RequestLog,
        closing: threading.Event,
        socket_mode: SocketModeHub | None = None,
    ) -> None:
        self.workspace = workspace  # read per call: SlackSandbox.reset swaps the workspace
        self.faults = faults
        self.limiter = limiter
        self.log = log
        self.closing = closing
        self.socket_mode = socket_mode
        # Methods called with the app-level token; they act on the app, not as a user.
        self.app_methods: dict[str, Callable[[Args], dict[str, Any]]] = {}
        if socket_mode is not None:
            self.app_methods["apps.connections.open"] = lambda _args: socket_mode.open_connection()

    async def _hold(self, seconds: float) -> None:
        """Sleep, but let the server stop promptly (a held call must not block shutdown)."""
        deadline = time.monotonic() + seconds
        while not self.closing.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _caller(self, ws: Workspace, parsed: _Parsed, name: str) -> User | None:
        """The user a bot/user token acts as; ``None`` for an app-level method."""
        if not parsed.token:
            raise SlackError("not_authed")
        app_token = self.socket_mode is not None and self.socket_mode.is_app_token(parsed.token)
        with ws.lock:
            user_id = ws.tokens.get(parsed.token)
        if name in self.app_methods:
            if app_token:
                return None
            raise SlackError("not_allowed_token_type" if user_id else "invalid_auth")
        if app_token:
            raise SlackError("not_allowed_token_type")
        if user_id is None:
            raise SlackError("invalid_auth")
        with ws.lock:
            return ws.users[user_id]

    def _run(
        self, ws: Workspace, name: str, caller: User | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            if caller is None:
                return {"ok": True, **self.app_methods[name](Args(args))}
            with ws.lock:
                return {"ok": True, **HANDLERS[name](ws, caller, Args(args))}
        except SlackError as exc:
            return {"ok": False, "error": exc.code, **exc.extra}

    async def handle(self, request: Request) -> JSONResponse:
        name = request.path_params["method"]
        ws = self.workspace()
        started, t0 = time.time(), time.perf_counter()
        status, headers, fault_name = 200, {}, None
        parsed = _Parsed({}, None, None, "none")
        caller: User | None = None
        delay = 0.0
        try:
            parsed = await _parse(request)
            delay = self.faults.latency_for(name)
            if delay:
                await asyncio.sleep(delay)
            caller = self._caller(ws, parsed, name)
            if caller is not None and name not in HANDLERS:
                raise SlackError("unknown_method")
            fault = self.faults.take(name, _channel_hint(parsed.args))
            if fault is not None:
                fault_name = fault.kind
                status, headers, body = await self._fault(ws, fault, name, caller, parsed.args)
            else:
                retry_after = self.limiter.check(name, _channel_hint(parsed.args))
                if retry_after:
                    fault_name = "rate_limit"
                    status, headers = 429, {"Retry-After": str(retry_after)}
                    body = {"ok": False, "error": "ratelimited"}
                else:
                    body = self._run(ws, name, caller, parsed.args)
        except _BadRequest as exc:
            body = {"ok": False, "error": exc.code}
        except SlackError as exc:
            body = {"ok": False, "error": exc.code, **exc.extra}
        except Exception:
            # A bug in the sandbox: answer like a Slack outage, and keep it visible in the log.
            logger.exception("slack sandbox failed on %s", name)
            status, fault_name = 500, "sandbox_error"
            body = {"ok": False, "error": "fatal_error"}
        self.log.append(
            LoggedRequest(
                seq=0,
                method=name,
                http_method=request.method,
                args=parsed.args,
                user=caller.id if caller else None,
                token_source=parsed.token_source,
                content_type=parsed.content_type,
                status=status,
                response=body,
                started_at=started,
                duration_s=time.perf_counter() - t0,
                fault=fault_name,
                delay_s=delay,
            )
        )
        return JSONResponse(body, status_code=status, headers=headers)

    async def response_url(self, post: Callable[[], tuple[int, dict[str, Any]]]) -> JSONResponse:
        """A POST to a response_url, which ``post`` applies: with the latency and the faults
        armed as :data:`RESPONSE_URL` (a ``timeout`` or ``server_error`` posts only when
        ``applied``, and ``after`` runs once it took effect)."""
        delay = self.faults.latency_for(RESPONSE_URL)
        if delay:
            await asyncio.sleep(delay)
        fault = self.faults.take(RESPONSE_URL)
        if fault is None:
            status, body = post()
            return JSONResponse(body, status_code=status)
        if fault.kind == "ratelimited":
            await _after(fault)
            headers = {"Retry-After": str(fault.retry_after)}
            return JSONResponse({"ok": False, "error": "ratelimited"}, 429, headers=headers)
        answer: dict[str, Any] = {"ok": False, "error": "fatal_error"}
        if fault.applied:
            _status, answer = post()
            await _after(fault)
        if fault.kind == "server_error":
            return JSONResponse({"ok": False, "error": "fatal_error"}, status_code=fault.status)
        await self._hold(fault.hold_s)
        return JSONResponse(answer if fault.applied else {"ok": False, "error": "timeout"})

    async def _fault(
        self, ws: Workspace, fault: Fault, name: str, caller: User | None, args: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if fault.kind == "ratelimited":
            await _after(fault)  # what happens in Slack while the caller is held back
            return (
                429,
                {"Retry-After": str(fault.retry_after)},
                {"ok": False, "error": "ratelimited"},
            )
        if fault.kind == "server_error":
            if fault.applied:  # done, and the answer lost: the caller cannot know which
                self._run(ws, name, caller, args)
                await _after(fault)
            return fault.status, {}, {"ok": False, "error": "fatal_error"}
        # timeout: answer only after the client has given up; maybe having done the work.
        body = self._run(ws, name, caller, args) if fault.applied else None
        if fault.applied:
            await _after(fault)
        await self._hold(fault.hold_s)
        return 200, {}, body or {"ok": False, "error": "request_timeout"}


async def _after(fault: Fault) -> None:
    """The test's hook for what happens in Slack after the call took effect (other people
    posting, say), run off the event loop so that it may use the workspace."""
    if fault.after is not None:
        await asyncio.to_thread(fault.after)


def _channel_hint(args: dict[str, Any]) -> str | None:
    value = args.get("channel")
    return value if isinstance(value, str) else None
