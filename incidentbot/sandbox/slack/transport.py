"""Delivery to the bot over HTTP or Socket Mode: the signature, the ack record, the 3 s rule.

Over HTTP every request is signed like Slack's (``X-Slack-Signature: v0=HMAC-SHA256(secret,
"v0:{ts}:{body}")`` with ``X-Slack-Request-Timestamp``), so the bot's real signature check is
exercised. Over Socket Mode the same request travels as an envelope on the app's WebSocket
(``socket_envelope``) and the ack is the envelope id coming back. Either way each answer is
recorded as an ``Ack`` with its status and how long the bot took, the figure Slack's 3-second
rule and the latency benchmarks are about, and what the bot answers in an ack (an immediate
message, a modal's ``response_action``) is applied to the workspace.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx

from incidentbot.sandbox.slack.driver_effects import apply_command_ack, apply_view_ack
from incidentbot.sandbox.slack.response_urls import ResponseUrls
from incidentbot.sandbox.slack.socket_messages import (
    RESPONSE_PAYLOAD_INTERACTIONS,
    Delivery,
    Envelope,
)
from incidentbot.sandbox.slack.socket_mode import SocketModeHub
from incidentbot.sandbox.slack.workspace import Workspace

ACK_TIMEOUT_S = 3.0
DRIVER_MODES = ("auto", "http", "socket")
SOCKET_RETRY_REASON = "timeout"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class SignedRequest:
    """A request ready to send to the bot (build many first to send them concurrently)."""

    kind: str
    url: str
    body: bytes
    headers: dict[str, str]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ack:
    """The bot's answer to one request, and how long it took to arrive."""

    kind: str
    status: int | None
    body: str
    elapsed_s: float
    retry_num: int
    request: SignedRequest
    timed_out: bool = False
    error: str | None = None
    problem: str | None = None
    transport: str = "http"
    envelope_id: str | None = None

    @property
    def ok(self) -> bool:
        """Acknowledged in time: a 2xx answer, or (Socket Mode) the envelope id sent back."""
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The answer body as JSON (``None`` when empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body.strip() else None
        except json.JSONDecodeError:
            return None


class Transport:
    """Signs requests, sends them to the bot and records each answer as an ``Ack``.

    ``mode`` picks the way in: ``http`` POSTs to ``bot_url``, ``socket`` sends envelopes to
    the app's Socket Mode connections, ``auto`` (the default) uses Socket Mode whenever an
    app is connected and HTTP otherwise, so the same driver calls work in both setups.
    """

    def __init__(
        self,
        workspace: Workspace,
        response_urls: ResponseUrls,
        *,
        bot_url: str | None,
        signing_secret: str,
        verification_token: str = "sandbox-verification-token",  # noqa: S107 - sandbox only
        ack_timeout: float = ACK_TIMEOUT_S,
        socket_mode: SocketModeHub | None = None,
        mode: str = "auto",
    ) -> None:
        self.ws = workspace
        self.response_urls = response_urls
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        self.ack_timeout = ack_timeout
        self.socket_mode = socket_mode
        self.mode = mode
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._events = 0

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in DRIVER_MODES:
            raise ValueError(f"unknown driver mode {value!r}; use one of {DRIVER_MODES}")
        if value == "socket" and self.socket_mode is None:
            raise ValueError("this driver has no Socket Mode server to send through")
        self._mode = value

    def uses_socket(self) -> bool:
        """Whether the next request goes over Socket Mode (see ``mode``)."""
        if self._mode == "auto":
            return self.socket_mode is not None and self.socket_mode.connected
        return self._mode == "socket"

    # -- building and sending -------------------------------------------------------------

    def build(
        self,
        kind: str,
        body: bytes,
        content_type: str,
        *,
        retry_num: int = 0,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signing_secret: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> SignedRequest:
        """Sign ``body``; ``timestamp`` and ``signing_secret`` can be forced for negative tests.

        Over Socket Mode the signature goes unused (the app-level token authenticated the
        connection), so no bot URL is needed there.
        """
        if not self.bot_url and not self.uses_socket():
            raise RuntimeError(
                "no bot URL: pass bot_url= to SlackSandbox or set driver.bot_url "
                "(or connect a Socket Mode app)"
            )
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(signing_secret or self.signing_secret, stamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        return SignedRequest(kind, self.bot_url or "", body, headers, dict(context or {}))

    def _record(
        self,
        req: SignedRequest,
        status: int | None,
        body: str,
        elapsed_s: float,
        error: str | None = None,
        timed_out: bool = False,
        *,
        transport: str = "http",
        envelope_id: str | None = None,
        problem: str | None = None,
    ) -> Ack:
        ack = Ack(
            kind=req.kind,
            status=status,
            body=body,
            elapsed_s=elapsed_s,
            retry_num=int(req.headers.get("X-Slack-Retry-Num", "0")),
            request=req,
            timed_out=timed_out,
            error=error,
            problem=problem,
            transport=transport,
            envelope_id=envelope_id,
        )
        with self._lock:
            self.acks.append(ack)
        if problem is None:
            self._apply(ack)
        return ack

    def send(self, req: SignedRequest) -> Ack:
        """Deliver one request; a bot slower than ``ack_timeout`` counts as timed out, as in
        Slack. Over HTTP it is POSTed to ``req.url``, over Socket Mode sent as an envelope."""
        if self.uses_socket():
            return self._send_socket(req)
        if not req.url:
            raise RuntimeError("built for Socket Mode, but no app is connected and no bot URL set")
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.ack_timeout)
            client = self._client
        t0 = time.perf_counter()
        try:
            resp = client.post(
                req.url, content=req.body, headers=req.headers, timeout=self.ack_timeout
            )
        except httpx.TimeoutException as exc:
            return self._record(req, None, "", _since(t0), type(exc).__name__, timed_out=True)
        except httpx.TransportError as exc:
            return self._record(req, None, "", _since(t0), f"{type(exc).__name__}: {exc}")
        return self._record(req, resp.status_code, resp.text, _since(t0))

    async def send_async(self, req: SignedRequest, client: httpx.AsyncClient) -> Ack:
        """The same as ``send`` on an ``httpx.AsyncClient`` (concurrent benchmarks); over
        Socket Mode the wait for the ack happens in a worker thread."""
        if self.uses_socket():
            return await asyncio.to_thread(self._send_socket, req)
        t0 = time.perf_counter()
        try:
            resp = await client.post(
                req.url, content=req.body, headers=req.headers, timeout=self.ack_timeout
            )
        except httpx.TimeoutException as exc:
            return self._record(req, None, "", _since(t0), type(exc).__name__, timed_out=True)
        except httpx.TransportError as exc:
            return self._record(req, None, "", _since(t0), f"{type(exc).__name__}: {exc}")
        return self._record(req, resp.status_code, resp.text, _since(t0))

    def _send_socket(self, req: SignedRequest) -> Ack:
        """Send ``req`` as an envelope and record the ack as HTTP mode records an answer:
        status 200 when the envelope id came back in time, its ``payload`` as the body."""
        if self.socket_mode is None:
            raise RuntimeError("this driver has no Socket Mode server to send through")
        envelope = socket_envelope(req)
        delivery = self.socket_mode.deliver(envelope, timeout=self.ack_timeout)
        payload = (delivery.ack or {}).get("payload")
        return self._record(
            req,
            200 if delivery.acked else None,
            "" if payload is None else json.dumps(payload),
            delivery.elapsed_s,
            delivery.error,
            delivery.timed_out,
            transport="socket",
            envelope_id=envelope.envelope_id,
            problem=_socket_ack_problem(delivery),
        )

    def retry_reason(self, ack: Ack) -> str:
        """What Slack says when it retries an event this ack failed to acknowledge."""
        if ack.transport == "socket":
            return SOCKET_RETRY_REASON
        return "http_timeout" if ack.timed_out else "http_error"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _apply(self, ack: Ack) -> None:
        """Apply what the ack carries; ``ack.problem`` says why Slack would have refused it."""
        if not ack.ok:
            return
        if ack.kind == "slash_command":
            ack.problem = apply_command_ack(self.ws, ack.request.context, ack.body)
        elif ack.kind == "view_submission":
            ack.problem = apply_view_ack(self.ws, ack.request.context, ack.json())


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def socket_envelope(req: SignedRequest) -> Envelope:
    """The Socket Mode envelope carrying what ``req`` would POST.

    A slash command's form fields become the payload object, an interaction's ``payload``
    field is unwrapped, an ``event_callback`` travels whole; the retry headers become
    ``retry_attempt``/``retry_reason``. Slack has no Socket Mode ``url_verification``.
    """
    if req.headers.get("Content-Type", "").startswith("application/json"):
        body = json.loads(req.body)
        if not isinstance(body, dict) or body.get("type") != "event_callback":
            kind = body.get("type") if isinstance(body, dict) else type(body).__name__
            raise ValueError(f"{kind} is not sent over Socket Mode")
        return Envelope(
            "events_api",
            body,
            accepts_response_payload=False,
            retry_attempt=int(req.headers.get("X-Slack-Retry-Num", "0")),
            retry_reason=req.headers.get("X-Slack-Retry-Reason", ""),
        )
    fields = dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
    if "payload" in fields:
        payload = json.loads(fields["payload"])
        accepts = payload.get("type") in RESPONSE_PAYLOAD_INTERACTIONS
        return Envelope("interactive", payload, accepts_response_payload=accepts)
    return Envelope("slash_commands", fields, accepts_response_payload=True)


def _socket_ack_problem(delivery: Delivery) -> str | None:
    """Why Slack would not use the payload of this ack (``None``: it would, or there is none)."""
    if delivery.ack is None or "payload" not in delivery.ack:
        return None
    envelope = delivery.envelope
    if not envelope.accepts_response_payload:
        return (
            f"the ack of a {envelope.type} envelope carries a payload, but the envelope does "
            "not accept one (accepts_response_payload is false): Slack ignores it"
        )
    if not isinstance(delivery.ack["payload"], dict):
        return "an ack's payload must be a JSON object"
    return None
