"""The egress policy: a step cannot be turned against the host (cloud metadata, loopback,
private networks), neither at plan time nor at run time, neither through a redirect nor
through a DNS answer. Unix sockets, TLS and the doors (CLI, Slack): test_runbook_egress_doors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.ledger import PermanentError
from incidentbot.runbooks.egress import EgressRefused
from tests import egress_support
from tests.egress_support import REFUSED, Recorder, ctx, plan, policy, run

no_connections = egress_support.no_connections
served = egress_support.served

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
