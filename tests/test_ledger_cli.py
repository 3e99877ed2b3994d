"""``incidentbot runs list|show|cancel|decide`` as a user runs them."""

from __future__ import annotations

from incidentbot import db, ledger
from incidentbot.incidents import service as incidents
from tests.ledger_harness import wait_status


def rows(out: str) -> list[list[str]]:
    """The body rows of a Rich table, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def _start(engine, key, steps, target, incident_id=None) -> int:
    with db.transaction(engine) as s:
        return ledger.start_run(s, kind="restart-node", key=key, steps=steps, target=target,
                                actor="slack:U1", incident_id=incident_id).id  # fmt: skip


def test_list_and_show_runs(cli, engine, settings):
    assert cli("runs", "list") == (0, "No runs.\n", "")
    with db.transaction(engine) as s:
        inc_id = incidents.declare(s, settings, title="rpc-2 down", severity="SEV1", actor="a").id
    rpc = "https://mainnet.example.com/v3/0123456789abcdef0123456789?apikey=k3y"
    gate = _start(engine, "gate", target="rpc-2", incident_id=inc_id, steps=[
        {"name": "check sync", "action": "ledger.noop",
         "input": {"rpc_url": rpc, "password": "hunter2"}},
        {"name": "approve restart", "action": "ledger.approval",
         "park": {"timeout": 3600, "prompt": "Restart geth on rpc-2?"}},
        {"name": "restart geth", "action": "ledger.noop"}])  # fmt: skip
    done = _start(engine, "done", target="rpc-3", steps=[{"name": "one", "action": "ledger.noop"}])
    worker = ledger.Worker(engine, name="cli-test", lease=5)
    try:
        while worker.run_once():
            pass
    finally:
        worker.close()
    wait_status(engine, gate, "parked")

    code, out, _ = cli("runs", "list")
    assert code == 0
    listed = rows(out)
    assert [r[:6] for r in listed] == [
        [str(done), "restart-node", "succeeded", "rpc-3", "-", "1/1 done"],
        [str(gate), "restart-node", "parked", "rpc-2", "INC-1", "2/3 approve restart"],
    ]

    code, out, _ = cli("runs", "list", "--status", "parked")
    assert code == 0 and "rpc-2" in out and "rpc-3" not in out
    code, out, _ = cli("runs", "list", "--active", "--incident", "INC-1")
    assert code == 0 and "rpc-2" in out and "rpc-3" not in out

    code, out, _ = cli("runs", "show", str(gate))
    assert code == 0
    assert f"Run {gate} restart-node: parked" in out
    # An unknown Slack id is shown without the prefix buttons store.
    assert "Incident:   INC-1" in out and "Started by: U1" in out
    assert "Waiting for a decision on step 2 'approve restart'" in out
    assert "Restart geth on rpc-2?" in out
    steps = rows(out)
    assert [r[:6] for r in steps] == [
        ["1", "check sync", "ledger.noop", "succeeded", "1", "yes"],
        ["2", "approve restart", "ledger.approval", "pending", "0", "yes"],
        ["3", "restart geth", "ledger.noop", "pending", "0", "yes"],
    ]
    assert steps[1][-1].startswith("decision due by")
    assert "hunter2" not in out and "0123456789abcdef" not in out and "k3y" not in out
    assert '"password": "***"' in out

    code, out, _ = cli("runs", "decide", str(gate), "approved", "--step", "2", "--as", "cli:bob")
    assert code == 0 and "step 2 'approve restart' approved by cli:bob" in out
    code, _, err = cli("runs", "decide", str(gate), "rejected", "--as", "cli:carol")
    assert code == 1 and "ignored" in err and "already decided: approved by cli:bob" in err
    code, out, _ = cli("runs", "show", str(done))
    assert code == 0 and "Incident:   -" in out and "Target:     rpc-3" in out


def test_cancel_from_the_command_line(cli, engine):
    rid = _start(engine, "c", target="rpc-5", steps=[{"name": "one", "action": "ledger.noop"}])
    code, out, _ = cli("runs", "cancel", str(rid), "wrong", "node", "--as", "cli:alice")
    assert code == 0 and "cancelled" in out and "lock on 'rpc-5' released" in out
    code, out, _ = cli("runs", "show", str(rid))
    assert "Error:      cancelled by cli:alice: wrong node" in out
    code, _, err = cli("runs", "cancel", str(rid))
    assert code == 1 and err.strip() == f"error: run {rid} already cancelled: nothing to cancel"


def test_refusals_are_one_line(cli):
    assert cli("runs", "show", "99") == (1, "", "error: no run 99\n")
    code, _, err = cli("runs", "list", "--status", "bogus")
    assert code == 1 and "unknown status 'bogus'" in err
    code, _, err = cli("runs", "decide", "99", "approved")
    assert code == 1 and err == "error: no run 99\n"
    code, _, err = cli("worker", "--import", "no_such_module_xyz")
    assert code == 1 and "--import no_such_module_xyz: cannot import it" in err
