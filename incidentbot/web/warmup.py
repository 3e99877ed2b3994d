"""What the first command after start would otherwise pay, paid before the bot says it is ready.

A freshly started process answers its first request slower than the next ones: the ORM maps
its classes on the first query, SQLAlchemy compiles each statement the first time it runs,
every pooled database connection is opened on first use (a PostgreSQL backend process and
its authentication each), Bolt asks Slack's ``auth.test`` on its first request, and the web
stack loads its thread-pool backend on the first request it hands to a thread. On a busy
machine those first times added up to more than Slack's 3 seconds. ``serve`` runs these steps
after its HTTP server is listening and before ``/healthz`` answers 200 (it answers 503 with
``"ready": false`` meanwhile), so a load balancer or Kubernetes sends Slack's traffic only to
a replica that will answer it as fast as the second time.

Each step is best effort: one that fails is logged and the others still run (a database that
cannot be reached is reported by ``/healthz`` itself).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import configure_mappers

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.web import warmup_steps

log = logging.getLogger(__name__)

Step = tuple[str, Callable[[], None]]


def mappers() -> None:
    """Map every model class now rather than on the first query."""
    configure_mappers()


def connections(engine: Engine, count: int) -> None:
    """Open ``count`` pooled connections at once (as many as the first burst of requests and
    the workers would), then return them to the pool, open."""
    size = getattr(engine.pool, "size", lambda: count)()
    with ExitStack() as stack:
        for _ in range(max(1, min(count, size))):
            conn = stack.enter_context(engine.connect())
            conn.execute(text("SELECT 1"))
            conn.rollback()


def reads(engine: Engine) -> None:
    """The statements every command runs, compiled and their transactions begun once: a read
    snapshot, a write transaction (on SQLite the writer queue's turn), the people directory
    and the incidents table as a command reads them."""
    from incidentbot.inbound import InboundRequest
    from incidentbot.incidents.models import Incident
    from incidentbot.people.models import Person

    with db.read(engine) as s:
        s.execute(select(func.max(Incident.number))).one()
        s.execute(select(Incident).where(Incident.number == 0)).first()
        s.execute(select(Person).limit(1)).first()
    with db.transaction(engine) as s:
        db.db_now(s)
        s.get(InboundRequest, "", with_for_update=True)


def slack_identity(bolt: Any) -> None:
    """Bolt asks Slack who the bot is (``auth.test``) on its first request: ask it now."""
    from slack_bolt.middleware.authorization.single_team_authorization import (
        SingleTeamAuthorization,
    )

    for middleware in getattr(bolt, "_middleware_list", ()):
        if isinstance(middleware, SingleTeamAuthorization) and not middleware.auth_test_result:
            middleware.auth_test_result = bolt.client.auth_test()


def http_stack(base_url: str) -> None:
    """One request through the bot's own web server (``/metrics``: it runs in the thread pool
    and reads the database gauges), so the server, the framework and the thread pool have
    each served a request before Slack's first one."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
    finally:
        conn.close()


def database_steps(engine: Engine, settings: Settings, url: str | None) -> list[Step]:
    """The steps that run one after another (the database's, then the web stack's when the
    server at ``url`` listens); the Slack round trips run beside them (see :func:`run`)."""
    steps: list[Step] = [
        ("mappers", mappers),
        ("connections", lambda: connections(engine, settings.workers + 2)),
        ("reads", lambda: reads(engine)),
        ("declare", lambda: warmup_steps.declare_rehearsal(engine, settings)),
    ]
    if url is not None:
        steps.append(("http", lambda: http_stack(url)))
    return steps


def run(
    steps: Sequence[Step], *, alongside: Sequence[Step] = (), then: Sequence[Step] = ()
) -> dict[str, float]:
    """Run each step once, in order, while each of ``alongside`` runs in a thread of its own
    (a round trip to Slack waits on the network, not on the interpreter); then, once all of
    those are done, each of ``then`` in order. Returns the seconds each took (a failed one is
    logged)."""
    took: dict[str, float] = {}
    began = time.perf_counter()
    threads = [
        threading.Thread(
            target=_timed, args=(name, step, took), name=f"warm-up {name}", daemon=True
        )
        for name, step in alongside
    ]
    for thread in threads:
        thread.start()
    for name, step in steps:
        _timed(name, step, took)
    for thread in threads:
        thread.join()
    for name, step in then:
        _timed(name, step, took)
    log.info(
        "warmed up in %.0f ms (%s)",
        (time.perf_counter() - began) * 1000,
        ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in took.items()),
    )
    return took


def _timed(name: str, step: Callable[[], None], took: dict[str, float]) -> None:
    began = time.perf_counter()
    try:
        step()
    except Exception:
        log.warning("warm-up step %s failed", name, exc_info=True)
    took[name] = time.perf_counter() - began


class Readiness:
    """Whether the bot has warmed up; ``/healthz`` answers 503 until it has."""

    def __init__(self) -> None:
        self._ready = threading.Event()

    def __call__(self) -> bool:
        return self._ready.is_set()

    def set(self) -> None:
        self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)
