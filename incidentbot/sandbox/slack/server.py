"""``SlackSandbox``: the local Slack-compatible server, run in a background thread.

It binds a free port on 127.0.0.1 and serves the Web API under ``/api/``, so the bot only
needs ``WebClient(base_url=sandbox.base_url)``, and Socket Mode at ``/link/`` (the URL
``apps.connections.open`` hands out for the app-level token). The same object is the Python
handle tests use to arm faults, read the request log, print the transcript and drive the bot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn
from slack_sdk import WebClient

from incidentbot.sandbox.serving import listen, wait_started
from incidentbot.sandbox.slack import transcript
from incidentbot.sandbox.slack.driver import ACK_TIMEOUT_S, BotDriver
from incidentbot.sandbox.slack.faults import Fault, FaultKind, FaultPlan, RateLimiter
from incidentbot.sandbox.slack.log import LoggedRequest, RequestLog
from incidentbot.sandbox.slack.models import Ephemeral
from incidentbot.sandbox.slack.response_urls import ResponsePost, ResponseUrls
from incidentbot.sandbox.slack.socket_mode import MAX_CONNECTIONS, SocketModeHub
from incidentbot.sandbox.slack.workspace import Workspace

DEFAULT_SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a local sandbox's own secret
DEFAULT_BOT_TOKEN = "xoxb-sandbox-bot-token"  # noqa: S105 - accepted only by this sandbox
DEFAULT_APP_TOKEN = "xapp-1-sandbox-app-token"  # noqa: S105 - accepted only by this sandbox


class SlackSandbox:
    """A local Slack workspace over real HTTP; use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        bot_url: str | None = None,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        bot_token: str = DEFAULT_BOT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: bool = True,
        clock: Callable[[], float] = time.time,
        rate_limits: bool = False,
        ack_timeout: float = ACK_TIMEOUT_S,
        app_token: str = DEFAULT_APP_TOKEN,
        driver_mode: str = "auto",
        max_socket_connections: int = MAX_CONNECTIONS,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
    ) -> None:
        """``driver_mode``: how ``driver`` reaches the bot (``auto``, ``http``, ``socket``);
        ``ws_ping_*``: the WebSocket keepalive the server runs on Socket Mode connections."""
        self.host = host
        self.port = port
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        self.app_token = app_token
        self._seed = seed
        self._clock = clock
        self._ack_timeout = ack_timeout
        self._driver_mode = driver_mode
        self._ws_ping = (ws_ping_interval, ws_ping_timeout)
        self.closing = threading.Event()
        self.socket_mode = SocketModeHub(
            app_token=app_token,
            app_id=lambda: self.workspace.app_id,
            ws_url=lambda: f"ws://{self.host}:{self.port}/link/",
            closing=self.closing,
            max_connections=max_socket_connections,
        )
        self.faults = FaultPlan()
        self.rate_limits = RateLimiter(enabled=rate_limits)
        self._rate_limits_default = rate_limits
        self.log = RequestLog()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._new_workspace(bot_url)

    def _new_workspace(self, bot_url: str | None) -> None:
        self.workspace = Workspace(bot_token=self.bot_token, seed=self._seed, clock=self._clock)
        self.response_urls = ResponseUrls(self.workspace)
        self.driver = BotDriver(
            self.workspace,
            self.response_urls,
            bot_url=bot_url,
            signing_secret=self.signing_secret,
            ack_timeout=self._ack_timeout,
            socket_mode=self.socket_mode,
            mode=self._driver_mode,
        )
        if self._server is not None:
            self._point_urls()

    def _point_urls(self) -> None:
        self.workspace.web_url = self.url
        self.response_urls.base_url = self.url

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give ``WebClient(base_url=...)``: the root plus ``/api/``."""
        return f"{self.url}/api/"

    def start(self) -> SlackSandbox:
        """Bind the port and serve in a background thread; returns once it accepts requests."""
        from incidentbot.sandbox.slack.app import build_app

        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            ws_ping_interval=self._ws_ping[0],
            ws_ping_timeout=self._ws_ping[1],
        )
        self.closing.clear()
        self._server = uvicorn.Server(config)
        self._point_urls()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="slack-sandbox", daemon=True
        )
        self._thread.start()
        wait_started(self._server, self._thread, "Slack sandbox")
        return self

    def stop(self) -> None:
        """Stop serving; held (timeout-faulted) calls and unacknowledged envelopes are released
        first."""
        self.closing.set()
        self.socket_mode.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None
        self.driver.close()

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def web_client(self, **kwargs: Any) -> WebClient:
        """A ``slack_sdk.WebClient`` pointed at this sandbox with the bot token."""
        kwargs.setdefault("token", self.bot_token)
        return WebClient(base_url=self.base_url, **kwargs)

    def reset(self) -> None:
        """A fresh seeded workspace, no faults, default rate limits, empty logs.

        Lets one running server serve many tests, each starting from the same state. Socket
        Mode connections stay open (the app is still running) and the driver keeps its mode.
        """
        self.faults.clear()
        self.rate_limits.reset()
        self.rate_limits.enabled = self._rate_limits_default
        self.rate_limits.overrides.clear()
        self.rate_limits.clock = time.monotonic
        self.log.clear()
        self.socket_mode.clear_log()
        self.driver.close()
        self._driver_mode = self.driver.mode
        self._new_workspace(self.driver.bot_url)

    # -- faults ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        kind: FaultKind = "ratelimited",
        *,
        count: int = 1,
        retry_after: int = 1,
        status: int = 500,
        hold_s: float = 31.0,
        applied: bool = False,
        channel: str | None = None,
        after: Callable[[], None] | None = None,
    ) -> Fault:
        """Make the next ``count`` calls of ``method`` (``"*"``: any method) fail.

        ``ratelimited``: HTTP 429 with ``Retry-After: retry_after``. ``server_error``: HTTP
        ``status``. ``timeout``: the answer is held ``hold_s`` seconds (longer than the
        client waits). With ``applied`` a ``server_error`` or ``timeout`` call takes effect
        anyway, as a call Slack handled but whose answer was lost would; ``after`` then runs
        before the answer (whatever else happens in Slack meanwhile). A ``ratelimited`` call
        runs ``after`` before its 429 too (what happens while the caller is held back).
        ``channel`` limits the fault to calls naming that channel id.
        """
        fault = Fault(method, kind, count, retry_after, status, hold_s, applied, channel, after)
        return self.faults.arm(fault)

    def set_latency(self, seconds: float, methods: list[str] | None = None) -> None:
        """Delay every answer (or those of ``methods``) by ``seconds``; 0 turns it off."""
        self.faults.set_latency(seconds, methods)

    def enable_rate_limits(self, enabled: bool = True) -> None:
        """Switch Slack-like rate limits on (or off); buckets start full."""
        self.rate_limits.reset()
        self.rate_limits.enabled = enabled

    # -- inspection -----------------------------------------------------------------------

    def requests(self, method: str | None = None) -> list[LoggedRequest]:
        """Web API calls received so far (optionally of one method), oldest first."""
        return self.log.entries(method)

    def transcript(self, channel: str | None = None) -> str:
        """What each channel (or one, by id or name) shows, as readable text."""
        return transcript.render(self.workspace, channel)

    def snapshot(self, channel: str) -> transcript.ChannelSnapshot:
        """What one channel shows, as data (authors by name, edits applied, pins, members)."""
        ws = self.workspace
        with ws.lock:
            return transcript.snapshot(ws, ws.channel(channel))

    def ephemeral(self, user: str | None = None) -> list[Ephemeral]:
        """Messages only one user saw (optionally only ``user``'s), deleted ones left out."""
        ws = self.workspace
        with ws.lock:
            uid = ws.user(user).id if user else None
            return [e for e in ws.ephemerals if not e.deleted and uid in (None, e.user)]

    def response_posts(self, url: str | None = None) -> list[ResponsePost]:
        """What the bot POSTed to response_urls (all of them, or one)."""
        urls = [self.response_urls.get(url)] if url else self.response_urls.all()
        return [post for u in urls if u is not None for post in u.posts]

    def describe(self) -> dict[str, Any]:
        """Ids and names a bot needs to be configured against this workspace."""
        ws = self.workspace
        with ws.lock:
            return {
                "base_url": self.base_url,
                "team_id": ws.team_id,
                "team_name": ws.team_name,
                "bot_user_id": ws.bot.id,
                "bot_token": self.bot_token,
                "app_token": self.app_token,
                "app_id": ws.app_id,
                "users": [
                    {"id": u.id, "name": u.name, "email": u.email, "is_bot": u.is_bot}
                    for u in ws.users.values()
                ],
                "channels": [
                    {"id": c.id, "name": c.name, "is_private": c.is_private}
                    for c in ws.channels.values()
                    if not c.is_im
                ],
                "usergroups": [{"id": g.id, "handle": g.handle} for g in ws.usergroups.values()],
            }
