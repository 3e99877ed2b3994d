"""The egress configuration of tests whose steps connect to local servers, and what the
egress tests share.

The test servers (HTTP servers, the lab's nodes and HAProxy) listen on loopback, and the
lab's runtime API and supervisord on unix sockets under the temporary directory: the egress
policy refuses all of them unless the configuration allows them, so these tests say so.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from incidentbot.runbooks.actions import Action, ActionContext, Services, registry
from incidentbot.runbooks.egress import EgressPolicy, EgressSettings

# `runbooks.egress` for settings: loopback (IPv4) allowed for every action.
LOOPBACK: dict[str, list[str]] = {"allow": ["127.0.0.1"]}
# The policy for actions run directly: loopback, and unix sockets under the temporary directory.
LOCAL_POLICY = EgressPolicy(
    EgressSettings(allow=["127.0.0.1"], sockets=[tempfile.gettempdir().rstrip("/") + "/"])
)
REFUSED = "not allowed by the egress policy (allow it in runbooks.egress.allow)"


def policy(*allow: Any, sockets: list[str] | None = None, resolve: Any = None) -> EgressPolicy:
    settings = EgressSettings(allow=list(allow), sockets=sockets or [])
    return EgressPolicy(settings) if resolve is None else EgressPolicy(settings, resolve)


def ctx(egress: EgressPolicy | None = None) -> ActionContext:
    """A step's context; without ``egress``, the default policy (nothing configured)."""
    return ActionContext(run_id=5, step_id="step", services=Services(egress=egress))


def act(name: str) -> Action:
    action = registry.get(name)
    assert action is not None
    return action


def plan(name: str, data: dict[str, Any], context: ActionContext | None = None) -> str:
    action = act(name)
    return action.plan(action.validate(data), context or ctx())


def run(name: str, data: dict[str, Any], context: ActionContext | None = None) -> dict[str, Any]:
    action = act(name)
    return action.run(action.validate(data), context or ctx())


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection attempt fails the test (and is recorded)."""
    tried: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        tried.append(args)
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tried


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.seen: list[tuple[str, str]] = []  # (path, Host header)
        self.redirects: dict[str, str] = {}

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        target = self.server.redirects.get(self.path)
        body = b"" if target else json.dumps({"path": self.path}).encode()
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(host: str = "127.0.0.1") -> Recorder:
    server = Recorder(host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def served() -> Iterator[Callable[[str], Recorder]]:
    started: list[Recorder] = []

    def start(host: str = "127.0.0.1") -> Recorder:
        started.append(_serve(host))
        return started[-1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()
