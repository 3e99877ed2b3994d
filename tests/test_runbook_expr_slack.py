"""A hostile expression sent as ``/incident run plan`` over the local Slack server: refused
within Slack's ack window, while ``/healthz`` and other commands are answered.

The plan is computed before the ack (it is the answer), with every expression bounded by the
cost model and all of a plan's expressions sharing a short time budget; this shows it."""

from __future__ import annotations

import json
import threading

import httpx

from incidentbot.runbooks import expr_limits
from tests.slack_harness import running_bot

HOSTILE = """\
name: hostile
description: an exponent that looks small
params:
  n: {type: int}
steps:
  - id: note
    uses: incident.note
    with: {text: "{{ ((((2**256)**256)**256)**params.n) }}"}
"""

BENIGN = """\
name: benign
description: arithmetic a runbook really does
params:
  n: {type: int}
steps:
  - id: note
    uses: incident.note
    with: {text: "lag {{ params.n * 2 }} of {{ 2**8 }}"}
"""


def write_runbooks(tmp_path):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "hostile.yaml").write_text(HOSTILE)
    (folder / "benign.yaml").write_text(BENIGN)
    return folder


def answer(ack) -> str:
    assert not ack.timed_out and ack.status == 200, (ack.status, ack.error, ack.body)
    body = json.loads(ack.body)
    return body["text"] + json.dumps(body.get("blocks") or [])


def test_a_hostile_plan_is_refused_and_the_bot_answers_meanwhile(engine, tmp_path, monkeypatch):
    folder = write_runbooks(tmp_path)
    evaluating, release = threading.Event(), threading.Event()
    check_binop = expr_limits.check_binop

    def gated(op, left, right):  # holds the hostile plan mid-evaluation until the test says
        if op == "**" and not release.is_set():
            evaluating.set()
            assert release.wait(20)
        return check_binop(op, left, right)

    monkeypatch.setattr(expr_limits, "check_binop", gated)
    with running_bot(engine, runbooks={"dirs": [str(folder)]}) as (_bot, slack):
        base = slack.driver.bot_url.removesuffix("/slack/events")
        acks = []
        sender = threading.Thread(
            target=lambda: acks.append(
                slack.driver.slash_command("run plan hostile n=64", user="carol")
            )
        )
        sender.start()
        try:
            assert evaluating.wait(20), "the plan never reached its expressions"
            health = httpx.get(f"{base}/healthz", timeout=20)  # while the plan is evaluated
        finally:
            release.set()
        sender.join(20)
        other = answer(slack.driver.slash_command("run plan benign n=3", user="bob"))

    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert len(acks) == 1
    text = answer(acks[0])
    assert "Step note" in text
    assert "refused: the number would be over 4096 bits (the limit of a number)" in text
    assert "lag 6 of 256" in other and "Plan (nothing was run)" in other
