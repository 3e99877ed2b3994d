"""``PagerDutySandbox``: the local PagerDuty-compatible server, run in a background thread.

It binds a free port on 127.0.0.1 and serves HTTPS (the ``pagerduty`` client accepts nothing
else): REST API v2 at ``rest_url``, Events API v2 at ``events_url``. The bot needs only
``RestApiV2Client(token, base_url=rest_url, verify=ctx)`` and
``EventsApiV2Client(key, base_url=events_url, verify=ctx)``. The same object is the handle
tests use to arm faults, read the request log, play responders and collect webhooks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pagerduty
import uvicorn

from incidentbot.sandbox.pagerduty import render
from incidentbot.sandbox.pagerduty.account import DEFAULT_API_TOKEN, Account
from incidentbot.sandbox.pagerduty.actors import Actors
from incidentbot.sandbox.pagerduty.log import PagerDutyRequest
from incidentbot.sandbox.pagerduty.summary import incident_text, render_summary
from incidentbot.sandbox.pagerduty.tls import SandboxTls, sandbox_tls
from incidentbot.sandbox.pagerduty.webhooks import (
    DEFAULT_RETRY_DELAYS,
    DEFAULT_TIMEOUT_S,
    WebhookSender,
)
from incidentbot.sandbox.serving import listen, wait_started
from incidentbot.sandbox.slack.faults import ANY_METHOD, Fault, FaultKind, FaultPlan
from incidentbot.sandbox.slack.log import RequestLog

CLIENT_TIMEOUT_S = 60  # the pagerduty client's default read timeout


class PagerDutySandbox(Actors):
    """A local PagerDuty account over real HTTPS; use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_token: str = DEFAULT_API_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: bool = True,
        clock: Callable[[], float] = time.time,
        tls: bool = True,
        webhook_retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        webhook_timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host, self.port = host, port
        self.api_token = api_token
        self.tls: SandboxTls | None = sandbox_tls() if tls else None
        self._seed, self._clock = seed, clock
        self.closing = threading.Event()
        self.faults = FaultPlan()
        self.log = RequestLog()
        self.webhooks = WebhookSender(retry_delays=webhook_retry_delays, timeout=webhook_timeout)
        self._default_webhook = (webhook_url, webhook_secret)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_account()

    def _new_account(self) -> None:
        self.account = Account(api_token=self.api_token, seed=self._seed, clock=self._clock)
        acct = self.account
        acct.listeners.append(
            lambda kind, inc, who, extra: self.webhooks.on_event(acct, kind, inc, who, extra)
        )
        self._point_urls()
        url, secret = self._default_webhook
        if url:
            self.subscribe(url, secret=secret)

    def _point_urls(self) -> None:
        self.account.api_url = self.rest_url
        self.account.web_url = f"{self.url}/_sandbox/view"

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root, e.g. ``https://127.0.0.1:54321``."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """``base_url`` for ``pagerduty.RestApiV2Client``."""
        return self.url

    @property
    def events_url(self) -> str:
        """``base_url`` for ``pagerduty.EventsApiV2Client`` (it appends ``/v2/enqueue``)."""
        return f"{self.url}/events"

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate to trust (PEM), for clients in another process."""
        return self.tls.ca_file if self.tls else None

    def ssl_context(self) -> ssl.SSLContext:
        """What to pass as ``verify=`` to a ``pagerduty`` or ``httpx`` client."""
        if self.tls is None:
            raise RuntimeError("this sandbox serves plain HTTP (tls=False)")
        return self.tls.client_context()

    def start(self) -> PagerDutySandbox:
        """Bind the port and serve in a background thread; returns once it accepts requests."""
        from incidentbot.sandbox.pagerduty.app import build_app

        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl_certfile": str(self.tls.cert_file), "ssl_keyfile": str(self.tls.key_file)}
        config = uvicorn.Config(
            build_app(self),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            **tls,
        )
        self.closing.clear()
        self._server = uvicorn.Server(config)
        self._point_urls()
        self.webhooks.start()
        self._thread = threading.Thread(
            target=self._serve, args=(self._server, sock), name="pd-sandbox", daemon=True
        )
        self._thread.start()
        wait_started(self._server, self._thread, "PagerDuty sandbox")
        return self

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            loop.close()

    def _abort_connections(self) -> None:
        """Drop kept-alive client connections at once: a TLS close would wait for each peer."""
        if self._server is not None:
            for connection in list(self._server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()

    def stop(self) -> None:
        """Stop serving; held (timeout-faulted) calls and pending webhook retries are dropped."""
        self.closing.set()
        if self._server is not None:
            self._server.should_exit = self._server.force_exit = True
            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon_threadsafe(self._abort_connections)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread, self._loop = None, None, None
        self.webhooks.stop()

    def __enter__(self) -> PagerDutySandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """A fresh seeded account, no faults, empty logs, no subscriptions but the default one."""
        self.faults.clear()
        self.log.clear()
        self.webhooks.clear()
        self._new_account()

    # -- clients the bot would build --------------------------------------------------------

    def rest_client(
        self, from_email: str | None = None, *, token: str | None = None, **kw: Any
    ) -> pagerduty.RestApiV2Client:
        """A ``pagerduty.RestApiV2Client`` on this sandbox (``From`` set when given)."""
        kw.setdefault("verify", self.ssl_context())
        return pagerduty.RestApiV2Client(
            token or self.api_token, default_from=from_email, base_url=self.rest_url, **kw
        )

    def events_client(self, service: str = "rpc", **kw: Any) -> pagerduty.EventsApiV2Client:
        """A ``pagerduty.EventsApiV2Client`` routing to ``service``'s integration."""
        kw.setdefault("verify", self.ssl_context())
        return pagerduty.EventsApiV2Client(
            self.routing_key(service), base_url=self.events_url, **kw
        )

    def routing_key(self, service: str) -> str:
        """The Events API v2 routing key of a service, by name (``rpc``) or id."""
        return self.account.routing_key(service)

    def user_token(self, user: str) -> str:
        """A user-level API token: writes made with it need no ``From`` header."""
        return self.account.user_token(user)

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        endpoint: str,
        kind: FaultKind = "ratelimited",
        *,
        count: int = 1,
        retry_after: int = 1,
        status: int = 500,
        hold_s: float = CLIENT_TIMEOUT_S + 1.0,
        applied: bool = False,
    ) -> Fault:
        """Make the next ``count`` calls of ``endpoint`` (``"POST /incidents"``, ``"*"``) fail.

        ``ratelimited``: 429 with ``ratelimit-reset: retry_after`` (REST). ``server_error``:
        HTTP ``status``. ``timeout``: the answer is held ``hold_s`` seconds (longer than the
        client waits); with ``applied`` the call takes effect anyway, as a call PagerDuty
        handled but whose answer was lost would.
        """
        from incidentbot.sandbox.pagerduty.app import ENDPOINTS

        known = {e.key for e in ENDPOINTS}
        if endpoint != ANY_METHOD and endpoint not in known:
            raise ValueError(f"unknown endpoint {endpoint!r}; use one of {sorted(known)}")
        return self.faults.arm(Fault(endpoint, kind, count, retry_after, status, hold_s, applied))

    def set_latency(self, seconds: float, endpoints: list[str] | None = None) -> None:
        """Delay every answer (or those of ``endpoints``) by ``seconds``; 0 turns it off."""
        self.faults.set_latency(seconds, endpoints)

    # -- inspection -------------------------------------------------------------------------

    def requests(self, endpoint: str | None = None) -> list[PagerDutyRequest]:
        """API calls received so far (optionally of one endpoint), oldest first."""
        return [e for e in self.log.entries(endpoint) if isinstance(e, PagerDutyRequest)]

    def incident(self, ref: str) -> dict[str, Any]:
        """An incident (by id or number) as ``GET /incidents/{id}`` shows it."""
        with self.account.lock:
            return render.incident(self.account, self.account.incident(ref))

    def incidents(self) -> list[dict[str, Any]]:
        with self.account.lock:
            found = sorted(self.account.incidents.values(), key=lambda i: i.number)
            return [render.incident(self.account, i) for i in found]

    def summary(self) -> str:
        """Every incident with its log and webhooks, and the change events, as text."""
        return render_summary(self.account, self.webhook_deliveries())

    def view(self, kind: str, ref: str) -> str | None:
        """The page an ``html_url`` points at (incidents as text, other objects as JSON)."""
        acct = self.account
        with acct.lock:
            if kind == "incidents":
                try:
                    return incident_text(acct, acct.incident(ref), self.webhook_deliveries())
                except KeyError:
                    return None
            shown: dict[str, Any] | None = None
            if kind == "users" and ref in acct.users:
                shown = render.user(acct, acct.users[ref])
            elif kind == "service-directory" and ref in acct.services:
                shown = render.service(acct, acct.services[ref])
            elif kind == "escalation_policies" and ref in acct.policies:
                shown = render.escalation_policy(acct, acct.policies[ref])
            elif kind == "schedules" and ref in acct.schedules:
                shown = render.schedule(acct, acct.schedules[ref])
            return json.dumps(shown, indent=2) if shown is not None else None

    def describe(self) -> dict[str, Any]:
        """Ids, keys and URLs a bot needs to be configured against this account."""
        acct = self.account
        with acct.lock:
            return {
                "rest_url": self.rest_url,
                "events_url": self.events_url,
                "api_token": self.api_token,
                "ca_file": str(self.ca_file) if self.ca_file else None,
                "users": [
                    {"id": u.id, "handle": u.handle, "name": u.name, "email": u.email}
                    for u in acct.users.values()
                ],
                "services": [
                    {
                        "id": s.id,
                        "name": s.name,
                        "escalation_policy_id": s.escalation_policy_id,
                        "routing_key": s.integrations[0].key,
                    }
                    for s in acct.services.values()
                ],
                "schedules": [{"id": s.id, "name": s.name} for s in acct.schedules.values()],
                "webhook_subscriptions": [
                    self.subscription_json(s) for s in self.webhooks.subscriptions.values()
                ],
            }
