"""Putting the bot together: database, Slack adapter, ledger workers, Bolt and the web app.

``incidentbot serve``, the demo and the end-to-end tests all build the bot here, so what the
tests run is what production runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from slack_bolt import App
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.effect_wiring import Effects, refresh_header, required_secret
from incidentbot.errors import DomainError
from incidentbot.ledger.worker import WorkerPool
from incidentbot.metrics import Metrics
from incidentbot.people.lookup import Sightings
from incidentbot.runbooks.actions import registry as runbook_actions
from incidentbot.runbooks.check_cache import CheckCache
from incidentbot.runbooks.loader import Catalog, load_dirs
from incidentbot.runbooks.messages import RunMessages
from incidentbot.scheduler.builtin import Services, build_scheduler
from incidentbot.scheduler.core import Scheduler
from incidentbot.slack.action_commands import ActionCommands
from incidentbot.slack.app import build_bolt_app
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.handoff_commands import HandoffCommands
from incidentbot.slack.once import OnceApp
from incidentbot.slack.postmortem_commands import PostmortemCommands
from incidentbot.slack.reminder_commands import ReminderCommands
from incidentbot.slack.runbook_commands import RunbookCommands
from incidentbot.slack.web_client import PooledWebClient
from incidentbot.usecases.core import Core
from incidentbot.web import alertmanager, pagerduty_webhooks, run_page, warmup
from incidentbot.web.app import create_app

if TYPE_CHECKING:  # imported only when configured: PagerDuty's client, Socket Mode's
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from incidentbot.pagerduty_adapter import PagerDutyPager
    from incidentbot.ports import Pager

log = logging.getLogger(__name__)


@dataclass
class Bot:
    settings: Settings
    engine: Engine
    chat: SlackChat
    metrics: Metrics
    bolt: App
    asgi: Starlette
    pool: WorkerPool
    slack_state: str = "not checked"
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _unsubscribe: Callable[[], None] | None = field(default=None, repr=False)
    pager: PagerDutyPager | None = None
    _socket: SocketModeHandler | None = field(default=None, repr=False)
    catalog: Catalog = field(default_factory=Catalog)
    run_messages: RunMessages | None = None
    scheduler: Scheduler | None = None
    core: Core | None = None
    # Looks up the Slack users the bot sees, for the people directory (off the request path).
    sightings: Sightings | None = None
    # Set once warmed up: /healthz answers 503 until then (see incidentbot.web.warmup).
    ready: warmup.Readiness = field(default_factory=warmup.Readiness)
    # What warm_up runs after the built-in steps (a test holds start-up here with a gate).
    extra_warm_up: list[warmup.Step] = field(default_factory=list)
    url: str | None = None  # the web server's base URL, once it listens

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: Engine | None = None,
        *,
        poll: float = 1.0,
        remember_checks: bool = False,
    ) -> Bot:
        """Wire everything; refuses (DomainError) when a secret the mode needs is missing.
        ``remember_checks``: see :mod:`incidentbot.runbooks.check_cache` (``serve``)."""
        token = required_secret(settings.slack_bot_token, "INCIDENTBOT_SLACK_BOT_TOKEN")
        signing = None
        if settings.slack.mode == "http":
            signing = required_secret(
                settings.slack_signing_secret, "INCIDENTBOT_SLACK_SIGNING_SECRET"
            )
        else:
            required_secret(settings.slack_app_token, "INCIDENTBOT_SLACK_APP_TOKEN")
        if engine is None:
            # Alert deliveries, workers and their step threads, Slack: none connects per use.
            pool = alertmanager.CONCURRENCY + 2 * settings.workers + 4
            url, grouped = settings.effective_database_url, settings.group_commit
            engine = db.make_engine(url, grouped=grouped, pool_size=pool)
        db.check_schema(engine)
        metrics = Metrics(engine, settings)
        fx = Effects.install(settings, engine, token=token, observer=metrics.observe_slack_call)
        chat, pager, run_messages, page_key = fx.chat, fx.pager, fx.run_messages, fx.page_key
        cache = CheckCache.open(settings.data_dir, runbook_actions) if remember_checks else None
        catalog = load_dirs(settings.runbooks.dirs, runbook_actions, cache=cache)
        for problem in catalog.problems:
            log.error("runbook not loaded: %s", problem)
        holder: dict[str, Catalog] = {"catalog": catalog}
        runbook_commands = RunbookCommands(settings, engine, lambda: holder["catalog"], chat)
        handoffs = HandoffCommands(settings, engine, chat, _handoff_pager(settings, pager))
        sightings = Sightings(engine, chat)
        client_args: dict[str, Any] = {"token": token}
        if settings.slack.api_url:
            client_args["base_url"] = settings.slack.api_url
        # The one core every door in this process calls: Slack here, Alertmanager through
        # the web app (its declares queue the same effects, see alerts.web).
        core = Core(settings, engine, pager=pager, catalog=lambda: holder["catalog"])
        bolt = build_bolt_app(
            core,
            # Bolt's calls (forms, ephemeral messages) share the ledger's kept-alive connections.
            client=PooledWebClient(**client_args, connections=chat.connections),
            signing_secret=signing,
            metrics=metrics,
            runbooks=runbook_commands,
            actions=ActionCommands(settings, engine, chat),
            postmortems=PostmortemCommands(settings, engine, chat),
            handoff=handoffs,
            reminders=ReminderCommands(settings, engine, chat),
            people=sightings,
        )
        pool = WorkerPool(
            engine, threads=settings.workers, lease=settings.worker_lease, poll=poll, name="bot"
        )
        bot = cls(settings, engine, chat, metrics, bolt, asgi=None, pool=pool)  # type: ignore[arg-type]
        bot.pager = pager
        bot.catalog = catalog
        bot.core = core
        services = Services(settings, engine, chat, handoffs=handoffs)
        bot.sightings = sightings
        bot.scheduler = build_scheduler(
            settings, engine, services, name=f"bot:{socket.gethostname()}:{os.getpid()}"
        )
        bot.run_messages = run_messages
        bot._unsubscribe = fx.unsubscribe
        bot.asgi = create_app(
            bolt=bolt,
            engine=engine,
            metrics=metrics,
            slack_state=lambda: bot.slack_state,
            ready=bot.ready,
            extra_routes=[
                pagerduty_webhooks.route(engine, settings, on_change=refresh_header, core=core),
                run_page.route(engine, page_key, settings.people),
            ],
            settings=settings,
            signing_secret=signing,
        )
        return bot

    def check_slack(self) -> str:
        try:
            self.chat.bot_user_id()
            if isinstance(self.bolt, OnceApp):
                self.bolt.warm()  # the first command's answer makes no call to Slack first
            self.slack_state = "ok"
        except Exception as exc:
            self.slack_state = f"error: {exc}"
        return self.slack_state

    def start_workers(self) -> None:
        self.pool.start()
        if self.run_messages is not None:
            self.run_messages.start()

    def start_scheduler(self) -> None:
        """Run the scheduled jobs (handoffs, reminders, registered jobs): one replica leads."""
        if self.scheduler is not None:
            self.scheduler.start()

    def warm_up(self, *, check_slack: bool = False, scheduler: bool = False) -> dict[str, float]:
        """Pay now what the first command would pay (:mod:`incidentbot.web.warmup`), Slack's
        ``auth.test`` (with ``check_slack``: :meth:`check_slack`) beside the other steps.
        With ``scheduler`` (``serve``, which then starts it), the scheduler's first tick's
        setup too, beside them (:meth:`Scheduler.prepare`: the leader's connection and lock),
        so that tick does not open them while the first command is answered."""
        steps = warmup.database_steps(self.engine, self.settings, self.url)
        slack: warmup.Step = (
            ("slack check", self.check_slack)
            if check_slack
            else ("slack identity", lambda: warmup.slack_identity(self.bolt))
        )
        alongside = [slack]
        if scheduler and self.scheduler is not None:
            alongside.append(("scheduler", self.scheduler.prepare))
        return warmup.run(steps, alongside=alongside, then=self.extra_warm_up)

    def start_http(self, host: str = "127.0.0.1", port: int = 0, *, warm: bool = True) -> str:
        """Serve the web app in a background thread; return its base URL. With ``warm``,
        warm up and say ready before returning; else ``/healthz`` answers 503 until
        :meth:`warm_up` and ``ready.set()`` (``serve`` does so once everything is started)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Slack waits for small answers: without this, Nagle and delayed ACKs add ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        config = uvicorn.Config(
            self.asgi, log_level="warning", access_log=False, limit_concurrency=1000, backlog=2048
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="incidentbot-http",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        if warm:
            self.warm_up()
            self.ready.set()
        return self.url

    def start_socket_mode(self, *, timeout: float = 10.0) -> None:
        """Connect to Slack over Socket Mode; returns once the WebSocket is open.

        slack_sdk's built-in client asks ``apps.connections.open`` (with the app-level token)
        for a URL on the configured Slack API host, connects, and reconnects by itself when
        Slack asks it to or the connection drops. A refused token is a ``DomainError`` here,
        at start-up, rather than a reconnect loop in the background.
        """
        if self._socket is not None:
            raise RuntimeError("Socket Mode is already started")
        app_token = required_secret(self.settings.slack_app_token, "INCIDENTBOT_SLACK_APP_TOKEN")
        from incidentbot.slack.once import socket_mode_handler

        handler = socket_mode_handler(self.bolt, app_token)
        try:
            handler.connect()
            deadline = time.monotonic() + timeout
            while not handler.client.is_connected():
                if time.monotonic() > deadline:
                    raise DomainError("Socket Mode: the WebSocket connection did not open")
                time.sleep(0.02)
        except SlackApiError as exc:
            handler.close()
            code = exc.response.get("error", "unknown_error")
            raise DomainError(
                f"Socket Mode: apps.connections.open failed with {code} "
                "(check INCIDENTBOT_SLACK_APP_TOKEN: an app-level xapp- token with "
                "connections:write)"
            ) from None
        except BaseException:
            handler.close()
            raise
        self._socket = handler
        self.slack_state = "socket mode connected"

    def stop(self) -> None:
        """Stop taking work (Socket Mode first, then HTTP), then let the workers finish."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
        if isinstance(self.bolt, OnceApp):
            self.bolt.close()  # the answers of the last requests, so replays find them
        if self.scheduler is not None:
            self.scheduler.stop(timeout=10)
        self.pool.stop(timeout=10)
        if self.run_messages is not None:
            self.run_messages.stop()
        if self.sightings is not None:
            self.sightings.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        connections = getattr(self.chat, "connections", None)
        if connections is not None:
            connections.close()  # the kept-alive connections to Slack


def _handoff_pager(settings: Settings, pager: Pager | None) -> Pager | None:
    """The pager handoffs ask who is on call (see ``pagerduty_adapter.pager_for``)."""
    if pager is not None or settings.pagerduty_api_token is None:
        return pager
    from incidentbot.pagerduty_adapter import pager_for

    return pager_for(settings, pager)
