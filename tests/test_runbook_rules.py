"""Who may run and approve, two-person approval, expiry, the per-target lock across incidents,
and plans that touch nothing — from Slack, with the bot and the local Slack server."""

from __future__ import annotations

import socket

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.runbooks import approvals, planning
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.slack.workspace import Workspace
from tests.conftest import count
from tests.egress_support import LOCAL_POLICY, LOOPBACK
from tests.ledger_harness import EffectServer
from tests.slack_harness import channel_of, running_bot, wait_for
from tests.test_runbook_e2e import reply, runbook_run, status, with_button, write_runbooks


@pytest.fixture
def effects():
    srv = EffectServer().start()
    yield srv
    srv.stop()


def seeded(name: str) -> str:
    """The id of a seeded user (the local Slack server seeds the same ids every time)."""
    return Workspace().user(name).id


def start_incident(slack, engine, title="RPC down", ref="INC-1", commander="bob"):
    reply(slack.driver.slash_command(f"declare sev1 {title}", user="alice"))
    ch = channel_of(engine, ref)
    if commander:
        uid = slack.workspace.user(commander).id
        reply(slack.driver.slash_command(f"assign commander <@{uid}>", user="alice", channel=ch))
    return ch


def ask(slack, ch, text, user="alice") -> str:
    return reply(slack.driver.slash_command(text, user=user, channel=ch))["text"]


def approve_button(slack, ch, rid):
    msgs = wait_for(lambda: with_button(slack, ch, rid, "runbook_approve"), what="Approve")
    return msgs[0].ts


def told(slack, user) -> list[str]:
    return [e.text for e in slack.ephemeral(user)]


def told_eventually(slack, user, text: str) -> None:
    wait_for(lambda: any(text in t for t in told(slack, user)), what=f"{user} told {text!r}")


def test_two_person_approval_needs_two_distinct_approvers(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path, approval="two-person")
    access = [{"runbooks": ["restart-*"], "approvers": [seeded("carol")]}]
    settings = {"dirs": [str(folder)], "access": access, "egress": LOOPBACK}
    with running_bot(engine, runbooks=settings) as (_, slack):
        ch = start_incident(slack, engine)
        ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        ts = approve_button(slack, ch, rid)
        slack.driver.block_action("runbook_approve", user="bob", channel=ch, message_ts=ts)
        slack.driver.block_action("runbook_approve", user="bob", channel=ch, message_ts=ts)
        slack.driver.block_action("runbook_approve", user="dave", channel=ch, message_ts=ts)
        assert status(engine, rid) == "parked"
        # the replies go out after each click's answer
        told_eventually(slack, "bob", "(1 of 2 approvals)")
        told_eventually(slack, "bob", "You already approved")
        told_eventually(slack, "dave", "may approve runs of restart-node")
        assert effects.requests() == {}
        slack.driver.block_action("runbook_approve", user="carol", channel=ch, message_ts=ts)
        wait_for(lambda: status(engine, rid) == "succeeded", what="the run")
        assert effects.applied() == {"drain-rpc-1": 1}
        with db.transaction(engine) as s:
            approvals = [
                e.summary
                for e in svc.timeline(s, svc.get(s, "INC-1"))
                if e.kind == "runbook.approval"
            ]
        assert len(approvals) == 2 and "it runs now" in approvals[1]


def test_two_person_is_refused_at_once_when_nobody_else_could_approve(engine, tmp_path):
    folder = write_runbooks(tmp_path, approval="two-person")
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_bot, slack):
        ch = start_incident(slack, engine)
        text = ask(slack, ch, "run restart-node node=rpc-1 url=http://127.0.0.1:9/")
        assert "needs two person approval and nobody but you could give it" in text
        assert runbook_run(engine) is None


def test_an_expired_approval_fails_the_run_and_later_clicks_change_nothing(
    engine, tmp_path, effects
):
    folder = write_runbooks(tmp_path)
    settings = {"dirs": [str(folder)], "approval_timeout": "2s", "egress": LOOPBACK}
    with running_bot(engine, runbooks=settings) as (_bot, slack):
        ch = start_incident(slack, engine)
        ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        ts = approve_button(slack, ch, rid)
        wait_for(lambda: status(engine, rid) == "failed", what="the approval to expire")
        late = approvals.decide(engine, _bot.settings, rid, seeded("bob"), "approved")
        assert not late.accepted and "already expired" in late.message
        assert ts
        assert status(engine, rid) == "failed" and effects.requests() == {}
        with db.transaction(engine) as s:
            kinds = [e.kind for e in svc.timeline(s, svc.get(s, "INC-1"))]
        assert "runbook.approval_expired" in kinds and "runbook.failed" in kinds


def test_a_reject_ends_the_run_and_the_target_is_free_again(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path)
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_bot, slack):
        ch = start_incident(slack, engine)
        ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        ts = approve_button(slack, ch, rid)
        slack.driver.block_action("runbook_reject", user="bob", channel=ch, message_ts=ts)
        wait_for(lambda: status(engine, rid) == "failed", what="the rejected run to end")
        # the buttons are gone from the message; a click that was already on its way:
        late = approvals.decide(engine, _bot.settings, rid, seeded("bob"), "approved")
        assert not late.accepted and "already rejected" in late.message
        text = ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        assert "Started restart-node as run" in text


def test_the_target_lock_holds_across_two_incidents(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path)
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_bot, slack):
        ch1 = start_incident(slack, engine, "RPC down")
        ch2 = start_incident(slack, engine, "Indexer behind", ref="INC-2")
        ask(slack, ch1, f"run restart-node node=rpc-1 url={effects.url}")
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id
        text = ask(slack, ch2, f"run restart-node node=rpc-1 url={effects.url}")
        assert f"Target 'rpc-1' is locked by run {rid}" in text and "INC-1" in text
        text = ask(slack, ch2, f"run restart-node node=rpc-2 url={effects.url}")
        assert "Started restart-node as run" in text


def test_by_default_only_channel_members_may_run(engine, tmp_path):
    folder = write_runbooks(tmp_path)
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_bot, slack):
        ch = start_incident(slack, engine)
        text = ask(slack, ch, "run restart-node node=rpc-1 url=http://127.0.0.1:9/", user="erin")
        assert "only members of #" in text and "may run runbooks for this incident" in text
        assert runbook_run(engine) is None


def test_who_may_run_comes_from_the_settings(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path, approval="none")
    group = next(g.id for g in Workspace().usergroups.values() if g.handle == "oncall-rpc")
    access = [{"runbooks": ["restart-*"], "users": [seeded("dave")], "groups": [group]}]
    settings = {"dirs": [str(folder)], "access": access, "egress": LOOPBACK}
    with running_bot(engine, runbooks=settings) as (_, slack):
        ch = start_incident(slack, engine)
        text = ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}")
        assert "You may not run restart-node: runbooks.access allows only" in text
        # Who may run it, built from the settings, stays a mention (the refusal is escaped).
        assert f"<@{seeded('dave')}>, <!subteam^{group}>" in text
        assert runbook_run(engine) is None
        text = ask(slack, ch, f"run restart-node node=rpc-1 url={effects.url}", user="carol")
        assert "Started restart-node as run" in text  # carol is in the oncall-rpc group
        wait_for(lambda: effects.applied() == {"drain-rpc-1": 1}, what="carol's run")


def test_missing_or_bad_params_get_the_usage_and_nothing_starts(engine, tmp_path):
    folder = write_runbooks(tmp_path)
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (_bot, slack):
        ch = start_incident(slack, engine)
        text = ask(slack, ch, "run restart-node node=db-1 colour=red")
        assert "Cannot run restart-node" in text
        assert "`node`: 'db-1' does not match the pattern" in text
        assert "`url`: " in text and "`colour`: unknown param" in text
        assert "Usage: /incident run [plan] restart-node node=… url=…" in text
        assert "Params:" in text and "api_key" in text
        text = ask(slack, ch, "run nope")
        assert "There is no runbook nope (runbooks: restart-node)" in text
        assert runbook_run(engine) is None


def test_a_plan_resolves_everything_and_touches_nothing(engine, tmp_path, effects, monkeypatch):
    folder = write_runbooks(tmp_path)
    catalog = load_dirs([folder], registry)
    runbook = catalog.get("restart-node")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a plan opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    key = "0123456789abcdef0123456789abcdef"
    loopback = Services(egress=LOCAL_POLICY)  # the effect server is on loopback: allowed
    plan = planning.plan(
        runbook, {"node": "rpc-3", "url": effects.url, "api_key": key}, services=loopback
    )
    lines = "\n".join(planning.format_plan(plan))
    monkeypatch.undo()
    assert effects.requests() == {}
    assert "Target (locked while it runs): rpc-3" in lines
    assert f"POST {effects.url}" in lines
    assert "api_key=***" in lines and key not in lines
    assert "⟨steps.drain.outputs.status⟩" in lines or "known only when the run" in lines
    assert count(engine, "ledger_run") == 0
