"""The egress policy where people meet it: unix sockets, TLS to the checked address, the
plan the CLI shows, and a Slack run that must not read the bot's own /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from incidentbot.config import Settings
from incidentbot.ledger import RetryableError
from incidentbot.runbooks.egress import EgressRefused, EgressSettings
from tests import egress_support
from tests.egress_support import LOOPBACK, REFUSED, Recorder, ctx, plan, policy, run

no_connections = egress_support.no_connections
served = egress_support.served

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


# What HAProxy's runtime API answers to `show stat`, cut to the columns read.
STAT = (
    b"# pxname,svname,status,weight,check_status,addr,bck,lastchg,\n"
    b"rpc_nodes,node-1,UP,1,L7OK,127.0.0.1:8545,0,12,\n\n"
)


def test_the_runtime_api_over_tcp_connects_to_the_checked_address() -> None:
    """A runtime API named by host:port: the name is resolved once through the policy and the
    command goes to the checked address (lb.test is known to no DNS, only to the policy)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(STAT)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    names = {"lb.test": ["127.0.0.1"], "meta.test": ["169.254.169.254"]}
    egress = ctx(policy("127.0.0.1", resolve=lambda host, port: names[host]))
    try:
        out = run("haproxy.servers", {"socket": f"lb.test:{port}"}, egress)
        assert [(r["backend"], r["server"], r["state"]) for r in out["servers"]] == [
            ("rpc_nodes", "node-1", "UP")
        ]
        thread.join(timeout=10)
        assert got == [b"show stat\n"]
    finally:
        listener.close()
    with pytest.raises(EgressRefused, match=re.escape("resolves to 169.254.169.254, which is")):
        run("haproxy.servers", {"socket": f"meta.test:{port}"}, egress)
