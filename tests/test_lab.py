"""The runbook lab, for real: three anvil nodes and HAProxy under supervisord, driven through
the production clients in incidentbot.infra (JSON-RPC, HAProxy runtime API, supervisord
XML-RPC, snapshot store).

One lab serves the module; every test leaves it as it found it (all nodes running and mining,
every HAProxy server ready and UP), which the autouse fixture checks and repairs. Needs
``haproxy`` (Debian) and anvil (``npm ci``; scripts/test installs both): without them the
module is skipped with the reason, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from incidentbot.cli import main
from incidentbot.infra.haproxy import HaproxyError
from incidentbot.infra.rpc import RpcError
from incidentbot.infra.snapshots import ChecksumMismatch, sha256_file
from incidentbot.infra.supervisor import SupervisorError
from incidentbot.sandbox.lab import BACKEND, CHAIN_ID, NODES, Lab, LabError
from tests import lab_support
from tests.lab_support import answers, needs_lab, rpc_post, wait_for

pytestmark = needs_lab
lab, healthy_lab = lab_support.lab, lab_support.healthy_lab  # the fixtures
CLI = [sys.executable, "-m", "incidentbot.cli"]  # a process of its own


def test_up_status_down_from_separate_processes(tmp_path: Path) -> None:
    """`lab up` returns with the lab running; `lab status` and `lab down` in other processes
    find it from its directory; afterwards nothing of it is left in the process table."""
    directory = tmp_path / "cli-lab"
    assert main(["lab", "up", "--dir", str(directory)]) == 0
    try:
        lab = Lab(directory)
        running = lab.processes()
        assert sorted(p.kind for p in running) == [
            "anvil",
            "anvil",
            "anvil",
            "haproxy",
            "supervisord",
        ]
        out = subprocess.run(
            [*CLI, "lab", "status", "--json", "--dir", str(directory)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        status = json.loads(out)
        assert status["running"] is True
        assert [n["name"] for n in status["nodes"]] == list(NODES)
        for node in status["nodes"]:
            assert node["state"] == "RUNNING" and node["chain_id"] == CHAIN_ID
            assert node["head"] >= 0 and node["pid"] in {p.pid for p in running}
        assert [(s["server"], s["state"]) for s in status["servers"]] == [(n, "UP") for n in NODES]
        assert [s["backup"] for s in status["servers"]] == [False, True, True]
        # A second lab in the same directory is refused.
        with pytest.raises(LabError, match="already running"):
            lab.up()
        down = subprocess.run(
            [*CLI, "lab", "down", "--dir", str(directory)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert "Stopped 5 processes" in down.stdout
    finally:
        Lab(directory).down()
    assert lab.processes() == []
    assert [p.pid for p in running if _alive(p.pid)] == []
    assert not lab.is_running()
    assert not (directory / "supervisor.sock").exists()
    # The nodes' state stays for the next `lab up`.
    assert all((directory / "nodes" / n / "state.json").is_file() for n in NODES)


def _alive(pid: int) -> bool:
    """Running (an exited process waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_requests_through_haproxy_reach_the_primary(lab: Lab) -> None:
    response = rpc_post(lab.frontend_url, "eth_chainId")
    assert response.status_code == 200
    assert int(response.json()["result"], 16) == CHAIN_ID
    assert response.headers["X-Served-By"] == "node-1"
    with lab.rpc() as frontend, lab.rpc("node-1") as node:
        latest = frontend.block("latest")
        assert latest is not None
        assert node.block(latest.number) == latest  # the same node's chain
        assert frontend.syncing().syncing is False
        assert frontend.client_version().startswith("anvil")
        assert frontend.block(10**12) is None


def test_rpc_client_errors_from_a_real_node(lab: Lab) -> None:
    with lab.rpc("node-2") as rpc, pytest.raises(RpcError) as err:
        rpc.peer_count()  # anvil has no peers and no net_peerCount
    assert (err.value.code, err.value.rpc_code, err.value.retryable) == (
        "rpc_-32601",
        -32601,
        False,
    )
    assert err.value.method == "net_peerCount" and str(lab.port("node-2")) in err.value.url


def test_stopped_primary_is_marked_down_and_backups_serve(lab: Lab) -> None:
    before = lab.supervisor.state("node-1")
    lab.fault("node-1", "stop")
    assert lab.supervisor.state("node-1").state == "STOPPED"
    row = lab.wait_server("node-1", "DOWN")
    assert row.check_status == "L4CON"
    # Both views of HAProxy agree.
    states = {r.server: r.state for r in lab.haproxy.server_states(BACKEND)}
    assert states == {"node-1": "DOWN", "node-2": "UP", "node-3": "UP"}
    for _ in range(3):
        response = rpc_post(lab.frontend_url, "eth_blockNumber")
        assert response.status_code == 200 and "result" in response.json()
        assert response.headers["X-Served-By"] in ("node-2", "node-3")
    lab.fault("node-1", "start")
    after = lab.supervisor.state("node-1")
    assert after.running and after.pid != before.pid
    assert lab.wait_server("node-1", "UP").check_status == "L7OK"
    assert rpc_post(lab.frontend_url, "eth_blockNumber").headers["X-Served-By"] == "node-1"


def test_frozen_node_stops_while_the_others_advance(lab: Lab) -> None:
    lab.fault("node-3", "freeze")
    frozen = lab.head("node-3")
    start = {n: lab.head(n) for n in ("node-1", "node-2")}
    wait_for(lambda: lab.head("node-1") >= start["node-1"] + 2, "node-1 to mine two blocks")
    assert lab.head("node-3") == frozen
    assert lab.head("node-2") > start["node-2"]
    # Frozen is not down: HAProxy's check still passes.
    assert lab.server("node-3").state == "UP"
    lab.fault("node-3", "unfreeze")
    wait_for(lambda: lab.head("node-3") > frozen, "node-3 to mine again")


def test_lagging_node_falls_behind(lab: Lab) -> None:
    before = {n: lab.head(n) for n in NODES}
    lab.fault("node-2", "lag", blocks=10)
    after = {n: lab.head(n) for n in NODES}
    assert after["node-1"] >= before["node-1"] + 10
    assert after["node-3"] >= before["node-3"] + 10
    gap = after["node-1"] - after["node-2"]
    assert gap >= before["node-1"] - before["node-2"] + 9
    # It keeps producing blocks, just slower: the gap grows.
    wait_for(lambda: lab.head("node-1") - lab.head("node-2") > gap, "the gap to grow")
    lagging = lab.head("node-2")
    wait_for(lambda: lab.head("node-2") > lagging, "node-2 to still mine")


def test_server_states_through_the_runtime_api(lab: Lab) -> None:
    api = lab.haproxy
    row = api.set_state(BACKEND, "node-2", "drain")
    assert (row.state, row.check_status) == ("DRAIN", "L7OK")  # checks go on while draining
    row = api.set_state(BACKEND, "node-3", "maint")
    assert (row.state, row.check_status) == ("MAINT", None)
    assert api.set_weight(BACKEND, "node-2", 40).weight == 40
    states = {r.server: (r.state, r.weight) for r in api.server_states(BACKEND)}
    assert states == {"node-1": ("UP", 1), "node-2": ("DRAIN", 40), "node-3": ("MAINT", 1)}
    # The primary in maintenance: the remaining backup serves.
    api.set_state(BACKEND, "node-2", "ready")
    api.set_state(BACKEND, "node-1", "maint")
    assert rpc_post(lab.frontend_url, "eth_blockNumber").headers["X-Served-By"] == "node-2"
    api.set_state(BACKEND, "node-1", "ready")
    lab.wait_server("node-1", "UP")
    assert rpc_post(lab.frontend_url, "eth_blockNumber").headers["X-Served-By"] == "node-1"
    with pytest.raises(HaproxyError) as err:
        api.set_state(BACKEND, "node-9", "drain")
    assert err.value.code == "no_such_server"
    assert "node-1, node-2, node-3" in str(err.value)
    with pytest.raises(HaproxyError) as err:
        api.server("rpc_backup", "node-1")
    assert err.value.code == "no_such_backend" and BACKEND in str(err.value)


def test_supervisor_restart_gives_a_new_process(lab: Lab) -> None:
    before = lab.supervisor.state("node-3")
    assert before.running and before.pid is not None
    after = lab.supervisor.restart("node-3")
    assert after.running and after.pid not in (None, before.pid)
    wait_for(lambda: answers(lab, "node-3"), "node-3 to answer after its restart")
    # Stopping twice and starting twice are not errors.
    assert lab.supervisor.stop("node-3").state == "STOPPED"
    assert lab.supervisor.stop("node-3").state == "STOPPED"
    started = lab.supervisor.start("node-3")
    assert lab.supervisor.start("node-3").pid == started.pid
    with pytest.raises(SupervisorError) as err:
        lab.supervisor.state("node-9")
    assert err.value.code == "no_such_process"


def test_snapshot_corrupt_restore(lab: Lab) -> None:
    manifest = lab.snapshot("node-2")
    with lab.rpc("node-2") as rpc:
        block = rpc.block(manifest.height)
    assert block is not None and block.hash == manifest.block_hash
    assert (manifest.node, manifest.chain_id) == ("node-2", CHAIN_ID)
    state_file = lab.snapshots.state_path(manifest.id)
    assert manifest.sha256 == hashlib.sha256(state_file.read_bytes()).hexdigest()
    assert lab.snapshots.list()[0] == manifest
    wait_for(lambda: lab.head("node-2") > manifest.height + 1, "node-2 to move past it")

    lab.fault("node-2", "corrupt")
    wait_for(
        lambda: lab.supervisor.state("node-2").state in ("BACKOFF", "FATAL"),
        "node-2 to fail on its corrupt state",
    )
    assert not answers(lab, "node-2")
    lab.wait_server("node-2", "DOWN")
    corrupt = lab.state_path("node-2").read_bytes()

    result = lab.restore("node-2", manifest.id)
    assert result.block.number == manifest.height
    assert result.block.hash == manifest.block_hash
    with lab.rpc("node-2") as rpc:
        again = rpc.block(manifest.height)
    assert again is not None and again.hash == manifest.block_hash
    assert lab.supervisor.state("node-2").running
    assert result.aside is not None and result.aside.read_bytes() == corrupt
    # And it mines on from there.
    wait_for(lambda: lab.head("node-2") > manifest.height, "node-2 to mine after the restore")


def test_checksum_mismatch_is_refused_before_the_node_is_touched(lab: Lab) -> None:
    assert main(["lab", "snapshot", "create", "node-3", "--dir", str(lab.dir)]) == 0
    manifest = lab.snapshots.list()[0]
    assert manifest.node == "node-3"
    snapshot_state = lab.snapshots.state_path(manifest.id)
    snapshot_state.write_bytes(snapshot_state.read_bytes() + b" ")
    before = lab.supervisor.state("node-3")
    live_state = lab.state_path("node-3")
    siblings = sorted(p.name for p in live_state.parent.iterdir())
    with pytest.raises(ChecksumMismatch):
        lab.restore("node-3", manifest.id)
    after = lab.supervisor.state("node-3")
    assert after.running and after.pid == before.pid
    assert sorted(p.name for p in live_state.parent.iterdir()) == siblings  # nothing moved
    assert sha256_file(snapshot_state) != manifest.sha256
    # The command line says the same, in one line.
    code = main(["lab", "snapshot", "restore", "node-3", manifest.id, "--dir", str(lab.dir)])
    assert code == 1
    assert lab.supervisor.state("node-3").pid == before.pid


def test_reset_starts_the_node_on_a_new_chain(lab: Lab) -> None:
    with lab.rpc("node-1") as rpc:
        genesis = rpc.block(0)
    old_head = wait_for(lambda: (h := lab.head("node-1")) >= 3 and h, "a few blocks on node-1")
    lab.fault("node-1", "reset")
    assert lab.head("node-1") < old_head
    with lab.rpc("node-1") as rpc:
        new_genesis = rpc.block(0)
    # A new genesis block, made when the node started again.
    assert genesis is not None and new_genesis is not None
    assert new_genesis.hash != genesis.hash and new_genesis.timestamp > genesis.timestamp
    kept = list(lab.state_path("node-1").parent.glob("state.json.reset-*"))
    assert len(kept) == 1


def test_cli_errors_are_one_line(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "fault", "node-9", "stop", "--dir", str(lab.dir)]) == 1
    assert main(["lab", "fault", "node-1", "explode", "--dir", str(lab.dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: no node 'node-9' in the lab (nodes: node-1, node-2, node-3)",
        "error: unknown fault 'explode'; choose one of: "
        "stop, start, freeze, unfreeze, lag, corrupt, reset",
    ]
    assert main(["lab", "status", "--dir", str(lab.dir / "nowhere")]) == 1
    assert "no lab in" in capsys.readouterr().err


def test_runbook_vars_point_at_this_lab(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    found = lab.runbook_vars()
    assert Path(found["lb"]["socket"]).is_socket() and Path(found["supervisor"]).is_socket()
    assert rpc_post(found["lb"]["frontend"], "eth_chainId").json()["result"] == hex(31337)
    for node, spec in found["nodes"].items():
        assert rpc_post(spec["url"], "eth_blockNumber").status_code == 200, node
        assert lab.server(spec["server"]).backend == found["lb"]["backend"]
    assert found["references"] == [found["nodes"][n]["url"] for n in found["nodes"]]
    assert main(["lab", "vars", "--dir", str(lab.dir)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"runbooks": {"vars": found, "egress": lab.runbook_egress()}}
    # Loopback and the sockets are allowed explicitly: nothing allows them by default.
    assert printed["runbooks"]["egress"] == {
        "allow": ["127.0.0.1"],
        "sockets": [found["lb"]["socket"], found["supervisor"]],
    }
