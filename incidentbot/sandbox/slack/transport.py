"""Signed delivery to the bot: Slack's v0 signature, the ack record, the 3-second timeout.

Every request is signed like Slack's (``X-Slack-Signature: v0=HMAC-SHA256(secret,
"v0:{ts}:{body}")`` with ``X-Slack-Request-Timestamp``), so the bot's real signature check is
exercised. Each answer is recorded as an ``Ack`` with its status and how long the bot took, the
figure Slack's 3-second rule and the latency benchmarks are about. What the bot answers in an
ack (an immediate message, a modal's ``response_action``) is applied to the workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from incidentbot.sandbox.slack.driver_effects import apply_command_ack, apply_view_ack
from incidentbot.sandbox.slack.response_urls import ResponseUrls
from incidentbot.sandbox.slack.workspace import Workspace

ACK_TIMEOUT_S = 3.0


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

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The answer body as JSON (``None`` when empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body.strip() else None
        except json.JSONDecodeError:
            return None


class Transport:
    """Signs requests, sends them to the bot and records each answer as an ``Ack``."""

    def __init__(
        self,
        workspace: Workspace,
        response_urls: ResponseUrls,
        *,
        bot_url: str | None,
        signing_secret: str,
        verification_token: str = "sandbox-verification-token",  # noqa: S107 - sandbox only
        ack_timeout: float = ACK_TIMEOUT_S,
    ) -> None:
        self.ws = workspace
        self.response_urls = response_urls
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        self.ack_timeout = ack_timeout
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._events = 0

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
        """Sign ``body``; ``timestamp`` and ``signing_secret`` can be forced for negative tests."""
        if not self.bot_url:
            raise RuntimeError("no bot URL: pass bot_url= to SlackSandbox or set driver.bot_url")
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
        return SignedRequest(kind, self.bot_url, body, headers, dict(context or {}))

    def _record(
        self,
        req: SignedRequest,
        status: int | None,
        body: str,
        t0: float,
        error: str | None = None,
        timed_out: bool = False,
    ) -> Ack:
        ack = Ack(
            kind=req.kind,
            status=status,
            body=body,
            elapsed_s=time.perf_counter() - t0,
            retry_num=int(req.headers.get("X-Slack-Retry-Num", "0")),
            request=req,
            timed_out=timed_out,
            error=error,
        )
        with self._lock:
            self.acks.append(ack)
        self._apply(ack)
        return ack

    def send(self, req: SignedRequest) -> Ack:
        """POST one request; a bot slower than ``ack_timeout`` counts as timed out, as in Slack."""
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
            return self._record(req, None, "", t0, error=type(exc).__name__, timed_out=True)
        except httpx.TransportError as exc:
            return self._record(req, None, "", t0, error=f"{type(exc).__name__}: {exc}")
        return self._record(req, resp.status_code, resp.text, t0)

    async def send_async(self, req: SignedRequest, client: httpx.AsyncClient) -> Ack:
        """The same as ``send`` on an ``httpx.AsyncClient`` (concurrent benchmarks)."""
        t0 = time.perf_counter()
        try:
            resp = await client.post(
                req.url, content=req.body, headers=req.headers, timeout=self.ack_timeout
            )
        except httpx.TimeoutException as exc:
            return self._record(req, None, "", t0, error=type(exc).__name__, timed_out=True)
        except httpx.TransportError as exc:
            return self._record(req, None, "", t0, error=f"{type(exc).__name__}: {exc}")
        return self._record(req, resp.status_code, resp.text, t0)

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
