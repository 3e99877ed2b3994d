"""The request pipeline both APIs share: parse, wait, authenticate, fault, handle, log.

Order of events for one call, as PagerDuty applies them: read the query string and the body,
wait the configured latency, authenticate (REST: ``Authorization: Token token=...``; Events:
the body's ``routing_key``, checked by the handler), apply an armed fault, run the handler
under the account lock, log the call. Refusals carry PagerDuty's bodies: REST
``{"error": {"message", "code", "errors"}}``, Events ``{"status", "message", "errors"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from incidentbot.sandbox.pagerduty.account import Account
from incidentbot.sandbox.pagerduty.ids import parse_iso
from incidentbot.sandbox.pagerduty.log import LOGGED_HEADERS, PagerDutyRequest
from incidentbot.sandbox.pagerduty.models import (
    Agent,
    EventRejected,
    PagerDutyError,
    User,
    authentication_failed,
    from_header_malformed,
    from_header_missing,
    invalid_input,
    requester_not_found,
)
from incidentbot.sandbox.slack.faults import Fault, FaultPlan
from incidentbot.sandbox.slack.log import RequestLog

logger = logging.getLogger(__name__)
REST, EVENTS = "rest", "events"
RATE_LIMIT_PER_MINUTE = 960  # PagerDuty's documented REST limit per user token


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """What a handler sees of one request."""

    account: Account
    http_method: str
    path_params: dict[str, str]
    query: dict[str, Any]
    body: Any
    headers: Headers
    caller: str | None = None  # the user of a user-level token; None for the account token
    requester_id: str | None = None

    def requester(self) -> User:
        """The acting user: a user token's owner, else the ``From`` header's user (required)."""
        acct = self.account
        if self.caller is not None:
            user = acct.users[self.caller]
        else:
            raw = self.headers.get("from")
            if raw is None:
                raise from_header_missing()
            email = raw.strip()
            if "@" not in email or " " in email:
                raise from_header_malformed()
            found = acct.find_user(email)
            if found is None or found.email.lower() != email.lower():
                raise requester_not_found()
            user = found
        self.requester_id = user.id
        return user

    def agent(self) -> Agent:
        return Agent("user", self.requester().id)

    def values(self, name: str) -> list[str]:
        """A set filter such as ``statuses[]`` (also accepted without the brackets)."""
        raw = self.query.get(f"{name}[]", self.query.get(name))
        if raw is None:
            return []
        return list(raw) if isinstance(raw, list) else [raw]

    def flag(self, name: str) -> bool:
        return str(self.query.get(name, "false")).lower() == "true"

    def integer(self, name: str, default: int) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(str(raw))
        except ValueError:
            raise invalid_input(f"{name} must be an integer") from None

    def time(self, name: str) -> datetime | None:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return parse_iso(str(raw))
        except ValueError:
            raise invalid_input(f"{name} is not a valid date-time: {raw!r}") from None


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Endpoint:
    """One served operation: ``key`` is how faults, the log and the spec check name it."""

    api: str
    http_method: str
    template: str
    handler: Handler

    @property
    def key(self) -> str:
        return f"{self.http_method} {self.template}"


def parse_query(request: Request) -> dict[str, Any]:
    """Query parameters; ``name[]`` and repeated names become lists."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        existing = out.get(key)
        if key.endswith("[]") and existing is None:
            out[key] = [value]
        elif existing is None:
            out[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            out[key] = [existing, value]
    return out


def _rest_fault(fault: Fault) -> Reply:
    if fault.kind == "ratelimited":
        # PagerDuty's REST API sends no Retry-After; it sends these (seconds to wait in -reset).
        headers = {
            "ratelimit-limit": str(RATE_LIMIT_PER_MINUTE),
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(fault.retry_after),
        }
        return Reply(429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}}, headers)
    return Reply(fault.status, {"error": {"message": "Internal Error", "code": 2000}})


def _events_fault(fault: Fault) -> Reply:
    if fault.kind == "ratelimited":
        body = {"status": "throttle event", "message": "Requests are arriving too quickly"}
        return Reply(429, body)
    return Reply(fault.status, {"status": "internal error", "message": "Internal Server Error"})


class PagerDutyApi:
    """Runs every endpoint of one sandbox through the pipeline above."""

    def __init__(
        self,
        account: Callable[[], Account],
        faults: FaultPlan,
        log: RequestLog,
        closing: threading.Event,
    ) -> None:
        self.account = account  # read per call: PagerDutySandbox.reset swaps the account
        self.faults = faults
        self.log = log
        self.closing = closing

    async def _hold(self, seconds: float) -> None:
        """Sleep, but let the server stop promptly (a held call must not block shutdown)."""
        deadline = time.monotonic() + seconds
        while not self.closing.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _authenticate(acct: Account, headers: Headers) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        token = rest.strip().removeprefix("token=") if scheme.lower() == "token" else ""
        with acct.lock:
            if not token or token not in acct.tokens:
                raise authentication_failed()
            return acct.tokens[token]

    @staticmethod
    def _body(raw: bytes) -> tuple[Any, bool]:
        """The body as JSON, else as text (kept for the log); and whether it was JSON."""
        if not raw:
            return None, True
        try:
            return json.loads(raw), True
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace"), False

    def _run(self, acct: Account, endpoint: Endpoint, call: Call) -> Reply:
        try:
            with acct.lock:
                return endpoint.handler(call)
        except PagerDutyError as exc:
            return Reply(exc.status, exc.body())
        except EventRejected as exc:
            return Reply(400, exc.body())

    async def handle(self, request: Request, endpoint: Endpoint) -> JSONResponse:
        acct = self.account()
        started, t0 = time.time(), time.perf_counter()
        generation = self.log.generation  # a reset while this call is held drops its entry
        query = parse_query(request)
        raw = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        call = Call(acct, request.method, dict(request.path_params), query, None, request.headers)
        fault_name, token_source, body = None, None, None
        delay = self.faults.latency_for(endpoint.key)
        try:
            if delay:
                await asyncio.sleep(delay)
            if endpoint.api == REST:
                if "authorization" in request.headers:
                    token_source = "header"  # noqa: S105 - where a token was sent, not a token
                call.caller = self._authenticate(acct, request.headers)
            body, is_json = self._body(raw)
            if not is_json and endpoint.api == EVENTS:
                raise _Unrecognized()
            if raw and endpoint.api == REST and content_type != "application/json":
                raise invalid_input("Content-Type must be application/json")
            if not is_json:
                raise invalid_input("The request body is not valid JSON")
            call.body = body
            fault = self.faults.take(endpoint.key)
            if fault is not None:
                fault_name = fault.kind
                reply = await self._fault(acct, endpoint, call, fault)
            else:
                reply = self._run(acct, endpoint, call)
        except PagerDutyError as exc:
            reply = Reply(exc.status, exc.body())
        except _Unrecognized:
            reply = Reply(400, _Unrecognized.body())
        except Exception:
            # A bug in the sandbox: answer like an outage, and keep it visible in the log.
            logger.exception("pagerduty sandbox failed on %s", endpoint.key)
            fault_name = "sandbox_error"
            reply = Reply(500, {"error": {"message": "Internal Error", "code": 2000}})
        self.log.append(
            PagerDutyRequest(
                seq=0,
                method=endpoint.key,
                http_method=request.method,
                args=query,
                user=call.requester_id or call.caller,
                token_source=token_source,
                content_type=content_type or "none",
                status=reply.status,
                response=reply.body,
                started_at=started,
                duration_s=time.perf_counter() - t0,
                fault=fault_name,
                delay_s=delay,
                api=endpoint.api,
                path=request.url.path,
                headers={h: request.headers[h] for h in LOGGED_HEADERS if h in request.headers},
                body=body,
                response_headers=reply.headers,
            ),
            generation,
        )
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    async def _fault(self, acct: Account, endpoint: Endpoint, call: Call, fault: Fault) -> Reply:
        if fault.kind != "timeout":
            return _rest_fault(fault) if endpoint.api == REST else _events_fault(fault)
        # timeout: answer only after the client has given up; maybe having done the work.
        reply = self._run(acct, endpoint, call) if fault.applied else None
        await self._hold(fault.hold_s)
        return reply or Reply(504, {"error": {"message": "Gateway Timeout", "code": 2000}})


class _Unrecognized(Exception):
    """An Events API body that is not JSON (the Events description's own example answer)."""

    @staticmethod
    def body() -> dict[str, Any]:
        return {
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"],
        }
