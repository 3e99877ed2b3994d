"""Runbooks from Slack end to end: /incident run, approvals by button, the run message updated
in place, every step on the timeline — the bot and the local Slack server over real sockets."""

from __future__ import annotations

import json
import textwrap

import pytest

from incidentbot import db, ledger
from incidentbot.clock import utcnow
from incidentbot.incidents import service as svc
from incidentbot.people.lookup import remember
from incidentbot.runbooks.models import RunbookRun
from tests.egress_support import LOOPBACK
from tests.ledger_harness import EffectServer
from tests.slack_harness import channel_of, held_until_answered, running_bot, wait_for

RESTART = """
name: restart-node
description: Drain a node, note it, settle
params:
  node: {type: string, pattern: "^rpc-[0-9]+$", description: the node}
  url: {type: string}
  api_key: {type: string, secret: true, required: false}
target: node
approval: APPROVAL
steps:
  - id: drain
    name: Drain the node
    uses: http.request
    with:
      method: POST
      url: "{{ params.url }}"
      json: {token: "drain-{{ params.node }}"}
  - id: note
    uses: incident.note
    with: {text: "drained {{ params.node }} with HTTP {{ steps.drain.outputs.status }}"}
  - id: settle
    uses: wait.sleep
    with: {seconds: 0}
"""


@pytest.fixture
def effects():
    srv = EffectServer().start()
    yield srv
    srv.stop()


def write_runbooks(tmp_path, approval="commander", extra: dict[str, str] | None = None):
    folder = tmp_path / "runbooks"
    folder.mkdir(exist_ok=True)
    (folder / "restart-node.yaml").write_text(RESTART.replace("APPROVAL", approval))
    for name, text in (extra or {}).items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


def reply(ack) -> dict:
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body) if ack.body else {}


def runbook_run(engine) -> RunbookRun | None:
    from sqlmodel import select

    with db.transaction(engine) as s:
        return s.exec(select(RunbookRun).order_by(RunbookRun.id.desc())).first()  # type: ignore[union-attr]


def status(engine, run_id) -> str:
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id).status


def run_messages(slack, channel, run_id):
    marker = f"runbook-run-{run_id}"
    ws = slack.workspace
    with ws.lock:
        chan = ws.channel(channel)
        return [m for m in chan.messages if any(b.get("block_id") == marker for b in m.blocks)]


def with_button(slack, channel, run_id, action_id):
    msgs = run_messages(slack, channel, run_id)
    found = [
        m
        for m in msgs
        for b in m.blocks
        for e in b.get("elements", [])
        if isinstance(e, dict) and e.get("action_id") == action_id
    ]
    return msgs if found else None


def declared_with_bob_commanding(engine, slack) -> str:
    """alice declares an incident and makes bob its commander; its channel."""
    reply(slack.driver.slash_command("declare sev1 RPC down", user="alice"))
    ch = channel_of(engine)
    bob = slack.workspace.user("bob").id
    reply(slack.driver.slash_command(f"assign commander <@{bob}>", user="alice", channel=ch))
    return ch


def test_run_with_commander_approval_every_step_on_the_timeline(engine, tmp_path, effects):
    folder = write_runbooks(tmp_path)
    runbooks = {"dirs": [str(folder)], "egress": LOOPBACK}
    with running_bot(engine, runbooks=runbooks) as (bot, slack):
        ch = declared_with_bob_commanding(engine, slack)
        url = effects.url
        key = "0123456789abcdef0123456789abcdef"
        body = reply(
            slack.driver.slash_command(
                f"run restart-node node=rpc-2 url={url} api_key={key}", user="alice", channel=ch
            )
        )
        assert "Started restart-node as run" in body["text"], body
        row = wait_for(lambda: runbook_run(engine), what="the runbook run")
        rid = row.run_id
        wait_for(lambda: status(engine, rid) == "parked", what="the run waiting for approval")
        msgs = wait_for(lambda: with_button(slack, ch, rid, "runbook_approve"), what="Approve")
        assert len(msgs) == 1
        ts = msgs[0].ts
        assert effects.requests() == {}  # nothing ran before the approval
        # A first attempt at posting the run message reads nothing back from Slack.
        assert slack.requests("conversations.history") == []

        # alice asked for it: she may not approve it; carol is not the commander. Each is
        # answered without waiting for Slack to take the reply only they see.
        for who in ("alice", "carol"):
            with held_until_answered(slack, "response_url", bot):
                ack = slack.driver.block_action("runbook_approve", user=who, channel=ch,
                                                message_ts=ts)  # fmt: skip
            assert ack.ok, ack
        assert status(engine, rid) == "parked"

        def told(who: str, what: str) -> list[str]:
            return [e.text for e in slack.ephemeral(who) if what in e.text]

        wait_for(lambda: told("alice", "someone else has to approve it"), what="alice told")
        wait_for(lambda: told("carol", "Only the incident commander"), what="carol told")

        slack.driver.block_action("runbook_approve", user="bob", channel=ch, message_ts=ts)
        slack.driver.block_action("runbook_approve", user="bob", channel=ch, message_ts=ts)
        wait_for(lambda: status(engine, rid) == "succeeded", what="the run to succeed")
        assert effects.applied() == {"drain-rpc-2": 1}

        def final_message():
            msgs = run_messages(slack, ch, rid)
            return msgs if msgs and "succeeded" in msgs[0].text else None

        msgs = wait_for(final_message, what="the run message to show success")
        assert len(msgs) == 1 and msgs[0].ts == ts
        with db.transaction(engine) as s:
            events = svc.timeline(s, svc.get(s, "INC-1"))
        kinds = [e.kind for e in events]
        for kind in (
            "runbook.started",
            "runbook.approval_requested",
            "runbook.approval",
            "runbook.step_started",
            "runbook.step_succeeded",
            "runbook.succeeded",
        ):
            assert kind in kinds, kinds
        assert kinds.count("runbook.step_succeeded") == 3
        notes = [e.summary for e in events if e.kind == "note"]
        assert "drained rpc-2 with HTTP 200" in notes
        everything = " ".join(e.summary + json.dumps(e.data) for e in events)
        everything += slack.transcript()
        assert key not in everything


def test_the_run_message_links_to_a_signed_page_with_the_full_output(engine, tmp_path, effects):
    import re

    import httpx

    folder = write_runbooks(tmp_path, approval="none")
    public = "https://incidentbot.example.com"
    settings = {
        "runbooks": {"dirs": [str(folder)], "egress": LOOPBACK},
        "http": {"public_url": public},
    }
    with running_bot(engine, **settings) as (_bot, slack):
        reply(slack.driver.slash_command("declare sev2 RPC slow", user="alice"))
        ch = channel_of(engine)
        text = f"run restart-node node=rpc-4 url={effects.url}"
        reply(slack.driver.slash_command(text, user="alice", channel=ch))
        rid = wait_for(lambda: runbook_run(engine), what="the run").run_id

        def done_message():
            msgs = run_messages(slack, ch, rid)
            return msgs if msgs and "succeeded" in msgs[0].text else None

        message = wait_for(done_message, what="the finished run message")[0]
        blocks = json.dumps(message.blocks)
        link = re.search(rf"<({re.escape(public)}/runs/{rid}\?sig=[0-9a-f]+)\|run {rid}>", blocks)
        assert link, blocks
        base = slack.driver.bot_url.removesuffix("/slack/events")
        url = link.group(1).replace(public, base)
        # The requester is a person the bot cached from Slack: the page names her.
        alice = slack.workspace.user("alice")
        with db.transaction(engine) as s:
            remember(s, alice.id, alice.name, "Alice Moreau", None, now=utcnow())
        page = httpx.get(url)
        assert page.status_code == 200
        assert "Requested by Alice Moreau for INC-1" in page.text
        assert alice.id not in page.text
        assert f"<h1>Runbook restart-node · run {rid} · succeeded</h1>" in page.text
        assert "Drain the node: done" in page.text
        assert "&#34;status&#34;: 200" in page.text  # the drain step's full output
        # above it, what the step did in words, as the Slack message says it
        assert '<p class="said">The request answered HTTP 200 (ok) in ' in page.text
        assert "— The request answered HTTP 200 (ok) in " in json.dumps(
            message.blocks, ensure_ascii=False
        )
        assert '<p class="said">Wrote a note on the incident timeline</p>' in page.text
        assert '<p class="said">Waited 0s</p>' in page.text
        assert httpx.get(url[:-1] + ("0" if url[-1] != "0" else "1")).status_code == 403
        assert httpx.get(f"{base}/runs/{rid}").status_code == 403


def test_a_retried_announcement_finds_the_message_an_earlier_attempt_posted(engine, tmp_path):
    """An attempt cut off after Slack took the run message but before its ts was stored: the
    next attempt finds that message in the channel and updates it, instead of posting twice."""
    folder = write_runbooks(tmp_path)
    with running_bot(engine, runbooks={"dirs": [str(folder)], "egress": LOOPBACK}) as (
        bot,
        slack,
    ):
        ch = declared_with_bob_commanding(engine, slack)
        body = reply(
            slack.driver.slash_command(
                "run restart-node node=rpc-2 url=http://127.0.0.1:9/", user="alice", channel=ch
            )
        )
        assert "Started restart-node as run" in body["text"], body
        rid = wait_for(lambda: runbook_run(engine), what="the runbook run").run_id
        wait_for(lambda: with_button(slack, ch, rid, "runbook_approve"), what="the run message")
        posted = run_messages(slack, ch, rid)[0].ts
        with db.transaction(engine) as s:  # as if the attempt died before storing it
            row = s.get(RunbookRun, runbook_run(engine).id)
            row.message_ts = None
            s.add(row)

        assert bot.run_messages.announce(rid, recover=True)["ts"] == posted
        assert [m.ts for m in run_messages(slack, ch, rid)] == [posted]
        assert runbook_run(engine).message_ts == posted
