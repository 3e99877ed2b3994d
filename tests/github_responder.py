"""A local HTTP server that answers ``POST /repos/{owner}/{repo}/issues`` as GitHub does.

It checks what GitHub checks (the bearer token, a JSON body with a title, labels as strings)
and what GitHub asks clients to send (the API version header, the ``Accept`` media type), and
answers with GitHub-shaped JSON: 201 and the issue, 401 ``Bad credentials``, 404 ``Not
Found``, 422 ``Validation Failed`` with its ``errors``. ``fail_next`` makes the next answers
something else (a 5xx, a 422, a slow answer) to test how failures are reported. ``hold``
keeps every ordinary answer waiting until the test opens the gate, so a test orders
concurrent exports by what it sees arrive rather than by how long GitHub seems to take.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest/issues/issues#create-an-issue"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Gate:
    """Requests wait here until the test opens it; the test can wait for them to arrive."""

    def __init__(self, *, limit: float = 60.0) -> None:
        self._open = threading.Event()
        self._arrived = threading.Condition()
        self.waiting = 0
        self.limit = limit  # a test that never opens the gate fails instead of hanging

    def pass_through(self) -> None:
        with self._arrived:
            self.waiting += 1
            self._arrived.notify_all()
        self._open.wait(self.limit)

    def wait_for_arrivals(self, count: int) -> bool:
        """Whether ``count`` requests reached the gate (``False`` after ``limit`` seconds)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.waiting >= count, self.limit)

    def open(self) -> None:
        self._open.set()


@dataclass
class Fault:
    status: int
    body: Any
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class GitHubResponder:
    def __init__(self, *, token: str, repo: str):
        self.token = token
        self.repo = repo
        self.requests: list[Received] = []
        self.issues: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.delay = 0.0  # seconds before every ordinary answer
        self.gate: Gate | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GitHubResponder:
        self._thread.start()
        return self

    def hold(self) -> Gate:
        """From now on, ordinary answers wait at a gate until the test opens it."""
        self.gate = Gate()
        return self.gate

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.open()  # nothing left waiting on a test that is over
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, status: int, body: Any = None, *, delay: float = 0.0, **headers: str):
        with self._lock:
            self.faults.append(Fault(status, body, delay, headers))

    # -- what GitHub would answer --------------------------------------------------------------

    def answer(self, received: Received) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(received)
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            time.sleep(fault.delay)
            return fault.status, fault.body, fault.headers
        if self.gate is not None:
            self.gate.pass_through()
        time.sleep(self.delay)
        auth = received.headers.get("authorization", "")
        if auth != f"Bearer {self.token}":
            return (
                401,
                {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"},
                {},
            )
        owner_repo = received.path.removeprefix("/repos/").removesuffix("/issues")
        if received.method != "POST" or not received.path.endswith("/issues"):
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}
        if owner_repo != self.repo:
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}
        if received.headers.get("x-github-api-version") != API_VERSION:
            version = received.headers.get("x-github-api-version")
            message = f"Unsupported 'X-GitHub-Api-Version': {version}"
            return 400, {"message": message, "documentation_url": DOCS, "status": "400"}, {}
        errors = _validate(received.body)
        if errors:
            return 422, {"message": "Validation Failed", "errors": errors, "status": "422"}, {}
        with self._lock:
            number = len(self.issues) + 1
            issue = _issue(self.url, self.repo, number, received.body)
            self.issues.append(issue)
        return 201, issue, {"Location": issue["url"]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                received = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                status, answer, headers = responder.answer(received)
                data = b"" if answer is None else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            do_POST = _serve
            do_GET = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _validate(body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"resource": "Issue", "code": "invalid", "field": "body"}]
    errors = []
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        errors.append({"resource": "Issue", "code": "missing_field", "field": "title"})
    elif len(title) > 256:
        errors.append(
            {"resource": "Issue", "code": "custom", "field": "title",
             "message": "title is too long (maximum is 256 characters)"}
        )  # fmt: skip
    if "body" in body and not isinstance(body["body"], str | None):
        errors.append({"resource": "Issue", "code": "invalid", "field": "body"})
    labels = body.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        errors.append({"resource": "Issue", "code": "invalid", "field": "labels"})
    return errors


def _issue(base: str, repo: str, number: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 1_000_000 + number,
        "node_id": f"I_kwDO{number:08d}",
        "url": f"{base}/repos/{repo}/issues/{number}",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "number": number,
        "state": "open",
        "title": body["title"],
        "body": body.get("body"),
        "labels": [{"id": i + 1, "name": name, "default": False} for i, name in
                   enumerate(body.get("labels", []))],
        "user": {"login": "incidentbot", "type": "Bot"},
        "assignees": [],
        "comments": 0,
        "created_at": "2026-03-10T12:00:00Z",
        "updated_at": "2026-03-10T12:00:00Z",
        "closed_at": None,
    }  # fmt: skip


@contextmanager
def github_responder(*, token: str, repo: str) -> Iterator[GitHubResponder]:
    responder = GitHubResponder(token=token, repo=repo).start()
    try:
        yield responder
    finally:
        responder.stop()
