"""The edge of ``/slack/events``: what reaches Bolt is a well-formed, signed Slack request.

Anyone on the network can send bytes to this endpoint. Before Bolt sees a request it is
checked here, cheaply and in this order, and refused with a 4xx and a short reason (never a
500, never a traceback):

1. the content type is one Slack sends (a form, or JSON for the Events API): else 415;
2. the body is at most :data:`MAX_BODY` bytes, refused from ``Content-Length`` or while
   streaming, before it is read whole: else 413;
3. the signature: a numeric timestamp within five
   minutes and a ``v0=`` HMAC-SHA256 over ``v0:<timestamp>:<body>``: else 401;
4. the body is UTF-8 and parses as what its content type says (a JSON object; a form with a
   command, or an interaction ``payload`` that is a JSON object, no field given twice): else
   400.

Bolt gets that parse (:class:`CheckedRequest`), not a second one of the bytes, and does not
check the signature again.

Then each request runs once (:mod:`incidentbot.inbound`): a replay of the same signed bytes, or
Slack's retry of a command, click or event, gets the first answer instead of running again.

From the moment a request passed these checks until its answer is written to the socket, the
work that can wait (the ledger's next step, an alert storm) waits (:func:`priority.urgent`):
Bolt's dispatch runs in the thread pool, and the event loop that sends its answer needs the
interpreter back from the threads that would otherwise start right when the dispatch returns.
The Slack calls the listeners make about the request (a reply through its response URL, a form
opened) start once the answer's last byte is written (:mod:`incidentbot.slack.after_answer`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_bolt.request.internals import build_context
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from incidentbot import priority
from incidentbot.slack import after_answer

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # Slack's own payloads are a few KiB; a modal submission stays far below
MAX_AGE_S = 300  # Slack's window for a request timestamp
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


EVENTS_API_TYPES = frozenset({"event_callback", "url_verification", "app_rate_limited"})
INTERACTION_TYPES = frozenset({
    "block_actions", "block_suggestion", "view_submission", "view_closed", "shortcut",
    "message_action", "interactive_message", "dialog_submission", "dialog_cancellation",
    "dialog_suggestion", "workflow_step_edit",
})  # fmt: skip
# Fields Slack always sends as objects (or lists of objects): anything else is not Slack.
_OBJECTS = ("event", "view", "user", "team", "channel", "container", "message", "enterprise")
_LISTS_OF_OBJECTS = ("actions", "authorizations")


class Refused(Exception):
    """A request refused at the edge: its status and a short reason for the sender."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> Response:
        return JSONResponse({"ok": False, "error": self.reason}, status_code=self.status)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused past ``limit`` bytes without reading more than that."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refused(400, "malformed Content-Length")
        if int(declared) > limit:
            raise Refused(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"request body over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise Refused(400, "the client went away mid-request") from exc
    return b"".join(chunks)


def verify_signature(
    headers: Any, body: bytes, secret: str, *, now: Callable[[], float] = time.time
) -> None:
    """Slack's v0 signature over the raw bytes (so a non-UTF-8 body is judged unsigned first)."""
    stamp = headers.get("x-slack-request-timestamp", "").strip()
    signature = headers.get("x-slack-signature", "").strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise Refused(401, "missing or malformed X-Slack-Request-Timestamp")
    if abs(now() - int(stamp)) > MAX_AGE_S:
        raise Refused(401, "stale request timestamp")
    if not _SIGNATURE.fullmatch(signature):
        raise Refused(401, "missing or malformed X-Slack-Signature")
    base = b"v0:" + stamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused(401, "invalid signature")


def parse(kind: str, body: bytes) -> dict[str, Any]:
    """The request as Slack meant it, or :class:`Refused` (400) saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, "the body is not UTF-8") from exc
    if kind == JSON:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise Refused(400, "the body is not valid JSON") from exc
        if not isinstance(data, dict) or data.get("type") not in EVENTS_API_TYPES:
            raise Refused(400, "not a Slack Events API request")
        event = data.get("event")
        if data["type"] == "event_callback" and not (
            isinstance(event, dict) and isinstance(event.get("type"), str)
        ):
            raise Refused(400, "an event_callback without an event")
        _check_shape(data)
        return data
    try:
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise Refused(400, "the body is not a form") from exc
    if any(len(v) > 1 for v in fields.values()):
        raise Refused(400, "a form field given twice")
    form = {k: v[0] for k, v in fields.items()}
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError as exc:
            raise Refused(400, "the interaction payload is not valid JSON") from exc
        if not isinstance(payload, dict) or payload.get("type") not in INTERACTION_TYPES:
            raise Refused(400, "not a Slack interaction")
        _check_shape(payload)
        return payload
    if "command" in form or "ssl_check" in form:
        return form
    raise Refused(400, "not a Slack command or interaction")


def _check_shape(data: dict[str, Any]) -> None:
    for name in _OBJECTS:
        if name in data and data[name] is not None and not isinstance(data[name], dict):
            raise Refused(400, f"malformed {name!r}: Slack sends an object")
    for name in _LISTS_OF_OBJECTS:
        value = data.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            raise Refused(400, f"malformed {name!r}: Slack sends a list of objects")


async def checked(request: Request, signing_secret: str) -> BoltRequest:
    """A request that passed every check above (else :class:`Refused`), for Bolt: what was
    checked is what runs, parsed once (:class:`CheckedRequest`)."""
    kind = media_type(request)
    if kind not in (FORM, JSON):
        raise Refused(415, "unsupported content type: Slack sends a form or JSON")
    body = await read_body(request)
    verify_signature(request.headers, body, signing_secret)
    return CheckedRequest(body, parse(kind, body), request.headers)


class CheckedRequest(BoltRequest):
    """Bolt's request built from the edge's parse of the body, not from a second one: Bolt
    would parse the bytes again (a form's repeated field read as its last value, where the
    edge checked the first; a form body starting with ``{`` read as JSON). The signature was
    verified here, once: Bolt's own check is off (:func:`incidentbot.slack.app.build_bolt_app`).
    """

    def __init__(self, raw: bytes, body: dict[str, Any], headers: Any) -> None:
        super().__init__(body="", headers=headers)
        self.raw_body = raw.decode("utf-8")  # valid: parse() decoded it
        self.body = body
        self.context = build_context(self.context, body)


class SlackEndpoint:
    """``/slack/events`` as an ASGI app: checked at the edge, dispatched by Bolt in the thread
    pool (Bolt's own Starlette adapter would run the synchronous app on the event loop, so that
    one slow request stalls every other), answered with the work that can wait held back until
    the answer is sent."""

    def __init__(self, bolt: App | None, signing_secret: str | None) -> None:
        self.bolt = bolt
        self.signing_secret = signing_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if self.bolt is None:
            refused = Refused(503, "Slack is not configured")
        elif self.signing_secret is None:  # Socket Mode: nothing here could authenticate it
            refused = Refused(403, "this bot takes Slack requests over Socket Mode")
        else:
            try:
                bolt_request = await checked(request, self.signing_secret)
            except Refused as exc:
                refused = exc
            else:
                # The listeners' Slack calls start once the answer is written (the thread pool
                # runs the dispatch in a copy of this context, which holds where they go).
                with after_answer.answer(), priority.urgent(this_thread=False):
                    answer = await run_in_threadpool(self.bolt.dispatch, bolt_request)
                    await to_starlette_response(answer)(scope, receive, send)
                return
        await refused.response()(scope, receive, send)
