"""The egress policy: a runbook step cannot be turned against the host (cloud metadata,
loopback, private networks, unlisted unix sockets), neither at plan time nor at run time,
neither through a redirect nor through a DNS answer."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.ledger import PermanentError, RetryableError
from incidentbot.runbooks.actions import Action, ActionContext, Services, registry
from incidentbot.runbooks.egress import EgressPolicy, EgressRefused, EgressSettings
from tests.egress_support import LOOPBACK

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


# -- what is refused, in every spelling ----------------------------------------------------

FORBIDDEN = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local (cloud metadata)"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is unique-local (cloud metadata)"),
    ("http://169.254.10.1/", "169.254.10.1 is link-local"),
    ("http://[fe80::1]/", "fe80::1 is link-local"),
    ("http://127.0.0.1:9090/metrics", "127.0.0.1 is loopback"),
    ("http://[::1]:9090/metrics", "::1 is loopback"),
    ("http://localhost:9090/metrics", "localhost (127.0.0.1) is loopback"),
    ("http://10.1.2.3:8545/", "10.1.2.3 is private"),
    ("http://172.20.0.1:8545/", "172.20.0.1 is private"),
    ("http://192.168.1.10:8545/", "192.168.1.10 is private"),
    ("http://[fd12:3456::1]:8545/", "fd12:3456::1 is unique-local (private)"),
    ("http://100.64.0.7/", "100.64.0.7 is shared address space (CGNAT)"),
    ("http://0.0.0.0:8080/", "0.0.0.0 is unspecified (this host)"),
    ("http://[::]:8080/", ":: is unspecified (this host)"),
    (
        "http://[::ffff:169.254.169.254]/",
        "::ffff:169.254.169.254 (169.254.169.254) is link-local (cloud metadata)",
    ),
    ("http://[::ffff:7f00:1]/", "::ffff:7f00:1 (127.0.0.1) is loopback"),
    ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 (10.0.0.1) is private"),
    ("http://2852039166/", "2852039166 (169.254.169.254) is link-local (cloud metadata)"),
    ("http://0xa9fea9fe/", "0xa9fea9fe (169.254.169.254) is link-local (cloud metadata)"),
    (
        "http://0251.0376.0251.0376/",
        "0251.0376.0251.0376 (169.254.169.254) is link-local (cloud metadata)",
    ),
    ("http://127.1/", "127.1 (127.0.0.1) is loopback"),
    ("http://0x7f000001:9090/metrics", "0x7f000001 (127.0.0.1) is loopback"),
    ("http://012.1/", "012.1 (10.0.0.1) is private"),
]


@pytest.mark.parametrize(("url", "why"), FORBIDDEN)
def test_forbidden_addresses_are_refused_in_the_plan_and_at_run_time(
    url: str, why: str, no_connections: list[Any]
) -> None:
    with pytest.raises(EgressRefused) as planned:
        plan("http.request", {"url": url})
    assert str(planned.value) == f"{why}: {REFUSED}"
    with pytest.raises(EgressRefused) as ran:
        run("http.request", {"url": url})
    assert isinstance(ran.value, PermanentError)  # retrying cannot help
    assert f"{why}: {REFUSED}" in str(ran.value)
    assert no_connections == []


def test_every_action_that_connects_by_url_refuses_metadata(no_connections: list[Any]) -> None:
    meta = "http://169.254.169.254/latest/meta-data/"
    meta6 = "http://[fd00:ec2::254]/latest/meta-data/"
    inputs = {
        "rpc.head": {"url": meta},
        "rpc.compare": {"url": "https://rpc.example/", "references": [meta6]},
        "rpc.heads": {"nodes": {"a": "https://rpc.example/", "b": {"url": meta}}},
        "beacon.health": {"url": meta6},
        "snapshot.create": {"store": "/srv/snap", "node": "n1", "rpc_url": meta},
    }
    for name, data in inputs.items():
        with pytest.raises(EgressRefused, match="cloud metadata"):
            plan(name, data)
        with pytest.raises(EgressRefused, match="cloud metadata"):
            run(name, data)
    assert no_connections == []


def test_public_addresses_and_names_plan_as_before() -> None:
    assert plan("http.request", {"url": "https://8.8.8.8/"}) == "GET https://8.8.8.8/"
    assert plan("rpc.head", {"url": "https://[2606:4700::1111]/"}).startswith("read the head")
    assert plan("http.request", {"url": "https://rpc.example/v1"}) == "GET https://rpc.example/v1"


def test_allow_entries_by_address_cidr_name_and_action() -> None:
    url = "http://10.1.2.3:8545/"
    assert plan("http.request", {"url": url}, ctx(policy("10.0.0.0/8"))) == f"GET {url}"
    assert plan("http.request", {"url": url}, ctx(policy("10.1.2.3"))) == f"GET {url}"
    with pytest.raises(EgressRefused, match=re.escape("10.1.2.3 is private")):
        plan("http.request", {"url": url}, ctx(policy("10.2.0.0/16")))
    only_rpc = ctx(policy({"to": "10.0.0.0/8", "actions": ["rpc.*"]}))
    assert plan("rpc.head", {"url": url}, only_rpc).startswith("read the head of")
    with pytest.raises(EgressRefused, match=re.escape("10.1.2.3 is private")):
        plan("http.request", {"url": url}, only_rpc)
    # A name the operator trusts: whatever it resolves to.
    named = ctx(policy("*.corp.example", resolve=lambda host, port: ["10.9.9.9"]))
    assert plan("http.request", {"url": "http://rpc.corp.example/"}, named)
    # Allowing IPv4 loopback does not allow the metadata service.
    with pytest.raises(EgressRefused, match="cloud metadata"):
        plan("http.request", {"url": "http://169.254.169.254/"}, ctx(policy("127.0.0.1")))


def test_bad_allow_entries_are_refused_by_the_settings() -> None:
    for entry, words in [
        ("10.0.0.0/33", "is not a host name"),
        ("http://10.0.0.1/", "is not a host name"),
        ({"to": "10.0.0.0/8", "actions": []}, "at least 1 item"),
    ]:
        with pytest.raises(ValidationError, match=words):
            Settings(runbooks={"egress": {"allow": [entry]}})
    with pytest.raises(ValidationError, match="not an absolute socket path"):
        Settings(runbooks={"egress": {"sockets": ["run/haproxy.sock"]}})


# -- DNS: resolved once, every address checked, the checked address connected to -------------


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


def test_a_name_resolving_to_a_forbidden_address_is_refused_at_run_time(
    no_connections: list[Any],
) -> None:
    answers = {
        "rpc.example": ["169.254.169.254"],
        "beacon.example": ["fd00:ec2::254"],
        "db.example": ["10.0.0.5"],
        "mixed.example": ["93.184.216.34", "192.168.7.7"],
        "mapped.example": ["::ffff:127.0.0.1"],
    }
    egress = ctx(policy(resolve=lambda host, port: answers[host]))
    # Names are not resolved in the plan: it cannot know.
    assert plan("http.request", {"url": "http://rpc.example/"}, egress) == "GET http://rpc.example/"
    cases = [
        ("rpc.example", "rpc.example resolves to 169.254.169.254, which is link-local (cloud"),
        ("beacon.example", "beacon.example resolves to fd00:ec2::254, which is unique-local"),
        ("db.example", "db.example resolves to 10.0.0.5, which is private"),
        ("mixed.example", "mixed.example resolves to 192.168.7.7, which is private"),
        ("mapped.example", "resolves to ::ffff:7f00:1 (127.0.0.1), which is loopback"),
    ]
    for host, words in cases:
        with pytest.raises(EgressRefused) as info:
            run("http.request", {"url": f"http://{host}/latest"}, egress)
        assert words in str(info.value)
    assert no_connections == []


def test_rpc_head_refuses_rather_than_answering_ok_false() -> None:
    egress = ctx(policy(resolve=lambda host, port: ["10.0.0.5"]))
    why = "node.example resolves to 10.0.0.5, which is private"
    with pytest.raises(EgressRefused, match=re.escape(why)):
        run("rpc.head", {"url": "http://node.example:8545/"}, egress)


def test_the_checked_address_is_the_one_connected_to(served: Callable[[str], Recorder]) -> None:
    """A rebinding DNS answers an allowed address first, then the metadata address: the
    name is resolved once and the request goes to the address that was checked, with the
    original Host header."""
    server = served("127.0.0.1")
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["169.254.169.254"]

    egress = ctx(policy("127.0.0.1", resolve=rebinding))
    url = f"http://node.test:{server.port}/health"
    out = run("http.request", {"url": url}, egress)
    assert out["status"] == 200 and out["json"] == {"path": "/health"}
    assert calls == ["node.test"]
    assert server.seen == [("/health", f"node.test:{server.port}")]
    with pytest.raises(EgressRefused, match=re.escape("169.254.169.254, which is link-local")):
        run("http.request", {"url": url}, egress)  # the next answer is checked too
    assert len(server.seen) == 1


# -- redirects: every hop checked ------------------------------------------------------------


def test_a_redirect_to_a_forbidden_address_is_refused(served: Callable[[str], Recorder]) -> None:
    allowed = served("127.0.0.1")
    other = served("127.0.0.2")  # loopback too, but not allowed
    allowed.redirects = {
        "/meta": "http://169.254.169.254/latest/meta-data/iam/",
        "/other": f"{other.url}/metrics",
        "/name": f"http://other.test:{other.port}/metrics",
        "/ftp": f"ftp://127.0.0.1:{other.port}/dump",
        "/ok": "/health",
        "/loop": "/loop",
    }
    names = {"other.test": ["127.0.0.2"]}
    egress = ctx(policy("127.0.0.1", resolve=lambda host, port: names[host]))
    base = allowed.url
    cases = [
        ("/meta", "169.254.169.254 is link-local (cloud metadata)"),
        ("/other", "127.0.0.2 is loopback"),
        ("/name", "other.test resolves to 127.0.0.2, which is loopback"),
        ("/ftp", "the ftp scheme is not allowed by the egress policy (only http and https)"),
    ]
    for path, words in cases:
        with pytest.raises(EgressRefused) as info:
            run("http.request", {"url": base + path, "follow_redirects": True}, egress)
        text = str(info.value)
        assert text.startswith(f"GET {base}{path}: redirected to ") and words in text, text
    assert other.seen == []  # the forbidden server never got a request
    out = run("http.request", {"url": base + "/ok", "follow_redirects": True}, egress)
    assert out["json"] == {"path": "/health"}
    with pytest.raises(PermanentError, match="more than 5 redirects"):
        run("http.request", {"url": base + "/loop", "follow_redirects": True}, egress)
    assert [p for p, _ in allowed.seen].count("/loop") == 6
    # Not following: the redirect is explained, nothing else is asked.
    with pytest.raises(PermanentError, match="set follow_redirects: true"):
        run("http.request", {"url": base + "/meta"}, egress)


# -- unix sockets: only those listed ----------------------------------------------------------


def test_unix_sockets_must_be_listed(tmp_path: Path, no_connections: list[Any]) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    sock = str(allowed / "haproxy.sock")
    target = {"backend": "rpc", "server": "node-1", "state": "drain"}
    with pytest.raises(EgressRefused, match=re.escape(f"unix socket {sock} is not allowed")):
        plan("haproxy.set_server_state", {"socket": sock, **target})
    with pytest.raises(EgressRefused, match=re.escape("list it in runbooks.egress.sockets")):
        run("supervisor.stop", {"socket": sock, "program": "geth"})
    listed = ctx(policy(sockets=[sock]))
    assert "HAProxy runtime API at" in plan(
        "haproxy.set_server_state", {"socket": sock, **target}, listed
    )
    pattern = ctx(policy(sockets=[str(allowed / "*.sock")]))
    assert plan("supervisor.stop", {"socket": sock, "program": "geth"}, pattern)
    escape = str(allowed / ".." / "elsewhere.sock")
    with pytest.raises(EgressRefused, match=re.escape(f"unix socket {tmp_path}/elsewhere.sock")):
        plan("supervisor.stop", {"socket": escape, "program": "geth"}, pattern)
    # A symbolic link in an allowed directory to a socket elsewhere: refused when it runs.
    (allowed / "link.sock").symlink_to("/var/run/docker.sock")
    by_dir = ctx(policy(sockets=[f"{allowed}/"]))
    link = {"socket": str(allowed / "link.sock"), "program": "geth"}
    assert plan("supervisor.stop", link, by_dir)
    with pytest.raises(EgressRefused, match="is not allowed"):
        run("supervisor.stop", link, by_dir)
    # The runtime API over TCP obeys the address rules.
    with pytest.raises(EgressRefused, match=re.escape("127.0.0.1 is loopback")):
        plan("haproxy.servers", {"socket": "127.0.0.1:9999"})
    with pytest.raises(EgressRefused, match=re.escape("169.254.169.254 is link-local")):
        run("haproxy.servers", {"socket": "tcp:169.254.169.254:9999"})
    assert no_connections == []


# -- the plan a person sees, and the bot's own /metrics --------------------------------------

FETCH = """
name: fetch
description: Fetch a status page
params:
  url: {type: string}
approval: none
steps:
  - id: get
    name: Fetch it
    uses: http.request
    with: {url: "{{ params.url }}"}
"""


def test_runbook_plan_shows_the_refusal_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from incidentbot.cli import main

    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "fetch.yaml").write_text(FETCH)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    monkeypatch.setenv("INCIDENTBOT_DATA_DIR", str(tmp_path / "data"))
    code = main(["runbook", "plan", "fetch", "url=http://169.254.169.254/latest/meta-data/"])
    out, err = capsys.readouterr()
    assert code != 0
    why = f"169.254.169.254 is link-local (cloud metadata): {REFUSED}"
    assert f" 1. Fetch it — http.request: refused: {why}" in out
    assert f"step get: {why}" in err
    code = main(["runbook", "plan", "fetch", "url=http://[fd00:ec2::254]/latest/meta-data/"])
    assert code != 0 and "fd00:ec2::254 is unique-local (cloud metadata)" in capsys.readouterr().out


def test_a_user_supplied_url_cannot_read_the_bots_own_metrics(engine: Any, tmp_path: Path) -> None:
    """The bot serves /metrics on loopback; a URL param pointing there is refused in the
    plan, no run starts, and nothing of /metrics reaches Slack."""
    import httpx

    from incidentbot.runbooks.models import RunbookRun
    from tests.slack_harness import channel_of, running_bot

    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "fetch.yaml").write_text(FETCH)
    with running_bot(engine, runbooks={"dirs": [str(folder)]}) as (_bot, slack):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        assert "incidentbot_" in httpx.get(base + "/metrics").text  # it is there to be read
        assert slack.driver.slash_command("declare sev3 status page", user="alice").status == 200
        ch = channel_of(engine)
        ack = slack.driver.slash_command(f"run fetch url={base}/metrics", user="alice", channel=ch)
        text = json.dumps(ack.body)
        assert "127.0.0.1 is loopback: not allowed by the egress policy" in text, text
        from sqlmodel import Session, select

        with Session(engine) as s:
            assert s.exec(select(RunbookRun)).all() == []
        assert "incidentbot_" not in slack.transcript()


def test_lab_config_allows_loopback_only_explicitly() -> None:
    assert EgressSettings().allow == [] and EgressSettings().sockets == []
    assert Settings().runbooks.egress == EgressSettings()
    allowed = Settings(runbooks={"egress": LOOPBACK}).runbooks.egress
    assert [rule.to for rule in allowed.allow] == ["127.0.0.1"]


def test_https_keeps_the_name_for_sni_and_the_certificate(
    served: Callable[[str], Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting to the checked address does not weaken TLS: the certificate is verified
    against the name in the URL (here: valid for localhost and 127.0.0.1, not other.test)."""
    import ssl

    from incidentbot.sandbox.pagerduty.tls import sandbox_tls

    tls = sandbox_tls()
    server = served("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the operator's CA, as before
    names = {"localhost": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    egress = ctx(policy("127.0.0.1", resolve=lambda host, port: names[host]))
    out = run("http.request", {"url": f"https://localhost:{server.port}/tls"}, egress)
    assert out["json"] == {"path": "/tls"}
    assert server.seen == [("/tls", f"localhost:{server.port}")]
    mismatch = re.escape("certificate is not valid for 'other.test'")
    with pytest.raises(RetryableError, match=mismatch):
        run("http.request", {"url": f"https://other.test:{server.port}/tls"}, egress)
    assert len(server.seen) == 1
