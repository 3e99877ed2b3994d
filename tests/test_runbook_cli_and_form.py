"""Runbooks outside Slack (plan, run with live progress, approve, resume) and the params form
Slack opens when ``/incident run`` gets no params."""

from __future__ import annotations

import json
import re

import pytest

from incidentbot import db, ledger
from tests.egress_support import LOOPBACK
from tests.ledger_harness import EffectServer
from tests.slack_harness import channel_of, running_bot, wait_for
from tests.test_runbook_e2e import reply, runbook_run, status, write_runbooks


@pytest.fixture
def effects(monkeypatch):
    # The server is on loopback: the CLI's settings allow it explicitly.
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__EGRESS", json.dumps(LOOPBACK))
    srv = EffectServer().start()
    yield srv
    srv.stop()


def test_plan_run_and_progress_from_the_cli(cli, tmp_path, effects):
    write_runbooks(tmp_path, approval="none")  # ./runbooks, the default directory
    code, out, err = cli("runbook", "validate")
    assert code == 0 and "1 runbook OK" in out + err
    code, out, _ = cli("runbook", "plan", "restart-node", "node=rpc-1", f"url={effects.url}")
    assert code == 0, out
    assert "Plan (nothing was run):" in out and f"POST {effects.url}" in out
    assert effects.requests() == {}
    code, out, err = cli("runbook", "plan", "restart-node", "node=bad name")
    assert code == 2 and "node: 'bad name' does not match the pattern" in err
    assert "url: " in err and "params:" in err

    assert cli("incident", "declare", "RPC", "down", "--sev", "SEV2")[0] == 0
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-1", f"url={effects.url}", "-i", "INC-1"
    )
    assert code == 0, out + err
    assert re.search(r"Run \d+: restart-node for INC-1", out)
    assert "✓ Drain the node: done" in out and "✓ note: done" in out
    assert re.search(r"Run \d+ succeeded in", out)
    assert effects.applied() == {"drain-rpc-1": 1}
    code, out, _ = cli("timeline", "INC-1")
    assert "runbook.succeeded" in out and "drained rpc-1 with HTTP 200" in out


def test_approve_from_the_cli_and_refusals(cli, tmp_path, effects, engine):
    write_runbooks(tmp_path, approval="commander")
    cli("incident", "declare", "RPC", "down", "--commander", "bob")
    code, out, err = cli(
        "runbook",
        "run",
        "restart-node",
        "node=rpc-2",
        f"url={effects.url}",
        "-i",
        "INC-1",
        "--detach",
    )
    assert code == 0, err
    rid = int(re.search(r"Run (\d+)", out).group(1))
    code, _, err = cli("runbook", "approve", str(rid), "--as", "alice")
    assert code == 1 and "someone else has to approve it" in err
    code, _, err = cli("runbook", "approve", str(rid), "--as", "carol")
    assert code == 1 and "Only the incident commander (bob) may approve" in err
    wait_for(lambda: status(engine, rid) in ("pending", "parked"), what="the run")
    code, out, err = cli("runbook", "resume", str(rid), "--as", "bob")
    assert code == 1 and "only a run that needs attention can be resumed" in err
    # no worker runs here, so the approval step has not parked yet
    worker = ledger.Worker(engine, name="t", lease=5)
    try:
        worker.run_once()  # posts nothing (no channel), parks at the approval
        assert status(engine, rid) == "parked"
        code, out, err = cli("runbook", "approve", str(rid), "--as", "bob")
        assert code == 0 and "bob approved runbook restart-node" in out
        code, _, err = cli("runbook", "approve", str(rid), "--as", "bob")
        assert code == 1 and "already approved by bob" in err
        worker.run_once()
    finally:
        worker.close()
    assert status(engine, rid) == "succeeded"
    assert effects.applied() == {"drain-rpc-2": 1}


def test_no_params_opens_a_form_built_from_the_param_types(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path, approval="none")
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (
        _bot,
        slack,
    ):
        reply(slack.driver.slash_command("declare sev2 RPC slow", user="alice"))
        ch = channel_of(engine)
        body = reply(slack.driver.slash_command("run restart-node", user="alice", channel=ch))
        assert body["text"] == "Opening the form for restart-node…"
        view = wait_for(
            lambda: [v for v in slack.workspace.views.values() if v.is_open], what="the form"
        )[0]
        blocks = {b.get("block_id"): b for b in view.data["blocks"]}
        assert {"param_node", "param_url", "param_api_key"} <= set(blocks)
        assert blocks["param_api_key"]["optional"] is True
        assert "secret" in blocks["param_api_key"]["hint"]["text"]
        bad = slack.driver.view_submission(
            view.id, {"param_node": "db 1", "param_url": effects.url}
        )
        errors = reply(bad)["errors"]
        assert "does not match the pattern" in errors["param_node"]
        assert runbook_run(engine) is None
        good = slack.driver.view_submission(
            view.id, {"param_node": "rpc-7", "param_url": effects.url}
        )
        assert good.status == 200 and not reply(good).get("errors")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        wait_for(lambda: status(engine, rid) == "succeeded", what="the run")
        assert effects.applied() == {"drain-rpc-7": 1}
        # The confirmation follows the form's answer (it is not sent while Slack waits).
        wait_for(
            lambda: [
                e for e in slack.ephemeral("alice") if e.text.startswith("Started restart-node")
            ],
            what="the run's confirmation",
        )
        with db.transaction(engine) as s:
            assert ledger.get_run(s, rid).created_by == slack.workspace.user("alice").id


def test_vars_from_the_settings_tell_runbooks_where_things_are(cli, tmp_path, monkeypatch):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "probe.yaml").write_text(
        "name: probe\n"
        "params:\n"
        "  node: {type: enum, values: [node-1, node-2]}\n"
        "steps:\n"
        "  - id: head\n"
        "    uses: http.request\n"
        "    with: {url: '{{ vars.nodes[params.node].url }}/health'}\n"
    )
    nodes = {"node-1": {"url": "http://10.0.0.1:8545"}, "node-2": {"url": "http://10.0.0.2:8545"}}
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__VARS", json.dumps({"nodes": nodes}))
    # The nodes are on a private network, which the operator allows explicitly.
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__EGRESS", json.dumps({"allow": ["10.0.0.0/24"]}))
    code, out, err = cli("runbook", "plan", "probe", "node=node-2")
    assert code == 0, err
    assert "GET http://10.0.0.2:8545/health" in out
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__VARS", "{}")
    code, _, err = cli("runbook", "plan", "probe", "node=node-2")
    assert code == 1 and "vars.nodes is undefined (vars is empty)" in err, err


def test_a_cancel_from_the_cli_reaches_the_timeline(cli, tmp_path, effects):
    write_runbooks(tmp_path, approval="none")
    # carol commands the incident: the commander may cancel anyone's run
    cli("incident", "declare", "RPC", "down", "--commander", "carol")
    code, out, _ = cli(
        "runbook", "run", "restart-node", "node=rpc-3", f"url={effects.url}", "-i", "1", "--detach"
    )
    rid = re.search(r"Run (\d+)", out).group(1)
    code, out, err = cli("runs", "cancel", rid, "--as", "carol")
    assert code == 0, err
    code, out, _ = cli("timeline", "INC-1")
    assert "runbook.cancelled" in out and "cancelled by carol" in out
    assert effects.requests() == {}


FLOW = """
name: flow
params:
  url: {type: string}
  skip_it: {type: bool, default: true}
steps:
  - id: wait_ok
    uses: http.request
    idempotent: true
    with: {method: POST, url: "{{ params.url }}", json: {token: poll}, expect_status: [200, 503]}
    wait_until: {check: "outputs.status == 200", interval: 0.1, timeout: 30s}
  - id: maybe
    uses: incident.note
    when: "not params.skip_it"
    with: {text: "not skipped"}
  - id: break_it
    uses: http.request
    with: {method: POST, url: "{{ params.url }}", json: {token: broken}}
    on_failure:
      - id: say_so
        uses: incident.note
        with: {text: "rolled back after {{ steps.wait_ok.outputs.polls }} polls"}
  - id: never
    uses: incident.note
    with: {text: "never"}
"""


def test_wait_until_when_and_rollback_in_one_run(cli, tmp_path, effects):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "flow.yaml").write_text(FLOW)
    effects.script("poll", (503, {}), (503, {}))
    effects.script("broken", (400, {}))
    cli("incident", "declare", "RPC", "down")
    code, out, err = cli("runbook", "run", "flow", f"url={effects.url}", "-i", "INC-1")
    assert code == 1, out + err
    assert "✓ wait_ok: done" in out and "→ maybe: skipped" in out, err
    assert "✗ break_it: failed" in out and "✓ say_so: done" in out
    assert re.search(r"Run \d+ failed after .*: .*'break_it' failed: .*400.*; rolled back", out)
    assert effects.requests() == {"poll": 3, "broken": 1}
    code, out, _ = cli("timeline", "INC-1")
    assert "rolled back after 3 polls" in out and "not skipped" not in out
    assert "never" not in out.replace("never_", "")


# The first step outlasts the runbook's timeout whenever it starts; the timeout leaves a busy
# machine a few seconds to start the run before that step.
LATE = """
name: late
timeout: 4s
steps:
  - id: slow
    uses: wait.sleep
    with: {seconds: 4.5}
  - id: change
    uses: incident.note
    with: {text: "changed"}
    on_failure:
      - id: undo
        uses: incident.note
        with: {text: "undid the change"}
"""


def test_a_step_the_timeout_stopped_before_it_began_is_not_rolled_back(cli, tmp_path):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "late.yaml").write_text(LATE)
    cli("incident", "declare", "RPC", "down")
    code, out, err = cli("runbook", "run", "late", "-i", "INC-1")
    assert code == 1, out + err
    assert "✓ slow: done" in out and "✗ change: failed" in out
    assert "the runbook's timeout of 4s passed before step change" in out
    assert "undo" not in out.split("✗ change: failed")[1]
    code, out, _ = cli("timeline", "INC-1")
    assert "runbook.failed" in out
    assert "undid the change" not in out and "changed" not in out
