"""What the kill tests of runbook runs in the bot share (``tests/test_runbook_kill_*.py``):
``incidentbot serve`` as a real process (forked from a zygote that imported the bot once),
the local Slack server, a side-effect server, the runbook, and what the tests read and do.

Slash commands and button clicks come from the local Slack server over real sockets; every
non-idempotent side effect is a request to an HTTP server in the test process, so what
happened is counted outside the process that did it.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlmodel import col, select

from incidentbot import db, ledger
from incidentbot.incidents import service as svc
from incidentbot.ledger.models import SETTLED, Run
from incidentbot.runbooks.models import RunbookRun
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.runbook_procs import BotSeat, HoldingEffectServer
from tests.slack_harness import PATIENT_ACK_S
from tests.worker_zygote import Zygote

LEASE = 30.0  # long: a busy machine never loses it; a kill ends it (BotSeat.replace)
NODE = "rpc-1"
TOKENS = {"drain-rpc-1": 1, "restart-rpc-1": 1, "enable-rpc-1": 1}
NOTE = "drained rpc-1 with HTTP 200"

RUNBOOK = """
name: cycle-node
description: Drain a node, note it, let it settle, restart it, put it back
params:
  node: {type: string, pattern: "^rpc-[0-9]+$", description: the node}
  url: {type: string}
target: node
approval: commander
steps:
  - id: drain
    name: Drain the node
    uses: http.request
    with:
      method: POST
      url: "{{ params.url }}"
      json: {token: "drain-{{ params.node }}"}
  - id: note
    name: Note the drain
    uses: incident.note
    with: {text: "drained {{ params.node }} with HTTP {{ steps.drain.outputs.status }}"}
  - id: settle
    name: Let it settle
    uses: wait.sleep
    with: {seconds: 0}
  - id: restart
    name: Restart the node
    uses: http.request
    with:
      method: POST
      url: "{{ params.url }}"
      json: {token: "restart-{{ params.node }}"}
  - id: enable
    name: Put the node back
    uses: http.request
    with:
      method: POST
      url: "{{ params.url }}"
      json: {token: "enable-{{ params.node }}"}
"""
STEP_IDS = ["drain", "note", "settle", "restart", "enable"]
LABELS = ["Drain the node", "Note the drain", "Let it settle", "Restart the node",
          "Put the node back"]  # fmt: skip


@pytest.fixture
def slack():
    sandbox = SlackSandbox(ack_timeout=PATIENT_ACK_S).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def effects():
    srv = HoldingEffectServer(held=set()).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def zygote():
    forker = Zygote()
    yield forker
    forker.close()


@pytest.fixture
def seats(database_url, tmp_path, slack, zygote):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "cycle-node.yaml").write_text(RUNBOOK)
    made: list[BotSeat] = []

    def make(**options) -> BotSeat:
        seat = BotSeat(tmp_path, database_url, slack, runbook_dirs=[folder], lease=LEASE,
                       zygote=zygote, **options)  # fmt: skip
        made.append(seat)
        return seat

    yield make
    for seat in made:
        seat.close()


# -- what the test reads: the database and the Slack workspace ------------------------------


def reply(ack, seat: BotSeat) -> dict:
    assert ack.status == 200, (ack.status, ack.body, seat.logs())
    return json.loads(ack.body) if ack.body else {}


def incident_channel(engine) -> str | None:
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
        return inc.channel_name if inc.channel_id and inc.header_ts else None


def commander(engine) -> str | None:
    with db.transaction(engine) as s:
        return svc.get(s, "INC-1").commander


def runbook_run(engine) -> RunbookRun | None:
    with db.transaction(engine) as s:
        return s.exec(select(RunbookRun).order_by(RunbookRun.id.desc())).first()  # type: ignore[union-attr]


def all_settled(engine) -> bool:
    with db.transaction(engine) as s:
        return not s.exec(select(Run.id).where(col(Run.status).not_in(SETTLED))).first()


def status(engine, run_id: int) -> str:
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id).status


def run_messages(slack, channel: str, run_id: int) -> list:
    marker = f"runbook-run-{run_id}"
    ws = slack.workspace
    with ws.lock:
        return [
            m
            for m in ws.channel(channel).messages
            if any(b.get("block_id") == marker for b in m.blocks)
        ]


def buttons(message) -> list[str]:
    return [
        e.get("action_id")
        for b in message.blocks
        for e in b.get("elements", [])
        if isinstance(e, dict) and e.get("type") == "button"
    ]


def button_texts(message) -> list[str]:
    return [
        e["text"]["text"]
        for b in message.blocks
        for e in b.get("elements", [])
        if isinstance(e, dict) and e.get("type") == "button"
    ]


def message_with(slack, channel: str, run_id: int, action_id: str):
    msgs = run_messages(slack, channel, run_id)
    return next((m for m in msgs if action_id in buttons(m)), None)


def succeeded_message(slack, channel: str, run_id: int):
    """The run's messages, once one of them says the run succeeded."""
    msgs = run_messages(slack, channel, run_id)
    return msgs if any("succeeded" in m.text for m in msgs) else None


def timeline(engine) -> list:
    with db.transaction(engine) as s:
        return list(svc.timeline(s, svc.get(s, "INC-1")))


def told(slack, user_id: str, text: str):
    return [e.text for e in slack.ephemeral() if e.user == user_id and text in e.text]


# -- the flow ---------------------------------------------------------------------------------


def declare_and_run(seat: BotSeat, engine, slack, effects, *, before_run=None):
    """alice declares an incident, makes bob the commander and runs the runbook; returns the
    channel, bob's id and the ledger run id (the run waits for bob's approval).

    ``before_run`` is called once the incident's own runs have all finished."""
    reply(slack.driver.slash_command("declare sev1 RPC node stuck", user="alice"), seat)
    channel = seat.wait(lambda: incident_channel(engine), "the incident channel")
    bob = slack.workspace.user("bob").id
    reply(slack.driver.slash_command(f"assign commander <@{bob}>", user="alice",
                                     channel=channel), seat)  # fmt: skip
    seat.wait(lambda: commander(engine) == bob, "bob to be the commander")
    if before_run is not None:
        seat.wait(lambda: all_settled(engine), "the incident's runs to finish")
        before_run()
    body = reply(
        slack.driver.slash_command(
            f"run cycle-node node={NODE} url={effects.url}", user="alice", channel=channel
        ),
        seat,
    )
    assert "Started cycle-node as run" in body.get("text", ""), (body, seat.logs())
    row = seat.wait(lambda: runbook_run(engine), "the runbook run")
    return channel, bob, row.run_id


def approve(seat: BotSeat, slack, channel: str, run_id: int, *, kill_paused: bool = False):
    """bob clicks Approve on the run message."""
    msg = seat.wait(lambda: message_with(slack, channel, run_id, "runbook_approve"),
                    "the Approve button", kill_paused=kill_paused)  # fmt: skip
    bob = slack.workspace.user("bob").id
    reply(slack.driver.block_action("runbook_approve", user="bob", channel=channel,
                                    message_ts=msg.ts), seat)  # fmt: skip
    seat.wait(lambda: told(slack, bob, "approved runbook"), "bob to be told his approval counted")


def assert_completed_once(seat: BotSeat, engine, slack, effects, channel: str, run_id: int):
    """The run succeeded; each side effect once; one message, showing success; the note and
    each step's success on the timeline once."""
    logs = seat.logs
    assert status(engine, run_id) == "succeeded", logs()
    assert effects.applied() == Counter(TOKENS), (effects.hits, logs())
    assert effects.requests() == Counter(TOKENS), (effects.hits, logs())
    msgs = seat.wait(lambda: succeeded_message(slack, channel, run_id),
                     "the run message to show the run succeeded")  # fmt: skip
    assert len(msgs) == 1, ([m.text for m in msgs], logs())
    assert buttons(msgs[0]) == []  # nothing left to click on a finished run
    shown = json.dumps(msgs[0].blocks)
    for label in LABELS:
        assert f"{label}: done" in shown, shown
    events = timeline(engine)
    notes = [e.summary for e in events if e.kind == "note"]
    assert notes.count(NOTE) == 1, (notes, logs())
    done = Counter(e.data.get("step") for e in events if e.kind == "runbook.step_succeeded")
    assert done == Counter(STEP_IDS), ([(e.kind, e.summary, e.data) for e in events], logs())
    assert [e.kind for e in events].count("runbook.succeeded") == 1
