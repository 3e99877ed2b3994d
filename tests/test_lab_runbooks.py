"""The shipped runbooks (runbooks/*.yaml) on the real lab: anvil nodes under supervisord behind
HAProxy. Each run goes through the engine as from Slack or the CLI: planned, started, approved
by the incident's commander, worked by ledger workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.infra.rpc import RpcClient
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import approvals, planning, runtime
from incidentbot.runbooks import view as views
from incidentbot.runbooks.actions import registry
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.lab import BACKEND, Lab
from tests.lab_support import (  # noqa: F401 - fixtures
    healthy_lab,
    lab,
    rpc_post,
    start_runbook,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("healthy_lab")


@pytest.fixture
def bot(lab: Lab, sqlite_template: Path, tmp_path: Path):  # noqa: F811 - the lab fixture
    """A database with INC-1 (commander bob) and settings pointing the runbooks at the lab."""
    path = tmp_path / "incidentbot.db"
    path.write_bytes(sqlite_template.read_bytes())
    engine = db.make_engine(f"sqlite:///{path}")
    settings = Settings(runbooks={"dirs": [str(REPO / "runbooks")], **lab.runbook_settings()})
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC", severity="SEV1", actor="alice", commander="bob")
    runtime.install(engine, settings)
    yield engine, settings
    engine.dispose()


def run_runbook(bot, name: str, **params) -> views.RunView:
    """Plan, start (as alice), approve (as bob, the commander) and work one run to its end."""
    engine, settings = bot
    rid = start_runbook(engine, settings, name, params)
    pool = WorkerPool(engine, threads=2, poll=0.05, only_run=rid).start()
    try:

        def state() -> views.RunView:
            with db.transaction(engine) as s:
                return views.load(s, rid)

        wait_for(lambda: state().status == "awaiting_approval", what=f"{name} to ask")
        assert approvals.decide(engine, settings, rid, "bob", "approved").accepted
        return wait_for(lambda: (v := state()).ended and v, what=f"{name} to end", timeout=120)
    finally:
        pool.stop(timeout=10)


def served_by(lab: Lab) -> tuple[str, int]:  # noqa: F811
    response = rpc_post(lab.frontend_url, "eth_blockNumber")
    return response.headers["X-Served-By"], int(response.json()["result"], 16)


def timeline(bot) -> list[tuple[str, str]]:
    engine, _ = bot
    with db.transaction(engine) as s:
        return [(e.kind, e.summary) for e in svc.timeline(s, svc.get(s, "INC-1"))]


def outputs(run: views.RunView, step: str) -> dict:
    return next(s.output for s in run.steps if s.id == step)


# -- failover-rpc-provider ---------------------------------------------------------------------


def test_a_frozen_primary_fails_over_to_a_backup(lab: Lab, bot) -> None:  # noqa: F811
    assert served_by(lab)[0] == "node-1"
    lab.fault("node-1", "freeze")
    frozen_at = lab.head("node-1")
    # HAProxy's own check still passes: a frozen node answers eth_blockNumber
    wait_for(lambda: lab.head("node-2") > frozen_at + 3, what="the backups to pull ahead")
    assert served_by(lab)[0] == "node-1" and lab.server("node-1").state == "UP"

    run = run_runbook(bot, "failover-rpc-provider", max_lag=3)
    assert run.status == "succeeded", run.error
    best = outputs(run, "heads")["best"]
    assert best in ("node-2", "node-3")
    # requests through the load balancer now reach the backup, on its chain and head
    node, head = served_by(lab)
    assert node == best and head >= lab.head(best) - 1
    assert lab.server("node-1").state == "DRAIN"
    heads_before = outputs(run, "heads")["nodes"]
    assert heads_before["node-1"]["healthy"] is False
    assert "blocks behind" in heads_before["node-1"]["why"]
    notes = [summary for kind, summary in timeline(bot) if kind == "note"]
    assert any(n.startswith("Failed over from node-1") and f"to {best}" in n for n in notes)
    kinds = [kind for kind, _ in timeline(bot)]
    assert kinds.count("runbook.step_succeeded") == 8 and "runbook.succeeded" in kinds
    # Each step says what it did in a sentence; the JSON stays in the outputs.
    said = {s.id: s.detail for s in run.steps}
    others = sorted({"node-1", "node-2", "node-3"} - {best})
    assert said["move"] == f"Traffic moved to {best}; {others[0]} and {others[1]} drained"
    assert said["before"] == "3 servers: 3 UP"
    assert said["heads"].startswith("2 of 3 nodes healthy; best is ")
    assert said["primary_unhealthy"] == said["backup_available"] == "The check passed"
    assert said["verify"].startswith("The node is level with the references") or said[
        "verify"
    ].startswith("The node is 1 block")
    assert said["note"] == "Wrote a note on the incident timeline"
    assert not any("{" in d for d in said.values()), said
    assert outputs(run, "move")["states"][best] == "UP"


def test_a_healthy_primary_is_left_alone(lab: Lab, bot) -> None:  # noqa: F811
    run = run_runbook(bot, "failover-rpc-provider")
    assert run.status == "failed"
    assert "node-1 is healthy" in run.error and "nothing to fail over" in run.error
    assert served_by(lab)[0] == "node-1"
    assert {lab.server(n).state for n in ("node-1", "node-2", "node-3")} == {"UP"}


def test_no_healthy_backup_means_no_failover(lab: Lab, bot) -> None:  # noqa: F811
    for node in ("node-1", "node-2", "node-3"):
        lab.fault(node, "freeze")
    lab.fault("node-3", "stop")
    wait_for(lambda: lab.server("node-3").state == "DOWN", what="node-3 down")
    # The runbook judges node-2 by its newest block's age against the clock (max_age 2s): run it
    # once that block is older than that (with a second's margin: timestamps are whole seconds).
    with RpcClient(lab.node_url("node-2")) as rpc:
        newest = rpc.block("latest")
    assert newest is not None
    wait_for(lambda: time.time() - newest.timestamp > 3, what="node-2's newest block to age")
    run = run_runbook(bot, "failover-rpc-provider", max_age="2s")
    assert run.status == "failed"
    assert "no backup is healthy" in run.error
    assert "node-3 (does not answer" in run.error and "node-2 (its newest block is" in run.error
    assert "node-1" not in run.error.split("no backup is healthy")[1]  # not a backup
    assert served_by(lab)[0] == "node-1"
    assert lab.server("node-2").state == "UP"  # nothing was moved


# -- restart-node ------------------------------------------------------------------------------


def test_a_stopped_node_is_restarted_and_back_in_the_pool(lab: Lab, bot) -> None:  # noqa: F811
    lab.fault("node-2", "stop")
    wait_for(lambda: lab.server("node-2").state == "DOWN", what="HAProxy to see node-2 down")
    run = run_runbook(bot, "restart-node", node="node-2")
    assert run.status == "succeeded", run.error
    assert lab.server("node-2").state == "UP"
    with RpcClient(lab.node_url("node-2")) as rpc:
        assert rpc.block_number() > 0
    restart = outputs(run, "restart")
    assert restart["state_before"] in ("STOPPED", "EXITED") and restart["state"] == "RUNNING"
    assert any(
        kind == "note" and summary.startswith("Restarted node-2") for kind, summary in timeline(bot)
    )


def test_a_healthy_node_is_not_restarted(lab: Lab, bot) -> None:  # noqa: F811
    pid = lab.supervisor.state("node-3").pid
    run = run_runbook(bot, "restart-node", node="node-3")
    assert run.status == "failed" and "node-3 looks healthy" in run.error
    assert lab.supervisor.state("node-3").pid == pid
    assert lab.server("node-3").state == "UP"


def test_the_last_healthy_backend_is_not_restarted(lab: Lab, bot) -> None:  # noqa: F811
    for node in ("node-2", "node-3"):
        lab.haproxy.set_state(BACKEND, node, "maint")
    lab.fault("node-1", "freeze")
    frozen_at = lab.head("node-1")
    wait_for(lambda: lab.head("node-2") > frozen_at + 2, what="node-1 to fall behind")
    pid = lab.supervisor.state("node-1").pid
    run = run_runbook(bot, "restart-node", node="node-1", max_lag=1)
    assert run.status == "failed"
    assert "node-1 is the last healthy backend" in run.error
    assert lab.supervisor.state("node-1").pid == pid and lab.server("node-1").state == "UP"


# -- restore-snapshot --------------------------------------------------------------------------


def test_a_corrupt_node_is_restored_to_the_snapshot_block(lab: Lab, bot) -> None:  # noqa: F811
    snapshot = lab.snapshot("node-3")
    lab.fault("node-3", "corrupt")
    wait_for(lambda: lab.server("node-3").state == "DOWN", what="HAProxy to see node-3 down")
    run = run_runbook(bot, "restore-snapshot", node="node-3")
    assert run.status == "succeeded", run.error
    restored = outputs(run, "restore")
    assert restored["snapshot"] == snapshot.id
    with RpcClient(lab.node_url("node-3")) as rpc:
        block = rpc.block(snapshot.height)
        assert block is not None and block.hash == snapshot.block_hash
    assert Path(restored["aside"]).exists()  # the old data is kept for rollback
    assert lab.server("node-3").state == "UP"


def test_a_snapshot_that_fails_its_checksum_is_refused(lab: Lab, bot) -> None:  # noqa: F811
    snapshot = lab.snapshot("node-2")
    state = lab.snapshots.state_path(snapshot.id)
    state.write_bytes(state.read_bytes().replace(b"0", b"1", 1))
    pid = lab.supervisor.state("node-2").pid
    run = run_runbook(bot, "restore-snapshot", node="node-2", snapshot=snapshot.id)
    assert run.status == "failed"
    assert "refusing to use it; the node was not touched" in run.error
    assert run.error.endswith(
        "; ran the clean-up steps: Is it healthy now?, Put it back, "
        "Verify the load balancer sees it up"
    )
    assert lab.supervisor.state("node-2").pid == pid  # the node was not touched
    assert lab.server("node-2").state == "UP"  # and it is back in the pool
    assert [s.status for s in run.steps if s.id == "restore"] == ["failed"]


def test_failover_from_slack_with_approval_every_step_on_the_timeline(
    lab: Lab,  # noqa: F811
    database_url: str,
) -> None:
    from tests.slack_harness import channel_of, running_bot
    from tests.slack_harness import wait_for as wait_slack
    from tests.test_runbook_e2e import reply, run_messages, runbook_run, with_button

    engine = db.make_engine(database_url)
    settings = {"dirs": [str(REPO / "runbooks")], **lab.runbook_settings()}
    try:
        with running_bot(engine, runbooks=settings) as (_bot, slack):
            reply(slack.driver.slash_command("declare sev1 RPC head stuck", user="alice"))
            ch = channel_of(engine)
            bob = slack.workspace.user("bob").id
            reply(slack.driver.slash_command(f"assign commander <@{bob}>", channel=ch))
            lab.fault("node-1", "freeze")
            frozen_at = lab.head("node-1")
            wait_for(lambda: lab.head("node-2") > frozen_at + 3, what="node-1 to fall behind")
            text = "run failover-rpc-provider max_lag=3"
            body = reply(slack.driver.slash_command(text, user="alice", channel=ch))
            assert "waits for approval by the incident commander" in body["text"], body
            rid = wait_slack(lambda: runbook_run(engine), what="the run").run_id
            msgs = wait_slack(
                lambda: with_button(slack, ch, rid, "runbook_approve"), what="Approve"
            )
            assert f"target `lb/{BACKEND}`" in json.dumps(msgs[0].blocks)
            slack.driver.block_action(
                "runbook_approve", user="bob", channel=ch, message_ts=msgs[0].ts
            )

            def finished():
                found = run_messages(slack, ch, rid)
                return found if found and "succeeded" in found[0].text else None

            final = wait_slack(finished, what="the run to succeed", timeout=90)
            assert len(final) == 1 and final[0].ts == msgs[0].ts
            # The message says what each step did, in words; the JSON is behind the run page.
            best = served_by(lab)[0]
            shown = "\n".join(b.get("text", {}).get("text", "") for b in final[0].blocks)
            assert f"— Traffic moved to {best}; " in shown, shown
            assert "The check passed" in shown and '{"' not in shown and "{&quot;" not in shown
            assert served_by(lab)[0] in ("node-2", "node-3")
            with db.transaction(engine) as s:
                events = svc.timeline(s, svc.get(s, "INC-1"))
            done = [e.data.get("step") for e in events if e.kind == "runbook.step_succeeded"]
            assert done == [
                "before", "heads", "primary_unhealthy", "backup_available", "move", "verify",
                "after", "note",
            ]  # fmt: skip
            started = [e.data.get("step") for e in events if e.kind == "runbook.step_started"]
            assert started == done
            kinds = [e.kind for e in events]
            assert "runbook.approval" in kinds and kinds[-1] in ("runbook.succeeded", "note")
    finally:
        engine.dispose()


def test_a_node_that_cannot_come_back_is_left_drained_and_the_run_says_so(
    lab: Lab,  # noqa: F811
    bot,
) -> None:
    lab.fault("node-2", "corrupt")  # its state no longer loads: every start fails
    wait_for(lambda: lab.server("node-2").state == "DOWN", what="HAProxy to see node-2 down")
    try:
        run = run_runbook(bot, "restart-node", node="node-2")
        assert run.status == "failed"
        assert run.error.endswith(
            "; ran the clean-up steps: Is it healthy now?, Otherwise say so, and page"
        )
        admin = {row.server: row.state for row in lab.haproxy.server_states(BACKEND)}
        assert admin["node-2"] == "DRAIN"  # not put back: it is not healthy
        notes = [summary for kind, summary in timeline(bot) if kind == "note"]
        assert any(
            "node-2 is left drained in HAProxy backend rpc_nodes: does not answer" in n
            for n in notes
        )
        pages = [s.output for s in run.steps if s.id.endswith("_page") and s.status == "done"]
        assert pages and pages[0]["paged"] is False  # no PagerDuty here: said, not failed
        assert pages[0]["reason"] == "paging is not configured in this bot"
    finally:
        lab.fault("node-2", "reset")  # a fresh chain, so the next test finds it healthy


def test_restore_skips_a_newest_snapshot_that_fails_its_checksum(lab: Lab, bot) -> None:  # noqa: F811
    good = lab.snapshot("node-3")
    wait_for(lambda: lab.head("node-3") > good.height, what="a newer block")
    bad = lab.snapshot("node-3")
    state = lab.snapshots.state_path(bad.id)
    state.write_bytes(state.read_bytes().replace(b"0", b"1", 1))
    run = run_runbook(bot, "restore-snapshot", node="node-3")
    assert run.status == "succeeded", run.error
    assert outputs(run, "pick")["latest"] == good.id
    assert outputs(run, "restore")["snapshot"] == good.id
    with RpcClient(lab.node_url("node-3")) as rpc:
        block = rpc.block(good.height)
        assert block is not None and block.hash == good.block_hash


def test_failover_locks_the_load_balancer(lab: Lab, bot) -> None:  # noqa: F811
    _engine, settings = bot
    runbook = load_dirs(settings.runbooks.dirs, registry).get("failover-rpc-provider")
    plan = planning.plan(runbook, {}, variables=settings.runbooks.vars)
    assert plan.target == f"lb/{BACKEND}"
    assert "Target (locked while it runs): lb/rpc_nodes" in planning.format_plan(plan)
