"""The same runbook operation under the same rules from Slack and from the CLI: who may run a
runbook, who may cancel or resume a run, who may approve it (``runs decide`` included)."""

from __future__ import annotations

import json
import re

import pytest

from incidentbot import db, ledger
from incidentbot.incidents import service as svc
from tests.conftest import count
from tests.egress_support import LOOPBACK
from tests.ledger_harness import EffectServer
from tests.slack_harness import running_bot, wait_for
from tests.test_runbook_e2e import reply, runbook_run, status, with_button, write_runbooks
from tests.test_runbook_rules import ask, seeded, start_incident, told


@pytest.fixture
def effects(monkeypatch):
    # The server is on loopback: the CLI's settings allow it explicitly.
    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__EGRESS", json.dumps(LOOPBACK))
    srv = EffectServer().start()
    yield srv
    srv.stop()


def _run_id(out: str) -> int:
    found = re.search(r"Run (\d+)", out)
    assert found, out
    return int(found.group(1))


def test_a_rule_refuses_the_same_run_in_slack_and_in_the_cli(
    cli, engine, tmp_path, effects, monkeypatch
):
    folder = write_runbooks(tmp_path, approval="none")
    # One rule for both doors: dave by his Slack id, and by the name he uses in the CLI.
    access = [{"runbooks": ["restart-*"], "users": [seeded("dave"), "dave"]}]
    settings = {"dirs": [str(folder)], "access": access, "egress": LOOPBACK}
    with running_bot(engine, runbooks=settings) as (_bot, slack):
        ch = start_incident(slack, engine)
        text = ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}", user="alice")
        assert "You may not run restart-node: runbooks.access allows only" in text
        assert runbook_run(engine) is None
        # alice is a member of the incident's channel: only the rule keeps her out
        with slack.workspace.lock:
            assert seeded("alice") in slack.workspace.channel(ch).members
    assert effects.requests() == {}

    monkeypatch.setenv("INCIDENTBOT_RUNBOOKS__ACCESS", json.dumps(access))
    run = ("runbook", "run", "restart-node", "node=rpc-1", f"url={effects.url}", "-i", "INC-1")
    code, out, err = cli(*run, "--as", "alice")
    assert code == 1, out + err
    assert "you may not run restart-node: runbooks.access allows only" in err
    assert "dave" in err and "Run " not in out
    assert count(engine, "runbook_run") == 0 and effects.requests() == {}
    # Without an incident it is the same rule (nothing to be a member of in a terminal).
    code, _, err = cli(*run[:5], "--as", "alice")
    assert code == 1 and "you may not run restart-node" in err
    assert count(engine, "runbook_run") == 0

    code, out, err = cli(*run, "--as", "dave")
    assert code == 0, out + err
    assert re.search(r"Run \d+ succeeded in", out)
    assert effects.applied() == {"drain-rpc-1": 1}
    with db.transaction(engine) as s:
        kinds = [e.kind for e in svc.timeline(s, svc.get(s, "INC-1"))]
        assert ledger.get_run(s, _run_id(out)).created_by == "dave"
    assert "runbook.started" in kinds and "runbook.succeeded" in kinds


def test_an_open_rule_lets_the_cli_user_run_without_a_channel(cli, engine, tmp_path, effects):
    write_runbooks(tmp_path, approval="none")
    cli("incident", "declare", "RPC", "down")  # a CLI incident: no channel to be a member of
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-4", f"url={effects.url}", "-i", "INC-1"
    )
    assert code == 0, out + err
    assert effects.applied() == {"drain-rpc-4": 1}


def test_cancel_and_resume_from_the_cli_follow_the_slack_buttons_rule(
    cli, engine, tmp_path, effects
):
    write_runbooks(tmp_path, approval="commander")
    cli("incident", "declare", "RPC", "down", "--commander", "bob")
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-2", f"url={effects.url}", "-i", "INC-1",
        "--detach", "--as", "alice",
    )  # fmt: skip
    assert code == 0, err
    rid = _run_id(out)
    code, _, err = cli("runs", "cancel", str(rid), "--as", "carol")
    assert code == 1
    assert "only the incident commander (bob) may cancel runs of restart-node" in err
    code, _, err = cli("runbook", "resume", str(rid), "--as", "alice")
    assert code == 1 and "may resume runs of restart-node" in err  # the requester cannot
    assert status(engine, rid) == "pending"
    code, out, err = cli("runs", "cancel", str(rid), "made", "a", "typo", "--as", "alice")
    assert code == 0, err
    assert status(engine, rid) == "cancelled"
    code, out, _ = cli("timeline", "INC-1")
    assert "runbook.cancelled" in out and "cancelled by alice: made a typo" in out
    assert effects.requests() == {}


def test_runs_decide_on_a_runbook_run_is_its_approval(cli, engine, tmp_path, effects):
    write_runbooks(tmp_path, approval="commander")
    cli("incident", "declare", "RPC", "down", "--commander", "bob")
    code, out, err = cli(
        "runbook", "run", "restart-node", "node=rpc-5", f"url={effects.url}", "-i", "INC-1",
        "--detach", "--as", "alice",
    )  # fmt: skip
    rid = _run_id(out)
    worker = ledger.Worker(engine, name="t", lease=5)
    try:
        worker.run_once()  # parks at the approval (no channel to post in)
        assert status(engine, rid) == "parked"
        code, _, err = cli("runs", "decide", str(rid), "approved", "--as", "alice")
        assert code == 1 and "someone else has to approve it" in err
        code, _, err = cli("runs", "decide", str(rid), "approved", "--as", "carol")
        assert code == 1 and "Only the incident commander (bob) may approve" in err
        code, _, err = cli("runs", "decide", str(rid), "maybe", "--as", "bob")
        assert code == 1 and "its decision is approved or rejected, not 'maybe'" in err
        assert status(engine, rid) == "parked" and effects.requests() == {}
        code, out, err = cli("runs", "decide", str(rid), "approved", "--as", "bob")
        assert code == 0, err
        assert f"bob approved runbook restart-node (run {rid}): it runs now" in out
        while worker.run_once():
            pass
    finally:
        worker.close()
    assert status(engine, rid) == "succeeded"
    assert effects.applied() == {"drain-rpc-5": 1}
    with db.transaction(engine) as s:
        kinds = [e.kind for e in svc.timeline(s, svc.get(s, "INC-1"))]
    assert kinds.count("runbook.approval") == 1


def test_a_stranger_cannot_cancel_a_run_from_slack_either(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path, approval="commander")
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_b, slack):
        ch = start_incident(slack, engine)  # alice declares, bob commands
        ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        wait_for(lambda: status(engine, rid) == "parked", what="the approval wait")
        ts = wait_for(lambda: with_button(slack, ch, rid, "runbook_cancel"), what="Cancel")[0].ts
        reply(slack.driver.block_action("runbook_cancel", user="carol", channel=ch, message_ts=ts))
        said = wait_for(lambda: told(slack, "carol"), what="carol's answer")
        assert any(
            "may cancel runs of restart-node" in t and "Nothing changed" in t for t in said
        ), said
        assert status(engine, rid) == "parked"
        reply(slack.driver.block_action("runbook_cancel", user="alice", channel=ch, message_ts=ts))
        wait_for(lambda: status(engine, rid) == "cancelled", what="the requester's cancel")
    assert effects.requests() == {}
