"""The node-operations runbook actions (incidentbot/runbooks/actions/web3/).

Against real components where there are some here: the runbook lab's anvil nodes, HAProxy
and supervisord (one lab for the module, started in a temporary directory; after every test
that uses it, each node is running and mining and each server ready, weight 1 and UP).
Without HAProxy or anvil installed those tests are skipped with the reason, except in CI
(``CI`` set), where they fail.

Three systems have no real instance here, and their tests say so:

- ``beacon.health`` talks to a local HTTP server replaying Beacon API responses: the bodies
  and statuses beacon nodes (Lighthouse, Prysm) give for /eth/v1/node/health and
  /eth/v1/node/syncing, per the Beacon API spec;
- ``systemd.restart`` runs fake ``systemctl`` and ``ssh`` programs put first on PATH. They
  record their arguments and print recorded ``systemctl show`` output: they are recorded
  responses, not a real systemd or SSH server;
- ``kubernetes.rollout_restart`` talks, through the real ``kubernetes`` client and a
  kubeconfig, to a local HTTP server replaying recorded API server responses (apps/v1
  objects as the API server returns them, trimmed) in sequence, and recording each request.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.infra.haproxy import HaproxyError
from incidentbot.infra.rpc import RpcError
from incidentbot.infra.supervisor import SupervisorError
from incidentbot.ledger import OutcomeUnknownError, PermanentError, RetryableError
from incidentbot.ledger.redact import redact_text
from incidentbot.runbooks.actions import Action, ActionContext, Services, registry
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.runbooks.egress import EgressPolicy, EgressSettings
from incidentbot.sandbox.lab import BACKEND, CHAIN_ID, NODES, Lab
from tests import lab_support
from tests.egress_support import LOCAL_POLICY
from tests.lab_support import answers, needs_lab, wait_for

lab, healthy_lab = lab_support.lab, lab_support.healthy_lab  # the fixtures
KEY = "9aa3d95b3bc440fa88ea12eaa4456161"  # an Infura-shaped key: must never show
ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's default accounts
ACCOUNT_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

WEB3 = {
    # name: idempotent
    "rpc.head": True,
    "rpc.compare": True,
    "rpc.heads": True,
    "beacon.health": True,
    "supervisor.restart": False,
    "supervisor.stop": True,
    "supervisor.start": True,
    "systemd.restart": False,
    "kubernetes.rollout_restart": False,
    "haproxy.set_server_state": True,
    "haproxy.set_weight": True,
    "haproxy.servers": True,
    "haproxy.route_to": True,
    "snapshot.list": True,
    "snapshot.create": True,
    "snapshot.restore": False,
}


def ctx(**kwargs: Any) -> ActionContext:
    kwargs.setdefault("run_id", 11)
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


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the lab -----------------------------------------------------------------------------------


def served_by(lab: Lab) -> str:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return httpx.post(lab.frontend_url, json=body, timeout=5).headers["X-Served-By"]


# -- registry and plan() -----------------------------------------------------------------------


def test_every_action_is_registered_and_documented() -> None:
    for name, idempotent in WEB3.items():
        action = act(name)
        assert action.description and action.outputs, name
        assert action.idempotent is idempotent, name
        assert type(action).plan is not Action.plan and type(action).run is not Action.run
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            action.validate({"no_such_input": 1})


def _plan_inputs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    url = f"https://mainnet.infura.io/v3/{KEY}"
    sock = str(tmp_path / "supervisor.sock")
    return {
        "rpc.head": {"url": url},
        "rpc.compare": {"url": url, "references": ["http://10.0.0.2:8545", "http://10.0.0.3:8545"]},
        "rpc.heads": {"nodes": {"a": url, "b": {"url": "http://10.0.0.2:8545"}}, "exclude": ["a"]},
        "beacon.health": {"url": "http://10.0.0.4:5052"},
        "supervisor.restart": {"socket": sock, "program": "geth"},
        "supervisor.stop": {"socket": f"unix://{sock}", "program": "geth"},
        "supervisor.start": {"socket": sock, "program": "nodes:geth", "wait": False},
        "systemd.restart": {
            "unit": "geth.service",
            "host": "ops@node-a",
            "ssh_options": ["-o", "BatchMode=yes", "-p", "2222"],
        },
        "kubernetes.rollout_restart": {
            "namespace": "eth-mainnet",
            "kind": "sts",
            "name": "geth",
            "kubeconfig": str(tmp_path / "kubeconfig"),
            "context": "prod",
        },
        "haproxy.set_server_state": {
            "socket": str(tmp_path / "haproxy.sock"),
            "backend": "rpc_nodes",
            "server": "node-1",
            "state": "DRAIN",
        },
        "haproxy.set_weight": {
            "socket": "127.0.0.1:9999",
            "backend": "rpc_nodes",
            "server": "node-1",
            "weight": 0,
        },
        "haproxy.servers": {"socket": str(tmp_path / "haproxy.sock")},
        "haproxy.route_to": {
            "socket": str(tmp_path / "haproxy.sock"),
            "backend": "rpc_nodes",
            "server": "node-2",
        },
        "snapshot.list": {"store": str(tmp_path / "snapshots"), "chain_id": 1, "verify": True},
        "snapshot.create": {"store": str(tmp_path / "snapshots"), "node": "node-2", "rpc_url": url},
        "snapshot.restore": {
            "store": str(tmp_path / "snapshots"),
            "snapshot": "latest",
            "chain_id": 1,
            "node": "node-2",
            "target": str(tmp_path / "state.json"),
            "rpc_url": url,
            "socket": sock,
            "program": "node-2",
        },
    }


def test_plan_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan() of every action with sockets, processes and the file system made to fail."""
    inputs = _plan_inputs(tmp_path)
    assert set(inputs) == set(WEB3)
    validated = {name: act(name).validate(data) for name, data in inputs.items()}
    redact_text("warm up: the masking word lists load once, on first use")
    touched: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def fail(*args: Any, **kwargs: Any) -> Any:
            touched.append(what)
            raise AssertionError(f"plan() touched the world: {what}")

        return fail

    lines: dict[str, str] = {}
    with monkeypatch.context() as m:
        m.setattr(socket.socket, "connect", refuse("socket.connect"))
        m.setattr(socket, "create_connection", refuse("socket.create_connection"))
        m.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
        m.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
        m.setattr(builtins, "open", refuse("open"))
        m.setattr(os, "stat", refuse("os.stat"))
        m.setattr(os, "scandir", refuse("os.scandir"))
        m.setattr(os, "listdir", refuse("os.listdir"))
        # The example nodes are on a private network: the operator allows it explicitly.
        private = EgressPolicy(
            EgressSettings(allow=["127.0.0.1", "10.0.0.0/8"], sockets=[f"{tmp_path}/"])
        )
        for name, value in validated.items():
            lines[name] = act(name).plan(value, ctx(services=Services(egress=private)))
        assert touched == []
        # The traps work: run() does what plan() must not.
        with pytest.raises(AssertionError, match="touched the world"):
            act("rpc.head").run(validated["rpc.head"], ctx())
        with pytest.raises(AssertionError, match="touched the world"):
            act("snapshot.list").run(validated["snapshot.list"], ctx())
        with pytest.raises(AssertionError, match="touched the world"):
            act("supervisor.stop").run(validated["supervisor.stop"], ctx())
    for name, line in lines.items():
        assert isinstance(line, str) and line, name
        assert KEY not in line, f"{name} shows the key: {line}"
    assert "restart geth through supervisord" in lines["supervisor.restart"]
    systemd = lines["systemd.restart"]
    assert "ssh -o BatchMode=yes -p 2222 ops@node-a systemctl restart geth.service" in systemd
    assert "would be refused: 'ssh' is not allowed" in systemd
    assert "statefulset/geth in namespace eth-mainnet" in lines["kubernetes.rollout_restart"]
    assert "set server rpc_nodes/node-1 state drain" in lines["haproxy.set_server_state"]
    assert "the newest snapshot of chain 1 and node node-2" in lines["snapshot.restore"]
    assert "read the heads of a, b and rank them" in lines["rpc.heads"]
    assert (
        "route rpc_nodes to node-2: set it ready and every other server drain"
        in (lines["haproxy.route_to"])
    )


def test_inputs_are_checked() -> None:
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("rpc.head", {"url": "ws://127.0.0.1:8546"}, "not an http:// or https:// URL"),
        ("rpc.compare", {"url": "http://a", "references": []}, "at least 1 item"),
        (
            "rpc.compare",
            {"url": "http://a", "references": ["http://b"], "quorum": 2},
            "quorum 2 is more than the 1 references",
        ),
        (
            "supervisor.restart",
            {"socket": "http://127.0.0.1:9001/RPC2", "program": "geth"},
            "unix socket",
        ),
        ("supervisor.stop", {"socket": "/run/s.sock", "program": "geth; reboot"}, "program name"),
        (
            "haproxy.set_weight",
            {"socket": "/s", "backend": "b", "server": "s", "weight": 300},
            "256",
        ),
        (
            "haproxy.set_server_state",
            {"socket": "/s", "backend": "b", "server": "s", "state": "down"},
            "'ready', 'drain' or 'maint'",
        ),
        ("haproxy.servers", {"socket": "localhost"}, "want a socket path or host:port"),
        ("kubernetes.rollout_restart", {"namespace": "eth", "kind": "pod", "name": "x"}, "pod"),
        ("kubernetes.rollout_restart", {"namespace": "Eth!", "kind": "ds", "name": "x"}, "pattern"),
        (
            "snapshot.restore",
            {
                "store": "/s",
                "snapshot": "../etc",
                "chain_id": 1,
                "target": "/t",
                "rpc_url": "http://a",
                "socket": "/s.sock",
                "program": "p",
            },
            "not a snapshot id",
        ),
    ]
    for name, data, message in bad:
        with pytest.raises(ValidationError, match=message):
            act(name).validate(data)


# -- rpc.head and rpc.compare (lab) ------------------------------------------------------------


@needs_lab
def test_rpc_head_reads_a_live_node_and_through_haproxy(lab: Lab) -> None:
    out = run("rpc.head", {"url": lab.node_url("node-1")})
    assert out["ok"] is True and out["error"] is None
    assert out["chain_id"] == CHAIN_ID and out["syncing"] is False
    assert out["peers"] is None  # anvil has no net_peerCount: null, not an error
    assert out["head"] >= 0 and out["hash"].startswith("0x") and len(out["hash"]) == 66
    with lab.rpc("node-1") as rpc:
        block = rpc.block(out["head"])
    assert block is not None and block.hash == out["hash"]
    assert out["block_time"] == block.time.isoformat().replace("+00:00", "Z")
    through = run("rpc.head", {"url": lab.frontend_url, "timeout": "3s"})
    assert through["ok"] is True and through["chain_id"] == CHAIN_ID


@needs_lab
def test_rpc_head_of_a_frozen_node_ages(lab: Lab) -> None:
    lab.fault("node-3", "freeze")
    first = run("rpc.head", {"url": lab.node_url("node-3")})
    start = lab.head("node-1")
    wait_for(lambda: lab.head("node-1") >= start + 2, "node-1 to mine two blocks")
    second = run("rpc.head", {"url": lab.node_url("node-3")})
    assert second["head"] == first["head"] and second["hash"] == first["hash"]
    assert second["age_s"] > first["age_s"]


def test_rpc_head_of_a_dead_endpoint_answers_ok_false() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v3/{KEY}"
    out = run("rpc.head", {"url": url, "timeout": 2})
    assert out["ok"] is False and out["error_code"] == "connect_failed"
    assert out["head"] is None and out["chain_id"] is None
    assert "eth_blockNumber" in out["error"] and KEY not in out["error"]


@needs_lab
def test_rpc_compare_agrees_with_itself_and_measures_lag(lab: Lab) -> None:
    node1, node2, node3 = (lab.node_url(n) for n in NODES)
    same = run("rpc.compare", {"url": node1, "references": [node1]})
    assert same["agree"] is True and same["lag"] == 0 and same["quorum"] == 1
    assert same["hashes"] == {node1: same["hash"]} and same["reference_hash"] == same["hash"]
    assert same["answered"] == 1 and same["unhealthy_references"] == []

    before = {n: lab.head(n) for n in NODES}
    lab.fault("node-2", "lag", blocks=10)  # node-1 and node-3 jump 10 blocks ahead
    out = run("rpc.compare", {"url": node2, "references": [node1, node3]})
    assert out["quorum"] == 2 and out["answered"] == 2
    assert out["reference_head"] == min(out["heads"][node1], out["heads"][node3])
    assert out["lag"] == out["reference_head"] - out["head"]
    assert out["lag"] >= min(before["node-1"], before["node-3"]) + 10 - before["node-2"] - 2
    assert out["height"] == out["head"]  # the lowest head of all
    # With quorum 1 the highest reference head counts.
    one = run("rpc.compare", {"url": node2, "references": [node1, node3], "quorum": 1})
    assert one["reference_head"] == max(one["heads"][node1], one["heads"][node3])


@needs_lab
def test_rpc_compare_sees_a_node_on_another_chain(lab: Lab) -> None:
    """The lab's nodes are independent chains: a transaction mined on node-2 only makes its
    blocks from there on differ from the others'."""
    node1, node2, node3 = (lab.node_url(n) for n in NODES)
    with lab.rpc("node-2") as rpc:
        tx = rpc.call(
            "eth_sendTransaction", [{"from": ACCOUNT_0, "to": ACCOUNT_1, "value": hex(1)}]
        )
        receipt = wait_for(
            lambda: rpc.call("eth_getTransactionReceipt", [tx]), "the transaction to be mined"
        )
    height = int(receipt["blockNumber"], 16)
    wait_for(lambda: min(lab.head(n) for n in NODES) >= height, f"every node at {height}")
    out = run("rpc.compare", {"url": node2, "references": [node1, node3], "at_height": height})
    assert out["height"] == height and out["agree"] is False
    assert out["hash"] == out["hashes"][node2] == receipt["blockHash"]
    assert out["hash"] not in (out["hashes"][node1], out["hashes"][node3])
    # By default the hashes are compared at the lowest head, which descends from it.
    later = run("rpc.compare", {"url": node2, "references": [node1, node3]})
    assert later["height"] >= height and later["agree"] is False


@needs_lab
def test_rpc_compare_with_unhealthy_references(lab: Lab) -> None:
    node1 = lab.node_url("node-1")
    dead = f"http://127.0.0.1:{closed_port()}/v3/{KEY}"
    out = run("rpc.compare", {"url": node1, "references": [node1, dead], "quorum": 1})
    assert out["answered"] == 1 and out["agree"] is True
    [unhealthy] = out["unhealthy_references"]
    assert unhealthy["url"] == redact_text(dead) and KEY not in unhealthy["url"]
    assert "eth_blockNumber" in unhealthy["error"] and KEY not in unhealthy["error"]
    assert out["heads"][redact_text(dead)] is None
    # The default quorum of two references is both: not enough answered.
    with pytest.raises(RetryableError, match="only 1 of 2 references answered, the quorum is 2"):
        run("rpc.compare", {"url": node1, "references": [node1, dead]})
    with pytest.raises(RetryableError, match="did not answer") as err:
        run("rpc.compare", {"url": dead, "references": [node1]})
    assert KEY not in str(err.value)


# -- haproxy.* (lab) ---------------------------------------------------------------------------


@needs_lab
def test_haproxy_servers_lists_the_backend(lab: Lab) -> None:
    out = run("haproxy.servers", {"socket": str(lab.paths.haproxy_sock), "backend": BACKEND})
    assert [s["server"] for s in out["servers"]] == list(NODES)
    assert [s["backup"] for s in out["servers"]] == [False, True, True]
    assert {s["check_status"] for s in out["servers"]} == {"L7OK"}
    assert out["states"] == {f"{BACKEND}/{n}": "UP" for n in NODES}
    assert (out["up"], out["down"], out["maint"], out["drain"], out["total"]) == (3, 0, 0, 0, 3)
    every = run("haproxy.servers", {"socket": f"unix:{lab.paths.haproxy_sock}"})
    assert every["servers"] == out["servers"]  # the lab has one backend


@needs_lab
def test_haproxy_set_server_state_verifies_and_steers_traffic(lab: Lab) -> None:
    sock = str(lab.paths.haproxy_sock)

    def set_state(server: str, state: str) -> dict[str, Any]:
        data = {"socket": sock, "backend": BACKEND, "server": server, "state": state}
        return run("haproxy.set_server_state", data)

    out = set_state("node-2", "drain")
    assert (out["previous_state"], out["state"], out["changed"]) == ("UP", "DRAIN", True)
    assert out["check_status"] == "L7OK"  # a drained server is still checked
    again = set_state("node-2", "drain")
    assert (again["previous_state"], again["state"], again["changed"]) == ("DRAIN", "DRAIN", False)
    assert lab.server("node-2").state == "DRAIN"

    out = set_state("node-1", "maint")
    assert (out["state"], out["check_status"]) == ("MAINT", None)
    assert served_by(lab) == "node-3"  # the primary in maintenance, node-2 draining
    out = set_state("node-1", "ready")
    assert out["previous_state"] == "MAINT" and out["state"] in ("UP", "DOWN")
    lab.wait_server("node-1", "UP")
    assert served_by(lab) == "node-1"

    with pytest.raises(HaproxyError) as err:
        set_state("node-9", "maint")
    assert err.value.code == "no_such_server" and err.value.retryable is False
    assert "no server 'node-9' in backend 'rpc_nodes' (servers: node-1, node-2, node-3)" in str(
        err.value
    )
    with pytest.raises(HaproxyError, match="no backend 'rpc_backup'"):
        run(
            "haproxy.set_server_state",
            {"socket": sock, "backend": "rpc_backup", "server": "node-1", "state": "drain"},
        )


@needs_lab
def test_haproxy_set_weight_reads_it_back(lab: Lab) -> None:
    data = {"socket": str(lab.paths.haproxy_sock), "backend": BACKEND, "server": "node-2"}
    out = run("haproxy.set_weight", {**data, "weight": 40})
    assert (out["previous_weight"], out["weight"], out["changed"]) == (1, 40, True)
    assert lab.server("node-2").weight == 40
    out = run("haproxy.set_weight", {**data, "weight": 40})
    assert out["changed"] is False
    out = run("haproxy.set_weight", {**data, "weight": 0})
    assert out["weight"] == 0 and out["state"] == "UP"
    with pytest.raises(HaproxyError, match="cannot reach the HAProxy runtime API") as err:
        run("haproxy.set_weight", {**data, "socket": str(lab.dir / "nowhere.sock"), "weight": 1})
    assert err.value.retryable is True


# -- supervisor.* (lab) ------------------------------------------------------------------------


@needs_lab
def test_supervisor_restart_stop_start(lab: Lab) -> None:
    sock = str(lab.paths.supervisor_sock)
    before = lab.supervisor.state("node-3")
    out = run("supervisor.restart", {"socket": sock, "program": "node-3"})
    assert out["pid_before"] == before.pid and out["state_before"] == "RUNNING"
    assert out["state"] == "RUNNING" and out["pid"] not in (None, before.pid)
    assert lab.supervisor.state("node-3").pid == out["pid"]
    wait_for(lambda: answers(lab, "node-3"), "node-3 to answer after its restart")

    data = {"socket": f"unix://{sock}", "program": "node-3"}
    stopped = run("supervisor.stop", data)
    assert (stopped["state"], stopped["pid"], stopped["changed"]) == ("STOPPED", None, True)
    assert stopped["pid_before"] == out["pid"]
    assert run("supervisor.stop", data)["changed"] is False
    assert not answers(lab, "node-3")
    started = run("supervisor.start", data)
    assert started["state"] == "RUNNING" and started["changed"] is True and started["pid"]
    again = run("supervisor.start", data)
    assert again["changed"] is False and again["pid"] == started["pid"]

    with pytest.raises(SupervisorError) as err:
        run("supervisor.restart", {"socket": sock, "program": "node-9"})
    assert err.value.code == "no_such_process" and err.value.retryable is False
    with pytest.raises(SupervisorError) as err:
        run("supervisor.stop", {"socket": str(lab.dir / "nowhere.sock"), "program": "node-3"})
    assert err.value.code == "connect_failed" and err.value.retryable is True


# -- snapshot.* (lab) --------------------------------------------------------------------------


@needs_lab
def test_snapshot_create_and_list(lab: Lab) -> None:
    store = str(lab.paths.snapshots)
    made = run(
        "snapshot.create", {"store": store, "node": "node-2", "rpc_url": lab.node_url("node-2")}
    )
    assert made["node"] == "node-2" and made["chain_id"] == CHAIN_ID
    assert made["id"].startswith(f"node-2-{made['height']}-")
    with lab.rpc("node-2") as rpc:
        block = rpc.block(made["height"])
    assert block is not None and block.hash == made["block_hash"]
    manifest = lab.snapshots.get(made["id"])
    assert made["checksum"] == f"sha256:{manifest.sha256}" and made["size"] == manifest.size
    assert Path(made["path"], "state.json").is_file()

    listed = run("snapshot.list", {"store": store, "verify": True})
    assert listed["latest"] == made["id"] and listed["snapshots"][0]["id"] == made["id"]
    assert listed["snapshots"][0]["verified"] is True and listed["snapshots"][0]["problem"] is None
    created = [s["created"] for s in listed["snapshots"]]
    assert created == sorted(created, reverse=True)
    assert run("snapshot.list", {"store": store, "chain_id": 1})["snapshots"] == []
    only = run("snapshot.list", {"store": store, "node": "node-2", "limit": 1})
    assert only["count"] == 1 and only["total"] >= 1
    with pytest.raises(PermanentError, match="there is no snapshot store at"):
        run("snapshot.list", {"store": str(lab.dir / "no-snapshots")})
    with pytest.raises(RpcError) as err:
        dead = f"http://127.0.0.1:{closed_port()}/"
        run("snapshot.create", {"store": store, "node": "node-2", "rpc_url": dead})
    assert err.value.code == "connect_failed"


def _restore_inputs(lab: Lab, program: str, **more: Any) -> dict[str, Any]:
    return {
        "store": str(lab.paths.snapshots),
        "chain_id": CHAIN_ID,
        "target": str(lab.state_path(program)),
        "rpc_url": lab.node_url(program),
        "socket": str(lab.paths.supervisor_sock),
        "program": program,
        "timeout": 30,
        **more,
    }


@needs_lab
def test_snapshot_restore_repairs_a_corrupted_node(lab: Lab) -> None:
    made = run(
        "snapshot.create",
        {"store": str(lab.paths.snapshots), "node": "node-2", "rpc_url": lab.node_url("node-2")},
    )
    wait_for(lambda: lab.head("node-2") > made["height"] + 1, "node-2 to move past it")
    lab.fault("node-2", "corrupt")
    wait_for(
        lambda: lab.supervisor.state("node-2").state in ("BACKOFF", "FATAL"),
        "node-2 to fail on its corrupt state",
    )
    corrupt = lab.state_path("node-2").read_bytes()

    out = run("snapshot.restore", _restore_inputs(lab, "node-2", snapshot="latest", node="node-2"))
    assert out["snapshot"] == made["id"] and out["height"] == made["height"]
    assert out["block_hash"] == made["block_hash"] and out["chain_id"] == CHAIN_ID
    assert out["state"] == "RUNNING" and out["pid"] == lab.supervisor.state("node-2").pid
    assert out["aside"] and Path(out["aside"]).read_bytes() == corrupt  # kept, not deleted
    assert Path(out["aside"]).parent == lab.state_path("node-2").parent
    with lab.rpc("node-2") as rpc:
        block = rpc.block(made["height"])
    assert block is not None and block.hash == made["block_hash"]
    wait_for(lambda: lab.head("node-2") > made["height"], "node-2 to mine after the restore")


@needs_lab
def test_snapshot_restore_refuses_before_touching_the_node(lab: Lab) -> None:
    made = run(
        "snapshot.create",
        {"store": str(lab.paths.snapshots), "node": "node-3", "rpc_url": lab.node_url("node-3")},
    )
    before = lab.supervisor.state("node-3")
    live = lab.state_path("node-3")
    siblings = sorted(p.name for p in live.parent.iterdir())

    # A chain id other than the snapshot's.
    with pytest.raises(PermanentError) as err:
        run("snapshot.restore", _restore_inputs(lab, "node-3", snapshot=made["id"], chain_id=1))
    assert f"snapshot {made['id']} is of chain {CHAIN_ID}, not 1" in str(err.value)
    assert "the node was not touched" in str(err.value)
    with pytest.raises(PermanentError, match="no snapshot of chain 1 and node node-3"):
        run(
            "snapshot.restore",
            _restore_inputs(lab, "node-3", snapshot="latest", chain_id=1, node="node-3"),
        )
    with pytest.raises(PermanentError, match="no snapshot 'node-3-0-19700101T000000Z'"):
        run(
            "snapshot.restore", _restore_inputs(lab, "node-3", snapshot="node-3-0-19700101T000000Z")
        )

    # A state file that is not the one the manifest describes.
    state = Path(made["path"], "state.json")
    state.write_bytes(state.read_bytes() + b" ")
    with pytest.raises(PermanentError) as err:
        run("snapshot.restore", _restore_inputs(lab, "node-3", snapshot=made["id"]))
    assert "sha256" in str(err.value) and "refusing to use it" in str(err.value)
    assert "the node was not touched (restore refused)" in str(err.value)
    listed = run("snapshot.list", {"store": str(lab.paths.snapshots), "verify": True})
    [tampered] = [s for s in listed["snapshots"] if s["id"] == made["id"]]
    assert tampered["verified"] is False and "sha256" in tampered["problem"]

    after = lab.supervisor.state("node-3")
    assert after.running and after.pid == before.pid
    assert sorted(p.name for p in live.parent.iterdir()) == siblings  # nothing moved aside


# -- beacon.health (recorded Beacon API responses) ---------------------------------------------

# Bodies as Lighthouse and Prysm answer them (Beacon API: slots are decimal strings).
BEACON_READY = {
    "/eth/v1/node/health": (200, None),
    "/eth/v1/node/syncing": (
        200,
        {
            "data": {
                "is_syncing": False,
                "is_optimistic": False,
                "el_offline": False,
                "head_slot": "9482311",
                "sync_distance": "0",
            }
        },
    ),
}
BEACON_SYNCING = {
    "/eth/v1/node/health": (206, None),
    "/eth/v1/node/syncing": (
        200,
        {
            "data": {
                "is_syncing": True,
                "is_optimistic": True,
                "el_offline": False,
                "head_slot": "455903",
                "sync_distance": "155461",
            }
        },
    ),
}
BEACON_EL_OFFLINE = {  # Erigon's Caplin gives sync_distance as a number
    "/eth/v1/node/health": (206, None),
    "/eth/v1/node/syncing": (
        200,
        {
            "data": {
                "head_slot": "9482290",
                "sync_distance": 21,
                "is_syncing": False,
                "el_offline": True,
                "is_optimistic": True,
            }
        },
    ),
}
BEACON_NOT_READY = {
    "/eth/v1/node/health": (503, None),
    "/eth/v1/node/syncing": (
        503,
        {"code": 503, "message": "SERVICE_UNAVAILABLE: beacon chain not yet initialized"},
    ),
}


class Replay:
    """A local HTTP server answering recorded responses and recording the requests."""

    def __init__(self, answer: Callable[[str, str, bytes], tuple[int, Any]]):
        self.requests: list[dict[str, Any]] = []
        self.answer = answer
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                replay.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                status, payload = replay.answer(self.command, self.path, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Replay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def beacon(recorded: dict[str, tuple[int, Any]]) -> Replay:
    return Replay(lambda method, path, body: recorded.get(path.split("?")[0], (404, None)))


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        pytest.param(
            BEACON_READY,
            {"status": "ready", "health_status": 200, "ready": True, "syncing": False,
             "head": 9482311, "lag": 0, "optimistic": False, "el_offline": False},
            id="ready",
        ),
        pytest.param(
            BEACON_SYNCING,
            {"status": "syncing", "health_status": 206, "ready": False, "syncing": True,
             "head": 455903, "lag": 155461, "optimistic": True, "el_offline": False},
            id="syncing",
        ),
        pytest.param(
            BEACON_EL_OFFLINE,
            {"status": "syncing", "health_status": 206, "ready": False, "syncing": False,
             "head": 9482290, "lag": 21, "optimistic": True, "el_offline": True},
            id="el-offline",
        ),
    ],
)  # fmt: skip
def test_beacon_health_from_recorded_responses(
    recorded: dict[str, tuple[int, Any]], expected: dict[str, Any]
) -> None:
    with beacon(recorded) as server:
        out = run("beacon.health", {"url": server.url})
    assert out == {"ok": True, "error": None, **expected}
    assert [r["path"] for r in server.requests] == ["/eth/v1/node/health", "/eth/v1/node/syncing"]
    assert all(r["method"] == "GET" for r in server.requests)


def test_beacon_health_not_initialised_and_down() -> None:
    with beacon(BEACON_NOT_READY) as server:
        out = run("beacon.health", {"url": server.url + "/"})
    assert (out["ok"], out["status"], out["ready"], out["health_status"]) == (
        True,
        "not_initialised",
        False,
        503,
    )
    assert out["head"] is None and out["lag"] is None
    assert "SERVICE_UNAVAILABLE: beacon chain not yet initialized" in out["error"]
    # A provider URL with a key in its path: the API lives under it, and the key never shows.
    with beacon({f"/{KEY}{p}": v for p, v in BEACON_READY.items()}) as server:
        out = run("beacon.health", {"url": f"{server.url}/{KEY}"})
    assert out["ready"] is True and out["head"] == 9482311
    # Not a Beacon API.
    with beacon({}) as server:
        out = run("beacon.health", {"url": f"{server.url}/{KEY}"})
    assert out["ok"] is False and out["health_status"] == 404
    assert "is this its URL?" in out["error"] and KEY not in out["error"]
    # Nothing listening.
    out = run("beacon.health", {"url": f"http://127.0.0.1:{closed_port()}/{KEY}", "timeout": 2})
    assert out["ok"] is False and out["health_status"] is None and KEY not in out["error"]
    assert out["error"].startswith("GET http://127.0.0.1:")


# -- systemd.restart (fake systemctl and ssh: recorded responses) ------------------------------

# `systemctl show -p ActiveState,SubState,MainPID,ExecMainStartTimestamp geth.service` as
# systemd 252 prints it (service properties first, then the unit's).
SHOW_OUTPUT = """MainPID=48213
ExecMainStartTimestamp=Tue 2024-05-14 09:12:03 UTC
ActiveState=active
SubState=running
"""


def fake_program(bin_dir: Path, name: str, record: Path, body: str) -> None:
    """A stand-in program: appends its arguments (JSON) to ``record``, then runs ``body``
    (Python, with ``args`` the argument list)."""
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        f"    f.write(json.dumps([{name!r}, *args]) + '\\n')\n"
        f"{body}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


SYSTEMCTL_OK = f"""
if args[:1] == ['show']:
    sys.stdout.write({SHOW_OUTPUT!r})
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return bin_dir, tmp_path / "argv.jsonl"


def recorded_argv(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def allowing(tmp_path: Path, *programs: str) -> ActionContext:
    """shell.exec finds programs only in the fake bin directory (``runbooks.shell_path``)."""
    runbooks = RunbookSettings(shell_allow=list(programs), shell_path=[str(tmp_path / "bin")])
    settings = Settings(data_dir=tmp_path / "data", runbooks=runbooks)
    return ctx(services=Services(settings=settings))


def test_systemd_restart_locally(tmp_path: Path, fake_bin: tuple[Path, Path]) -> None:
    bin_dir, record = fake_bin
    fake_program(bin_dir, "systemctl", record, SYSTEMCTL_OK)
    out = run("systemd.restart", {"unit": "geth.service"}, allowing(tmp_path, "systemctl"))
    assert recorded_argv(record) == [
        ["systemctl", "restart", "geth.service"],
        ["systemctl", "show", "-p", "ActiveState,SubState,MainPID,ExecMainStartTimestamp",
         "geth.service"],
    ]  # fmt: skip
    assert out == {
        "unit": "geth.service",
        "host": None,
        "active_state": "active",
        "sub_state": "running",
        "main_pid": 48213,
        "started_at": "Tue 2024-05-14 09:12:03 UTC",
        "ok": True,
        "command": "systemctl restart geth.service",
    }


def test_systemd_restart_over_ssh(tmp_path: Path, fake_bin: tuple[Path, Path]) -> None:
    bin_dir, record = fake_bin
    # The remote systemctl's answers, relayed by ssh as it relays the remote command's output.
    relay = f"""
command = args[args.index('systemctl'):]
if command[1:2] == ['show']:
    sys.stdout.write({SHOW_OUTPUT!r})
"""
    fake_program(bin_dir, "ssh", record, relay)
    data = {
        "unit": "lighthouse@mainnet.service",
        "host": "ops@10.1.2.3",
        "ssh_options": ["-o", "BatchMode=yes", "-p2222"],
    }
    out = run("systemd.restart", data, allowing(tmp_path, "ssh"))
    show = "ActiveState,SubState,MainPID,ExecMainStartTimestamp"
    assert recorded_argv(record) == [
        ["ssh", "-o", "BatchMode=yes", "-p2222", "ops@10.1.2.3", "systemctl", "restart",
         "lighthouse@mainnet.service"],
        ["ssh", "-o", "BatchMode=yes", "-p2222", "ops@10.1.2.3", "systemctl", "show", "-p", show,
         "lighthouse@mainnet.service"],
    ]  # fmt: skip
    assert out["host"] == "ops@10.1.2.3" and out["ok"] is True and out["main_pid"] == 48213
    assert out["command"].startswith("ssh -o BatchMode=yes -p2222 ops@10.1.2.3 systemctl restart")


def test_systemd_restart_failures(tmp_path: Path, fake_bin: tuple[Path, Path]) -> None:
    bin_dir, record = fake_bin
    # Not allowed: nothing runs.
    fake_program(bin_dir, "systemctl", record, SYSTEMCTL_OK)
    with pytest.raises(PermanentError, match=r"'systemctl' is not allowed: add it to runbooks"):
        run("systemd.restart", {"unit": "geth"}, allowing(tmp_path, "ssh"))
    assert not record.exists()
    # The unit fails to start: systemctl's own words (as systemd prints them).
    fake_program(
        bin_dir,
        "systemctl",
        record,
        "sys.stderr.write('Job for geth.service failed because the control process exited with "
        'error code.\\nSee "systemctl status geth.service" and "journalctl -xeu '
        "geth.service\" for details.\\n')\nsys.exit(1)",
    )
    with pytest.raises(PermanentError) as err:
        run("systemd.restart", {"unit": "geth.service"}, allowing(tmp_path, "systemctl"))
    assert "systemctl restart geth.service exited with code 1" in str(err.value)
    assert "journalctl -xeu geth.service" in str(err.value)
    # ssh could not connect: nothing ran there, so it may be retried.
    fake_program(
        bin_dir,
        "ssh",
        record,
        "sys.stderr.write('ssh: connect to host node-a port 22: Connection refused\\n')\n"
        "sys.exit(255)",
    )
    with pytest.raises(RetryableError, match=r"ssh to node-a failed .*Connection refused"):
        run("systemd.restart", {"unit": "geth", "host": "node-a"}, allowing(tmp_path, "ssh"))
    # Names and options a shell (the remote one) or ssh would read as more than a name.
    for unit in ("geth; reboot", "-H evil", "$(id).service", "geth\\x2d.service", ".hidden"):
        with pytest.raises(ValidationError, match="is not a unit name"):
            act("systemd.restart").validate({"unit": unit})
    with pytest.raises(ValidationError, match="is not an SSH destination"):
        act("systemd.restart").validate({"unit": "geth", "host": "-oProxyCommand=id"})
    for options, message in [
        (["-o", "ProxyCommand=nc %h %p"], "proxycommand is refused"),
        (["-oLocalCommand=id"], "localcommand is refused"),
        (["node-b"], "is not an option"),
        (["-R", "8080:localhost:80"], "is not allowed here"),
        (["-p"], "needs a value"),
    ]:
        with pytest.raises(ValidationError, match=message):
            act("systemd.restart").validate({"unit": "geth", "host": "a", "ssh_options": options})


# -- kubernetes.rollout_restart (recorded API server responses) --------------------------------

NAMESPACE = "eth-mainnet"


def deployment(
    generation: int,
    *,
    observed: int,
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    available: int = 2,
    progressing: str = "NewReplicaSetAvailable",
    paused: bool | None = None,
    restarted_at: str | None = None,
) -> dict[str, Any]:
    """An apps/v1 Deployment as the API server returns it (trimmed)."""
    annotations = {RESTARTED: restarted_at} if restarted_at else None
    template_meta: dict[str, Any] = {
        "creationTimestamp": None,
        "labels": {"app.kubernetes.io/name": "geth"},
    }
    if annotations:
        template_meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "geth"}},
        "template": {
            "metadata": template_meta,
            "spec": {
                "containers": [
                    {
                        "name": "geth",
                        "image": "ethereum/client-go:v1.14.8",
                        "args": ["--http", "--http.addr=0.0.0.0", "--syncmode=snap"],
                        "ports": [{"name": "rpc", "containerPort": 8545, "protocol": "TCP"}],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    }
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 300,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {},
                "schedulerName": "default-scheduler",
            },
        },
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if paused is not None:
        spec["paused"] = paused
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "geth",
            "namespace": NAMESPACE,
            "uid": "8a4f0d7e-3b1c-4d51-9a7e-2f6c1b0e9d43",
            "resourceVersion": str(48213377 + generation),
            "generation": generation,
            "creationTimestamp": "2024-03-02T10:14:51Z",
            "labels": {"app.kubernetes.io/name": "geth"},
            "annotations": {"deployment.kubernetes.io/revision": str(generation)},
        },
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "lastUpdateTime": "2024-05-14T09:11:40Z",
                    "lastTransitionTime": "2024-05-14T09:11:40Z",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "False" if progressing == "ProgressDeadlineExceeded" else "True",
                    "lastUpdateTime": "2024-05-14T09:12:03Z",
                    "lastTransitionTime": "2024-03-02T10:14:51Z",
                    "reason": progressing,
                    "message": 'ReplicaSet "geth-6d5f7c9b8d" has timed out progressing.'
                    if progressing == "ProgressDeadlineExceeded"
                    else 'ReplicaSet "geth-6d5f7c9b8d" has successfully progressed.',
                },
            ],
        },
    }


def statefulset(
    generation: int, *, observed: int, ready: int, updated: int, current: str, update: str,
    strategy: str = "RollingUpdate",
) -> dict[str, Any]:  # fmt: skip
    """An apps/v1 StatefulSet as the API server returns it (trimmed)."""
    return {
        "kind": "StatefulSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "lighthouse",
            "namespace": NAMESPACE,
            "uid": "0c1f5a3e-7d2b-4c8e-b1a9-5e6f7a8b9c0d",
            "resourceVersion": str(91822410 + generation),
            "generation": generation,
            "creationTimestamp": "2024-01-09T16:03:22Z",
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "lighthouse"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "lighthouse"}},
                "spec": {
                    "containers": [
                        {"name": "lighthouse", "image": "sigp/lighthouse:v5.2.1", "resources": {}}
                    ]
                },
            },
            "serviceName": "lighthouse",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": strategy}
            | ({"rollingUpdate": {"partition": 0}} if strategy == "RollingUpdate" else {}),
            "revisionHistoryLimit": 10,
        },
        "status": {
            "observedGeneration": observed,
            "replicas": 3,
            "readyReplicas": ready,
            "currentReplicas": 3 - updated if current != update else 3,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": 0,
            "availableReplicas": ready,
        },
    }


def daemonset(generation: int, *, observed: int, updated: int, available: int) -> dict[str, Any]:
    """An apps/v1 DaemonSet as the API server returns it (trimmed)."""
    labels = {"app.kubernetes.io/name": "ethereum-metrics-exporter"}
    return {
        "kind": "DaemonSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "ethereum-metrics-exporter",
            "namespace": NAMESPACE,
            "uid": "5d2e8f41-6a7b-4c3d-8e9f-0a1b2c3d4e5f",
            "resourceVersion": str(7712004 + generation),
            "generation": generation,
            "creationTimestamp": "2024-02-20T08:00:00Z",
            "annotations": {"deprecated.daemonset.template.generation": str(generation)},
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "exporter",
                            "image": "ethpandaops/ethereum-metrics-exporter:0.22.0",
                            "resources": {},
                        }
                    ]
                },
            },
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "revisionHistoryLimit": 10,
        },
        "status": {
            "currentNumberScheduled": 4,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 4,
            "numberReady": available,
            "observedGeneration": observed,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            **({"numberUnavailable": 4 - available} if available < 4 else {}),
        },
    }


RESTARTED = "kubectl.kubernetes.io/restartedAt"


class KubeApi(Replay):
    """Recorded API server answers: GETs of the object in sequence (the last repeats), the
    PATCH answered with ``patched``."""

    def __init__(self, path: str, gets: list[dict[str, Any]], patched: dict[str, Any] | None):
        self.path = path
        self.gets = list(gets)
        self.patched = patched
        super().__init__(self._answer)

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path.split("?")[0] != self.path:
            kind = self.path.rsplit("/", 2)[-2]
            name = path.rsplit("/", 1)[-1]
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'{kind}.apps "{name}" not found',
                "reason": "NotFound",
                "details": {"name": name, "group": "apps", "kind": kind},
                "code": 404,
            }
            return 404, status
        if method == "PATCH":
            assert self.patched is not None
            return 200, self.patched
        return 200, self.gets.pop(0) if len(self.gets) > 1 else self.gets[0]

    def kubeconfig(self, directory: Path) -> str:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "recorded", "cluster": {"server": self.url}}],
                    "contexts": [
                        {"name": "recorded", "context": {"cluster": "recorded", "user": "bot"}},
                        {"name": "other", "context": {"cluster": "recorded", "user": "bot"}},
                    ],
                    "current-context": "other",
                    "users": [{"name": "bot", "user": {"token": "recorded-test-token"}}],
                }
            )
        )
        return str(path)


DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/geth"


def test_kubernetes_rollout_restart_patches_and_follows_the_rollout(tmp_path: Path) -> None:
    stamp = "2024-05-14T09:12:03Z"
    rollout = [
        deployment(8, observed=7, restarted_at=stamp),  # not observed yet
        deployment(8, observed=8, replicas=3, updated=1, progressing="ReplicaSetUpdated"),
        deployment(8, observed=8, replicas=3, updated=2, progressing="ReplicaSetUpdated"),
        deployment(8, observed=8, replicas=2, updated=2, available=1, ready=1),
        deployment(8, observed=8),
    ]
    api = KubeApi(DEPLOYMENT_PATH, [deployment(7, observed=7), *rollout], None)
    api.patched = deployment(8, observed=7, restarted_at=stamp)
    lines: list[str] = []
    with api:
        data = {
            "namespace": NAMESPACE,
            "kind": "Deployment",
            "name": "geth",
            "kubeconfig": api.kubeconfig(tmp_path),
            "context": "recorded",
            "interval": 0.05,
        }
        out = run("kubernetes.rollout_restart", data, ctx(progress=lines.append))
    methods = [(r["method"], r["path"]) for r in api.requests]
    assert (
        methods
        == [("GET", DEPLOYMENT_PATH), ("PATCH", DEPLOYMENT_PATH)] + [("GET", DEPLOYMENT_PATH)] * 5
    )
    patch = api.requests[1]
    assert patch["headers"]["content-type"] == "application/strategic-merge-patch+json"
    assert patch["headers"]["authorization"] == "Bearer recorded-test-token"
    body = json.loads(patch["body"])
    restarted_at = body["spec"]["template"]["metadata"]["annotations"][RESTARTED]
    assert body == {"spec": {"template": {"metadata": {"annotations": {RESTARTED: restarted_at}}}}}
    assert restarted_at.endswith("Z") and "T" in restarted_at
    assert out["restarted_at"] == restarted_at
    assert (out["complete"], out["polls"], out["generation"], out["observed_generation"]) == (
        True,
        5,
        8,
        8,
    )
    assert (out["replicas"], out["updated_replicas"], out["available_replicas"]) == (2, 2, 2)
    assert out["message"] == "deployment/geth successfully rolled out"
    assert lines == [
        f"deployment/geth in namespace {NAMESPACE}: {m}"
        for m in (
            "waiting for the deployment/geth spec update to be observed",
            "1 out of 2 new replicas have been updated",
            "1 old replicas are pending termination",
            "1 of 2 updated replicas are available",
            "deployment/geth successfully rolled out",
        )
    ]


def test_kubernetes_rollout_restart_statefulset_and_no_wait(tmp_path: Path) -> None:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/lighthouse"
    old, new = "lighthouse-7b9f6c5d4", "lighthouse-5c8d9e7f6"
    gets = [
        statefulset(3, observed=3, ready=3, updated=3, current=old, update=old),
        statefulset(4, observed=4, ready=2, updated=1, current=old, update=new),
        statefulset(4, observed=4, ready=3, updated=2, current=old, update=new),
        statefulset(4, observed=4, ready=3, updated=3, current=new, update=new),
    ]
    api = KubeApi(
        path, gets, statefulset(4, observed=3, ready=3, updated=3, current=old, update=old)
    )
    with api:
        data = {
            "namespace": NAMESPACE,
            "kind": "sts",
            "name": "lighthouse",
            "kubeconfig": api.kubeconfig(tmp_path),
            "context": "recorded",
            "interval": 0.05,
        }
        out = run("kubernetes.rollout_restart", data)
        assert out["complete"] is True and out["polls"] == 3
        assert out["message"] == "statefulset/lighthouse successfully rolled out"
        # Without waiting: one read, the patch, nothing more.
        api.requests.clear()
        api.gets = [gets[0]]
        out = run("kubernetes.rollout_restart", {**data, "wait": False})
    assert [r["method"] for r in api.requests] == ["GET", "PATCH"]
    assert out["complete"] is None and out["polls"] == 0 and out["generation"] == 4


def test_kubernetes_rollout_restart_daemonset_and_a_stopped_run(tmp_path: Path) -> None:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/ethereum-metrics-exporter"
    gets = [
        daemonset(5, observed=5, updated=4, available=4),
        daemonset(6, observed=6, updated=1, available=3),
        daemonset(6, observed=6, updated=4, available=3),
        daemonset(6, observed=6, updated=4, available=4),
    ]
    api = KubeApi(path, gets, daemonset(6, observed=5, updated=4, available=4))
    lines: list[str] = []
    with api:
        data = {
            "namespace": NAMESPACE,
            "kind": "ds",
            "name": "ethereum-metrics-exporter",
            "kubeconfig": api.kubeconfig(tmp_path),
            "context": "recorded",
            "interval": 0.05,
        }
        out = run("kubernetes.rollout_restart", data, ctx(progress=lines.append))
        assert out["complete"] is True and out["polls"] == 3
        assert (out["replicas"], out["updated_replicas"], out["available_replicas"]) == (4, 4, 4)
        assert [line.split(": ", 1)[1] for line in lines] == [
            "1 out of 4 new pods have been updated",
            "3 of 4 updated pods are available",
            "daemonset/ethereum-metrics-exporter successfully rolled out",
        ]
        # A run stopped while waiting: the restart was applied, so the outcome is unknown.
        api.gets = [gets[0], gets[1]]
        stopped = ctx()
        stopped.stop_event.set()
        with pytest.raises(OutcomeUnknownError) as err:
            run("kubernetes.rollout_restart", data, stopped)
    assert "stopped while waiting for the rollout of daemonset/ethereum-metrics-exporter" in str(
        err.value
    )
    assert "1 out of 4 new pods have been updated" in str(err.value)
    assert f"the restart was applied ({RESTARTED}=" in str(err.value)


def test_kubernetes_rollout_restart_refusals(tmp_path: Path) -> None:
    base = {"namespace": NAMESPACE, "kind": "deployment", "context": "recorded", "interval": 0.05}
    # Not found: the API server's message, nothing patched.
    api = KubeApi(DEPLOYMENT_PATH, [deployment(7, observed=7)], deployment(8, observed=7))
    with api:
        data = {**base, "kubeconfig": api.kubeconfig(tmp_path)}
        with pytest.raises(PermanentError, match=r'404 deployments.apps "reth" not found'):
            run("kubernetes.rollout_restart", {**data, "name": "reth"})
        # Paused: refused before the patch.
        api.gets = [deployment(7, observed=7, paused=True)]
        with pytest.raises(PermanentError, match="is paused: resume it"):
            run("kubernetes.rollout_restart", {**data, "name": "geth"})
        # Past its progress deadline: the restart was applied, the rollout cannot finish.
        api.gets = [deployment(7, observed=7), deployment(8, observed=8, updated=1,
                    progressing="ProgressDeadlineExceeded")]  # fmt: skip
        with pytest.raises(PermanentError) as err:
            run("kubernetes.rollout_restart", {**data, "name": "geth"})
        assert "exceeded its progress deadline" in str(err.value)
        assert f"the restart was applied ({RESTARTED}=" in str(err.value)
        # Never completes within the timeout: how far it got.
        api.gets = [deployment(7, observed=7), deployment(8, observed=8, available=1, ready=1)]
        with pytest.raises(PermanentError) as err:
            run("kubernetes.rollout_restart", {**data, "name": "geth", "timeout": 0.3})
        assert "gave up waiting for the rollout of deployment/geth to complete" in str(err.value)
        assert "1 of 2 updated replicas are available" in str(err.value)
    assert [r["method"] for r in api.requests].count("PATCH") == 2
    # OnDelete cannot be followed: refused before the patch when asked to wait.
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/lighthouse"
    sts = statefulset(
        3, observed=3, ready=3, updated=3, current="a", update="a", strategy="OnDelete"
    )
    with KubeApi(path, [sts], sts) as api:
        data = {**base, "kind": "statefulset", "name": "lighthouse"}
        with pytest.raises(PermanentError, match=r"updates OnDelete.*set wait: false"):
            run("kubernetes.rollout_restart", {**data, "kubeconfig": api.kubeconfig(tmp_path)})
    assert [r["method"] for r in api.requests] == ["GET"]
    # A kubeconfig that is not there; an API server that is not there.
    with pytest.raises(PermanentError, match="cannot use"):
        run(
            "kubernetes.rollout_restart",
            {**base, "name": "geth", "kubeconfig": str(tmp_path / "none")},
        )
    down = KubeApi(DEPLOYMENT_PATH, [deployment(7, observed=7)], None)
    config = down.kubeconfig(tmp_path)
    down.server.server_close()  # its port now refuses connections
    with pytest.raises(RetryableError, match="deployment/geth in namespace eth-mainnet"):
        run("kubernetes.rollout_restart", {**base, "name": "geth", "kubeconfig": config})
