"""Runbook actions: the registry, plugin packs found through entry points, and each built-in
action against real things (a local HTTP server, real processes, the local Slack server, a
migrated database)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Engine

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger import OutcomeUnknownError, PermanentError, RetryableError
from incidentbot.ledger.masker import masker
from incidentbot.runbooks.actions import (
    Action,
    ActionContext,
    ActionRegistry,
    IncidentInfo,
    Services,
    load_entry_points,
    registry,
)
from incidentbot.runbooks.actions.slack_post import block_id_for
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.sandbox.slack import SlackSandbox
from incidentbot.slack.chat import SlackChat
from tests.egress_support import LOCAL_POLICY

INFURA_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
BUILTINS = ["http.request", "incident.note", "shell.exec", "slack.post", "wait.sleep"]


def ctx(**kwargs: Any) -> ActionContext:
    kwargs.setdefault("run_id", 7)
    kwargs.setdefault("step_id", "step")
    # Local test servers are on loopback: allowed explicitly (see tests/egress_support.py).
    kwargs.setdefault("services", Services(egress=LOCAL_POLICY))
    return ActionContext(**kwargs)


def act(name: str) -> Action:
    action = registry.get(name)
    assert action is not None, f"{name} is not registered"
    return action


def run(name: str, data: dict[str, Any], context: ActionContext | None = None) -> dict[str, Any]:
    action = act(name)
    return action.run(action.validate(data), context or ctx())


def plan(name: str, data: dict[str, Any], context: ActionContext | None = None) -> str:
    action = act(name)
    return action.plan(action.validate(data), context or ctx())


def shell_settings(tmp_path: Path, *allow: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", runbooks=RunbookSettings(shell_allow=list(allow)))


# -- the registry ------------------------------------------------------------------------------


class Ping(Action):
    name = "test.ping"
    description = "answers pong"
    idempotent = True
    outputs: ClassVar[dict[str, str]] = {"answer": "pong"}

    def plan(self, inputs: Any, ctx: ActionContext) -> str:
        return "ping"

    def run(self, inputs: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"answer": "pong"}


class FakeHttp(Ping):
    name = "http.request"


def test_default_registry_has_the_documented_builtins() -> None:
    assert set(BUILTINS) <= set(registry.names())
    for name in BUILTINS:
        action = act(name)
        assert action.name == name
        assert action.description
        assert action.outputs, f"{name} documents no outputs"
        assert issubclass(action.Inputs, BaseModel)
        assert type(action).plan is not Action.plan
        assert type(action).run is not Action.run
    assert registry.get("no.such") is None
    assert [act(n).idempotent for n in BUILTINS] == [False, True, False, True, True]


def test_registering_a_taken_name_is_refused_unless_replacing() -> None:
    reg = ActionRegistry()
    reg.register(Ping)
    assert reg.register(Ping) is reg.get("test.ping")  # the same class again changes nothing
    clash = type("OtherPing", (Ping,), {"__module__": "acme.pack"})
    with pytest.raises(ValueError) as info:
        reg.register(clash)
    message = str(info.value)
    assert "'test.ping' is already registered" in message
    assert "tests.test_runbook_actions.Ping" in message
    assert "acme.pack.OtherPing" in message
    assert "replace=True" in message
    replaced = reg.register(clash, replace=True)
    assert reg.get("test.ping") is replaced and isinstance(replaced, clash)
    instance = Ping()
    assert reg.register(instance, replace=True) is instance
    assert reg.names() == ["test.ping"]
    assert reg.unregister("test.ping") is instance
    assert reg.names() == []


@pytest.mark.parametrize(
    ("thing", "expected"),
    [
        (object(), "is not an Action subclass or instance"),
        (type("Nameless", (Ping,), {"name": ""}), "has no name: set the class attribute `name`"),
        (type("Spaced", (Ping,), {"name": "restart node"}), "'restart node' of"),
        (type("Undotted", (Ping,), {"name": "restart"}), "use dotted words"),
        (type("BadInputs", (Ping,), {"Inputs": dict}), "Inputs must be a pydantic model"),
    ],
)
def test_things_that_are_not_actions_are_refused_with_a_reason(thing: Any, expected: str) -> None:
    with pytest.raises(TypeError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ActionRegistry().register(thing)


def test_the_registry_is_safe_to_use_from_many_threads() -> None:
    reg = ActionRegistry()
    classes = [type(f"A{i}", (Ping,), {"name": f"pack.a{i}"}) for i in range(200)]
    rivals = [type(f"R{i}", (Ping,), {"name": "pack.contested"}) for i in range(16)]
    won: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        start.wait()
        for cls in classes[k::8]:
            reg.register(cls)
            assert reg.get(cls.name) is not None
            reg.names()
        for rival in rivals[k::8]:
            try:
                reg.register(rival)
                won.append(rival.__name__)
            except ValueError:
                refused.append(rival.__name__)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg) == 201
    assert reg.names() == sorted([f"pack.a{i}" for i in range(200)] + ["pack.contested"])
    assert len(won) == 1 and len(refused) == 15
    assert type(reg.get("pack.contested")).__name__ == won[0]


# -- plugin packs through entry points ---------------------------------------------------------

PACK = """
from typing import Any, ClassVar

from incidentbot.runbooks.actions import Action, ActionContext


class Restart(Action):
    name = "lab.restart"
    description = "restart a lab node"
    outputs: ClassVar[dict[str, str]] = {"restarted": "the node"}

    def plan(self, inputs: Any, ctx: ActionContext) -> str:
        return "restart the lab node"

    def run(self, inputs: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"restarted": ctx.target}


class Drain(Restart):
    name = "lab.drain"


class Undrain(Restart):
    name = "lab.undrain"


class Probe(Restart):
    name = "lab.probe"


class Clash(Restart):
    name = "http.request"


ALL = [Drain, Undrain]
NOT_AN_ACTION = {"lab.fake": "a dict is not an action"}


def make():
    return (Probe(),)


def explode():
    raise RuntimeError("the lab is on fire")
"""

ENTRY_POINTS = """
[incidentbot.actions]
single = {pack}:Restart
many = {pack}:ALL
factory = {pack}:make
broken = {broken}:ACTIONS
notaction = {pack}:NOT_AN_ACTION
missing = {pack}:nothing_here
clash = {pack}:Clash
exploding = {pack}:explode
"""


@pytest.fixture
def installed_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real (tiny) distribution on sys.path: a module and its .dist-info, as pip leaves
    them, so importlib.metadata finds its entry points."""
    pack = f"acme_lab_{tmp_path.name.replace('-', '_')}"
    broken = f"{pack}_broken"
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{pack}.py").write_text(PACK)
    (site / f"{broken}.py").write_text("import module_that_does_not_exist  # noqa\n")
    info = site / "acme_lab_actions-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-lab-actions\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS.format(pack=pack, broken=broken))
    monkeypatch.syspath_prepend(str(site))
    yield pack
    for name in (pack, broken):
        sys.modules.pop(name, None)


def test_entry_points_add_packs_and_skip_broken_ones(
    installed_pack: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = ActionRegistry(registry.get(name) for name in BUILTINS)
    with caplog.at_level(logging.INFO, logger="incidentbot.runbooks.actions"):
        added = load_entry_points(reg)
    assert sorted(added) == ["lab.drain", "lab.probe", "lab.restart", "lab.undrain"]
    assert reg.names() == sorted(
        [*BUILTINS, "lab.drain", "lab.probe", "lab.restart", "lab.undrain"]
    )
    # The built-in keeps its name; the pack's clashing action is not taken.
    assert type(reg.get("http.request")).__module__ == "incidentbot.runbooks.actions.http_request"
    restart = reg.get("lab.restart")
    assert restart is not None
    assert restart.run(restart.validate({}), ctx(target="rpc-2")) == {"restarted": "rpc-2"}

    errors = {r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR}
    by_pack = {
        name: [m for m in errors if f"'{name}'" in m]
        for name in ("broken", "notaction", "missing", "clash", "exploding")
    }
    assert all(by_pack.values()), f"not every broken pack was reported: {errors}"
    assert "ModuleNotFoundError" in by_pack["broken"][0]
    assert "module_that_does_not_exist" in by_pack["broken"][0]
    assert "gave dict, not an Action subclass" in by_pack["notaction"][0]
    assert "AttributeError" in by_pack["missing"][0]
    assert "'http.request' is already registered" in by_pack["clash"][0]
    assert "RuntimeError: the lab is on fire" in by_pack["exploding"][0]
    assert len(errors) == 5

    # Loading again finds nothing new and refuses nothing.
    caplog.clear()
    assert load_entry_points(reg, group="incidentbot.actions") == []
    assert reg.names() == sorted(
        [*BUILTINS, "lab.drain", "lab.probe", "lab.restart", "lab.undrain"]
    )


def test_a_group_without_packs_adds_nothing(installed_pack: str) -> None:
    reg = ActionRegistry()
    assert load_entry_points(reg, group="incidentbot.no_such_group") == []
    assert reg.names() == []


def test_a_fresh_interpreter_finds_the_pack(installed_pack: str, tmp_path: Path) -> None:
    code = (
        "from incidentbot.runbooks.actions import registry, load_entry_points\n"
        "print(sorted(load_entry_points(registry)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site-packages")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lab.drain', 'lab.probe', 'lab.restart', 'lab.undrain']"
    assert "action pack 'broken'" in done.stderr


# -- http.request ------------------------------------------------------------------------------


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
        path = self.path.split("?", 1)[0]
        if path == "/rpc":
            call = json.loads(body or b"{}")
            answer = {"jsonrpc": "2.0", "id": call.get("id"), "result": "0x12a05f2"}
            self._answer(200, json.dumps(answer).encode(), "application/json")
        elif path == "/echo":
            self._answer(
                201,
                json.dumps(
                    {"got": body.decode(), "type": self.headers.get("Content-Type")}
                ).encode(),
                "application/vnd.echo+json; charset=utf-8",
            )
        elif path == "/busy":
            self._answer(503, b"upstream overloaded\n", "text/plain", Retry_After="7")
        elif path == "/limited":
            self._answer(429, b"slow down", "text/plain")
        elif path == "/big":
            self._answer(200, b"a" * (100 * 1024), "text/plain")
        elif path == "/slow":
            time.sleep(2)
            self._answer(200, b"late", "text/plain")
        elif path == "/moved":
            self._answer(302, b"", "text/plain", Location="/rpc")
        elif path == "/health":
            self._answer(200, b"OK\n", "text/plain")
        else:
            self._answer(404, b"no such node\n", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@pytest.fixture
def web() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_http_request_posts_json_and_reads_the_json_answer(web: RecordingServer) -> None:
    out = run(
        "http.request",
        {
            "method": "post",
            "url": web.url + "/rpc",
            "headers": {"X-Runbook": "rpc-check"},
            "json": {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            "timeout": "5s",
        },
    )
    assert out["status"] == 200 and out["ok"] is True
    assert out["json"] == {"jsonrpc": "2.0", "id": 1, "result": "0x12a05f2"}
    assert json.loads(out["body"]) == out["json"]
    assert isinstance(out["elapsed_ms"], int) and out["elapsed_ms"] >= 0
    [sent] = web.requests
    assert sent["method"] == "POST"
    assert sent["headers"]["X-Runbook"] == "rpc-check"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"])["method"] == "eth_blockNumber"


def test_http_request_sends_a_text_body_and_accepts_listed_statuses(web: RecordingServer) -> None:
    out = run(
        "http.request",
        {
            "method": "PUT",
            "url": web.url + "/echo",
            "headers": {"Content-Type": "text/plain"},
            "body": "drain rpc-2",
            "expect_status": [201],
        },
    )
    assert out["status"] == 201 and out["ok"] is True
    assert out["json"] == {"got": "drain rpc-2", "type": "text/plain"}  # +json is JSON too
    text = run("http.request", {"url": web.url + "/health"})
    assert text["body"] == "OK\n" and text["json"] is None
    head = run("http.request", {"method": "HEAD", "url": web.url + "/health"})
    assert head["status"] == 200 and head["body"] == ""
    gone = run("http.request", {"url": web.url + "/nothing", "expect_status": [404, 410]})
    assert gone["status"] == 404 and gone["ok"] is False and gone["body"] == "no such node\n"


def test_http_request_503_is_retried_after_the_servers_hint(web: RecordingServer) -> None:
    with pytest.raises(RetryableError) as info:
        run("http.request", {"method": "POST", "url": web.url + "/busy", "json": {}})
    assert info.value.retry_after == 7.0
    assert str(info.value) == (
        f"POST {web.url}/busy answered 503 Service Unavailable (expected a 2xx status): "
        "upstream overloaded"
    )
    with pytest.raises(RetryableError) as limited:
        run("http.request", {"url": web.url + "/limited"})
    assert "429" in str(limited.value) and limited.value.retry_after is None


def test_http_request_404_fails_for_good_without_showing_the_key(web: RecordingServer) -> None:
    url = f"{web.url}/v3/{INFURA_KEY}?apikey=k3y-Value-1&chain=1"
    with pytest.raises(PermanentError) as info:
        run("http.request", {"method": "DELETE", "url": url})
    message = str(info.value)
    assert message == (
        f"DELETE {web.url}/v3/***?apikey=***&chain=1 answered 404 Not Found "
        "(expected a 2xx status): no such node"
    )
    assert web.requests[0]["path"] == f"/v3/{INFURA_KEY}?apikey=k3y-Value-1&chain=1"


def test_http_request_masks_the_runs_secret_values_in_errors(web: RecordingServer) -> None:
    mask = masker(["node-7-password"])
    with pytest.raises(PermanentError) as info:
        run(
            "http.request",
            {"url": web.url + "/admin/node-7-password", "expect_status": [200]},
            ctx(mask=mask),
        )
    assert "node-7-password" not in str(info.value)
    assert f"GET {web.url}/admin/*** answered 404" in str(info.value)


def test_http_request_redirects_are_explained_or_followed(web: RecordingServer) -> None:
    with pytest.raises(PermanentError, match="redirects to /rpc \\(set follow_redirects: true"):
        run("http.request", {"url": web.url + "/moved"})
    out = run(
        "http.request",
        {"method": "GET", "url": web.url + "/moved", "follow_redirects": True},
    )
    assert out["status"] == 200 and out["json"]["result"] == "0x12a05f2"


def test_http_request_truncates_a_large_body(web: RecordingServer) -> None:
    out = run("http.request", {"url": web.url + "/big"})
    assert out["body"].startswith("a" * 65536)
    assert out["body"].endswith(f"… [truncated: first 65536 of {100 * 1024} bytes shown]")
    assert out["body"].count("a") == 65536 + 1  # the note's own "a" in "truncated"


def test_http_request_timeouts_and_refused_connections(web: RecordingServer) -> None:
    with pytest.raises(OutcomeUnknownError, match=r"GET http://127.0.0.1:\d+/slow: ReadTimeout"):
        run("http.request", {"url": web.url + "/slow", "timeout": 0.3})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match="ConnectError"):
        run("http.request", {"url": f"http://127.0.0.1:{port}/rpc"})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"url": "ftp://files.example/x"}, "is not an http:// or https:// URL"),
        ({"url": f"rpc.example/v3/{INFURA_KEY}"}, "'rpc.example/v3/***' is not an http://"),
        ({"url": "http://x.example", "method": "BREW"}, "unknown method 'BREW': use one of GET"),
        ({"url": "http://x.example", "json": {}, "body": "x"}, "give `json` or `body`, not both"),
        ({"url": "http://x.example", "timeout": "soon"}, "invalid duration 'soon'"),
        ({"url": "http://x.example", "timeout": 0}, "longer than 0 seconds"),
        ({"url": "http://x.example", "expect_status": [700]}, "700 is not an HTTP status"),
        ({"url": "http://x.example", "expect_status": []}, "list at least one status"),
        ({"url": "http://x.example", "verb": "GET"}, "Extra inputs are not permitted"),
    ],
)
def test_http_request_bad_inputs_say_what_is_wrong(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        act("http.request").validate(data)
    # What people are shown: each error's message (runbook checks and run errors use these).
    messages = "; ".join(err["msg"] for err in info.value.errors())
    assert expected in messages
    assert INFURA_KEY not in messages


def test_http_request_plan_names_method_url_and_body() -> None:
    data = {
        "method": "POST",
        "url": f"https://rpc.example/v3/{INFURA_KEY}",
        "json": {"jsonrpc": "2.0", "method": "eth_syncing", "id": 1},
    }
    assert plan("http.request", data) == "POST https://rpc.example/v3/*** (json body, 3 keys)"
    assert plan("http.request", {"url": "https://lb.example/health"}) == (
        "GET https://lb.example/health"
    )
    assert plan("http.request", {"url": "https://x.example/", "json": [1]}) == (
        "GET https://x.example/ (json body, 1 item)"
    )
    body = {"method": "PUT", "url": "https://x.example/drain?token=abc", "body": "rpc-2"}
    assert plan("http.request", body) == "PUT https://x.example/drain?token=*** (body, 5 bytes)"
    secret = ctx(mask=masker(["lb-admin-pass"]))
    assert plan("http.request", {"url": "https://lb.example/lb-admin-pass"}, secret) == (
        "GET https://lb.example/***"
    )


# -- shell.exec --------------------------------------------------------------------------------


def shell_ctx(settings: Settings | None, **kwargs: Any) -> ActionContext:
    return ctx(services=Services(settings=settings), **kwargs)


def test_shell_exec_runs_an_allowed_program(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, "echo", "sh")
    out = run("shell.exec", {"argv": ["echo", "geth", "restarted"]}, shell_ctx(settings))
    assert out == {"exit_code": 0, "stdout": "geth restarted\n", "stderr": ""}
    where = tmp_path / "node"
    where.mkdir()
    out = run(
        "shell.exec",
        {
            "argv": ["sh", "-c", 'pwd; echo "$NETWORK" >&2'],
            "cwd": str(where),
            "env": {"NETWORK": "sepolia"},
        },
        shell_ctx(settings),
    )
    assert out == {"exit_code": 0, "stdout": f"{where}\n", "stderr": "sepolia\n"}


def test_shell_exec_gives_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", "xoxb-bot-token-never-shown")
    settings = shell_settings(tmp_path, "env")
    out = run("shell.exec", {"argv": ["env"], "env": {"CHAIN": "1"}}, shell_ctx(settings))
    names = sorted(line.split("=", 1)[0] for line in out["stdout"].splitlines())
    assert names == ["CHAIN", "HOME", "LANG", "PATH", "TMPDIR"]


def test_shell_exec_masks_secrets_in_what_the_program_prints(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, "sh")
    script = (
        f"echo rpc=https://mainnet.infura.io/v3/{INFURA_KEY}; echo pass=admin-pa55word-9; "
        "echo 'PRIVATE_KEY=0x8174099687a26621f4e2cdd7cc03b3dacedb3fb962255b1aafd033cabe831530' >&2"
    )
    out = run(
        "shell.exec",
        {"argv": ["sh", "-c", script]},
        shell_ctx(settings, mask=masker(["admin-pa55word-9"])),
    )
    assert out["stdout"] == "rpc=https://mainnet.infura.io/v3/***\npass=***\n"
    assert out["stderr"] == "PRIVATE_KEY=***\n"


def test_shell_exec_failure_names_the_exit_code_and_last_error_line(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, "sh")
    script = (
        "echo starting; echo 'warning: low peers' >&2; echo 'fatal: datadir locked' >&2; exit 3"
    )
    with pytest.raises(PermanentError) as info:
        run("shell.exec", {"argv": ["sh", "-c", script]}, shell_ctx(settings))
    assert str(info.value) == "'sh' exited with code 3: fatal: datadir locked"
    out = run("shell.exec", {"argv": ["sh", "-c", script], "check": False}, shell_ctx(settings))
    assert out["exit_code"] == 3
    assert out["stdout"] == "starting\n"
    assert out["stderr"] == "warning: low peers\nfatal: datadir locked\n"


# The timeout, a stopped run and the sandbox's limits: tests/test_shell_sandbox.py.


def test_shell_exec_refuses_programs_that_are_not_allowed(tmp_path: Path) -> None:
    victim = tmp_path / "chaindata"
    victim.write_text("blocks")
    for settings in (shell_settings(tmp_path, "echo"), None):
        with pytest.raises(PermanentError) as info:
            run("shell.exec", {"argv": ["rm", "-f", str(victim)]}, shell_ctx(settings))
        assert str(info.value) == "'rm' is not allowed: add it to runbooks.shell_allow"
    assert victim.exists()


def test_shell_exec_allow_list_matches_names_and_paths_safely(tmp_path: Path) -> None:
    echo = shutil.which("echo")
    assert echo is not None
    # A program of an allowed name in another directory is not that program.
    impostor = tmp_path / "echo"
    marker = tmp_path / "impostor-ran"
    impostor.write_text(f"#!/bin/sh\ntouch {marker}\n")
    impostor.chmod(0o755)
    with pytest.raises(PermanentError, match="is not allowed"):
        run(
            "shell.exec",
            {"argv": [str(impostor), "hi"]},
            shell_ctx(shell_settings(tmp_path, "echo")),
        )
    assert not marker.exists()
    # An allowed name may be given as its path on PATH ...
    out = run("shell.exec", {"argv": [echo, "hi"]}, shell_ctx(shell_settings(tmp_path, "echo")))
    assert out["stdout"] == "hi\n"
    # ... and an allowed path may be given by its bare name: that very file runs.
    allowed = shell_settings(tmp_path, str(impostor))
    run("shell.exec", {"argv": ["echo", "hi"]}, shell_ctx(allowed))
    assert marker.exists()


def test_shell_exec_says_when_a_program_or_directory_is_missing(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, "geth-ctl-not-installed", "echo")
    with pytest.raises(PermanentError, match="'geth-ctl-not-installed' was not found"):
        run("shell.exec", {"argv": ["geth-ctl-not-installed"]}, shell_ctx(settings))
    with pytest.raises(PermanentError, match="working directory '/no/such/dir' does not exist"):
        run("shell.exec", {"argv": ["echo"], "cwd": "/no/such/dir"}, shell_ctx(settings))


def test_shell_exec_truncates_long_output(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, "sh")
    script = (
        "i=0; while [ $i -lt 2000 ]; do echo 'block imported number=19000000 txs=120'; "
        "i=$((i+1)); done"
    )
    out = run("shell.exec", {"argv": ["sh", "-c", script]}, shell_ctx(settings))
    line = "block imported number=19000000 txs=120\n"
    total = len(line) * 2000
    assert out["stdout"].startswith(line * 10)
    assert out["stdout"].endswith(f"… [truncated: first 16384 of {total} bytes shown]")
    assert len(out["stdout"].encode()) < 16384 + 100


def test_shell_exec_refuses_a_shell_string_and_bad_inputs() -> None:
    action = act("shell.exec")
    with pytest.raises(ValidationError) as info:
        action.validate({"argv": "systemctl restart geth"})
    assert (
        'argv must be a list of arguments, not a shell string: write ["systemctl", "restart", '
        '"geth"]' in str(info.value)
    )
    for data, expected in [
        ({"argv": []}, "at least 1 item"),
        ({"argv": [""]}, "the program to run, is empty"),
        ({"argv": ["echo"], "timeout": "forever"}, "invalid duration 'forever'"),
        ({"argv": ["echo"], "env": {"A=B": "x"}}, "not a valid environment variable"),
    ]:
        with pytest.raises(ValidationError, match=expected):
            action.validate(data)


def test_shell_exec_plan_says_what_would_run_and_what_would_be_refused(tmp_path: Path) -> None:
    allowed = shell_ctx(shell_settings(tmp_path, "systemctl"))
    assert plan("shell.exec", {"argv": ["systemctl", "restart", "geth"]}, allowed) == (
        "run: systemctl restart geth (timeout 60s)"
    )
    assert plan(
        "shell.exec", {"argv": ["sh", "-c", "sleep 5"], "timeout": "2m", "cwd": "/srv"}, allowed
    ) == (
        "run: sh -c 'sleep 5' in /srv (timeout 120s) — would be refused: 'sh' is not allowed: "
        "add it to runbooks.shell_allow"
    )
    assert plan("shell.exec", {"argv": ["rm", "-rf", "/data"]}, shell_ctx(None)).endswith(
        "would be refused: 'rm' is not allowed: add it to runbooks.shell_allow"
    )


# -- wait.sleep --------------------------------------------------------------------------------


def test_wait_sleep_waits_and_a_stop_ends_it_early() -> None:
    out = run("wait.sleep", {"seconds": 0.2})
    assert out["interrupted"] is False and out["slept"] >= 0.2
    # Stopped (the worker gave up on the attempt): it returns at once instead of sleeping on.
    context = ctx()
    context.stop_event.set()
    out = run("wait.sleep", {"seconds": "1h"}, context)
    assert out["interrupted"] is True and out["slept"] < 3600


def test_wait_sleep_plan_and_inputs() -> None:
    assert plan("wait.sleep", {"seconds": "30s"}) == "wait 30s"
    assert plan("wait.sleep", {"seconds": "1m30s"}) == "wait 90s"
    assert plan("wait.sleep", {"seconds": 2.5}) == "wait 2.5s"
    for bad, expected in [("soon", "invalid duration 'soon'"), (-1, "must not be negative")]:
        with pytest.raises(ValidationError, match=expected):
            act("wait.sleep").validate({"seconds": bad})


# -- slack.post --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack_server() -> Iterator[SlackSandbox]:
    with SlackSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def slack(slack_server: SlackSandbox) -> SlackSandbox:
    slack_server.reset()
    return slack_server


def incident_info(channel_id: str | None = None, number: int = 4, id: int = 4) -> IncidentInfo:
    return IncidentInfo(
        id=id,
        ref=f"INC-{number}",
        title="RPC p99 above 2s",
        severity="SEV2",
        status="investigating",
        channel_id=channel_id,
    )


def test_slack_post_posts_once_however_often_the_step_runs(slack: SlackSandbox) -> None:
    chat = SlackChat(slack.bot_token, base_url=slack.base_url)
    channel = slack.workspace.channel("incidents")
    context = ctx(
        services=Services(chat=chat),
        incident=incident_info(channel.id),
        idempotency_token="ledger-run-7-step-2",
        mask=masker(["lb-admin-pass"]),
    )
    text = "Failing over to rpc-3 (admin password lb-admin-pass)"
    first = run("slack.post", {"text": text}, context)
    again = run("slack.post", {"text": text}, context)  # a re-run after a crash
    assert first == again == {"channel": channel.id, "ts": first["ts"]}
    assert len(slack.requests("chat.postMessage")) == 1
    [message] = [m for m in channel.messages if m.ts == first["ts"]]
    assert message.text == "Failing over to rpc-3 (admin password ***)"
    assert message.blocks[0]["block_id"] == block_id_for("ledger-run-7-step-2")
    assert message.blocks[0]["text"]["text"] == message.text

    other = ctx(
        services=Services(chat=chat),
        incident=incident_info(channel.id),
        idempotency_token="ledger-run-7-step-3",
    )
    third = run("slack.post", {"text": text}, other)
    assert third["ts"] != first["ts"]
    assert len(slack.requests("chat.postMessage")) == 2


def test_slack_post_to_a_named_channel(slack: SlackSandbox) -> None:
    chat = SlackChat(slack.bot_token, base_url=slack.base_url)
    channel = slack.workspace.channel("incidents")
    context = ctx(services=Services(chat=chat), idempotency_token="ledger-run-8-step-1")
    out = run(
        "slack.post", {"text": "RPC latency back to normal", "channel": "#incidents"}, context
    )
    assert out["channel"] == channel.id
    assert [m.text for m in channel.messages] == ["RPC latency back to normal"]
    with pytest.raises(PermanentError, match="there is no Slack channel #nowhere"):
        run("slack.post", {"text": "x", "channel": "#nowhere"}, context)


def test_slack_post_without_slack_or_a_channel_fails_clearly(slack: SlackSandbox) -> None:
    with pytest.raises(PermanentError, match="needs Slack, which is not available here"):
        run("slack.post", {"text": "hello"}, ctx(incident=incident_info("C123")))
    chat = SlackChat(slack.bot_token, base_url=slack.base_url)
    with pytest.raises(PermanentError, match=r"slack\.post has no channel: give `channel`"):
        run("slack.post", {"text": "hello"}, ctx(services=Services(chat=chat)))
    with pytest.raises(ValidationError, match="the text is empty"):
        act("slack.post").validate({"text": "   "})
    assert slack.requests("chat.postMessage") == []


def test_slack_post_plan() -> None:
    context = ctx(incident=incident_info("C0INC4"), mask=masker(["lb-admin-pass"]))
    assert plan("slack.post", {"text": "Failing over\nto rpc-3 lb-admin-pass"}, context) == (
        "post to the incident's channel (C0INC4) in Slack: Failing over to rpc-3 ***"
    )
    assert plan("slack.post", {"text": "hi", "channel": "#ops"}) == "post to #ops in Slack: hi"


# -- incident.note -----------------------------------------------------------------------------


def declared(engine: Engine) -> IncidentInfo:
    with db.transaction(engine) as s:
        inc = svc.declare(
            s, Settings(), title="Validator missed attestations", severity="SEV2", actor="alice"
        )
        return IncidentInfo(
            id=inc.id, ref=inc.ref, title=inc.title, severity=inc.severity, status=inc.status
        )


def notes(engine: Engine, ref: str) -> list[svc.TimelineEvent]:
    with db.transaction(engine) as s:
        return [e for e in svc.timeline(s, svc.get(s, ref)) if e.kind == "note"]


def test_incident_note_is_recorded_once_per_step(engine: Engine, settings: Settings) -> None:
    info = declared(engine)
    context = ctx(
        services=Services(engine=engine, settings=settings),
        incident=info,
        requester="U024BE7LH",
        idempotency_token="ledger-run-3-step-1",
        mask=masker(["keystore-pass-77"]),
    )
    text = "Restarted lighthouse on val-1; keystore password keystore-pass-77 rotated"
    first = run("incident.note", {"text": text}, context)
    second = run("incident.note", {"text": text}, context)
    assert first == second and isinstance(first["event_id"], int)
    [note] = notes(engine, info.ref)
    assert note.id == first["event_id"]
    assert note.summary == "Restarted lighthouse on val-1; keystore password *** rotated"
    assert note.actor == "U024BE7LH"
    assert note.source_key == "runbook:ledger-run-3-step-1"

    context.idempotency_token = "ledger-run-3-step-2"
    third = run("incident.note", {"text": "second note"}, context)
    assert third["event_id"] != first["event_id"]
    assert [n.summary for n in notes(engine, info.ref)][-1] == "second note"


def test_incident_note_racing_attempts_record_one_note(engine: Engine, settings: Settings) -> None:
    info = declared(engine)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def attempt() -> None:
        context = ctx(
            services=Services(engine=engine, settings=settings),
            incident=info,
            idempotency_token="ledger-run-9-step-4",
        )
        start.wait()
        try:
            results.append(run("incident.note", {"text": "failover done"}, context))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r["event_id"] for r in results}) == 1 and len(results) == 4
    assert [n.summary for n in notes(engine, info.ref)] == ["failover done"]


def test_incident_note_needs_an_incident_and_a_database(engine: Engine, settings: Settings) -> None:
    with pytest.raises(PermanentError, match="needs an incident"):
        run(
            "incident.note", {"text": "x"}, ctx(services=Services(engine=engine, settings=settings))
        )
    with pytest.raises(PermanentError, match="needs the bot's database and settings"):
        run("incident.note", {"text": "x"}, ctx(incident=incident_info()))
    missing = incident_info(number=999, id=999)
    with pytest.raises(PermanentError, match="cannot add the note to INC-999: no incident INC-999"):
        run(
            "incident.note",
            {"text": "x"},
            ctx(services=Services(engine=engine, settings=settings), incident=missing),
        )
    with pytest.raises(ValidationError, match="the note is empty"):
        act("incident.note").validate({"text": " \n"})


# -- plans never touch the world ---------------------------------------------------------------


class RecordingChat:
    """Stands in for Slack only to prove plan() never calls it: records every attribute use."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        raise AssertionError(f"plan() used chat.{name}")


def test_no_plan_makes_a_call_out(
    web: RecordingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    checkouts: list[str] = []
    event.listen(engine, "checkout", lambda *a: checkouts.append("checkout"))
    event.listen(engine, "connect", lambda *a: checkouts.append("connect"))
    attempts: list[str] = []

    def no_connect(self: socket.socket, address: Any) -> None:
        attempts.append(f"connect {address}")
        raise AssertionError("plan() opened a connection")

    def no_popen(*args: Any, **kwargs: Any) -> None:
        attempts.append(f"popen {args}")
        raise AssertionError("plan() started a process")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connect)
    monkeypatch.setattr(subprocess, "Popen", no_popen)
    monkeypatch.setattr(os, "posix_spawn", no_popen)
    chat = RecordingChat()
    settings = shell_settings(tmp_path, "systemctl")
    context = ctx(
        services=Services(engine=engine, settings=settings, chat=chat, egress=LOCAL_POLICY),
        incident=incident_info("C0INC4"),
        idempotency_token="ledger-run-1-step-1",
        mask=masker(["s3cret-param"]),
    )
    inputs = {
        "http.request": {"method": "POST", "url": web.url + "/rpc", "json": {"id": 1}},
        "shell.exec": {"argv": ["systemctl", "restart", "geth"]},
        "wait.sleep": {"seconds": "5m"},
        "slack.post": {"text": "restarting geth s3cret-param"},
        "incident.note": {"text": "restarting geth"},
    }
    assert set(inputs) <= set(registry.names())
    lines = {name: plan(name, data, context) for name, data in inputs.items()}
    assert lines == {
        "http.request": f"POST {web.url}/rpc (json body, 1 key)",
        "shell.exec": "run: systemctl restart geth (timeout 60s)",
        "wait.sleep": "wait 300s",
        "slack.post": "post to the incident's channel (C0INC4) in Slack: restarting geth ***",
        "incident.note": "note on the INC-4 timeline: restarting geth",
    }
    assert attempts == [] and chat.calls == [] and checkouts == []
    assert web.requests == []
    engine.dispose()
