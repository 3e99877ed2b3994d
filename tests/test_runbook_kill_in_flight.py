"""A runbook run in the bot (``incidentbot serve`` as a real process) whose process is
SIGKILLed while the run waits for approval, and in the middle of a step: the next process
takes over (the approval through it), and a step in doubt waits for a person.
(``tests/runbook_kill_support.py`` has the runbook, the processes and what the test reads.)
"""

from __future__ import annotations

import json
from collections import Counter

from tests.runbook_kill_support import (  # noqa: F401 - fixtures
    LABELS,
    NOTE,
    TOKENS,
    approve,
    assert_completed_once,
    button_texts,
    buttons,
    declare_and_run,
    effects,
    message_with,
    reply,
    seats,
    slack,
    status,
    succeeded_message,
    timeline,
    told,
    zygote,
)


def test_killed_while_waiting_for_approval_approved_through_the_next(
    seats,  # noqa: F811 - the fixtures of tests.runbook_kill_support
    engine,
    slack,  # noqa: F811
    effects,  # noqa: F811
):
    seat = seats()
    channel, _bob, run_id = declare_and_run(seat, engine, slack, effects)
    seat.wait(lambda: status(engine, run_id) == "parked", "the run to wait for approval")
    first = seat.current
    seat.replace()
    assert first.proc.returncode == -9
    assert effects.requests() == {}

    approve(seat, slack, channel, run_id)  # handled by the new process
    seat.wait(lambda: status(engine, run_id) == "succeeded", "the run to succeed")
    assert_completed_once(seat, engine, slack, effects, channel, run_id)


def test_killed_during_a_step_stops_for_attention_then_skip_completes(
    seats,  # noqa: F811 - the fixtures of tests.runbook_kill_support
    engine,
    slack,  # noqa: F811
    effects,  # noqa: F811
):
    """The restart request reached the node and the bot died before hearing back: the next
    process does not guess, the run waits for a person; bob skips the step (it did happen)."""
    effects.held.add("restart-rpc-1")
    seat = seats()
    channel, bob, run_id = declare_and_run(seat, engine, slack, effects)
    seat.wait(lambda: status(engine, run_id) == "parked", "the run to wait for approval")
    approve(seat, slack, channel, run_id)
    seat.wait(lambda: effects.requests()["restart-rpc-1"] == 1, "the restart request")
    seat.replace()  # SIGKILL while the request is in flight

    seat.wait(lambda: status(engine, run_id) == "needs_attention", "the run to need attention")
    msg = seat.wait(lambda: message_with(slack, channel, run_id, "runbook_skip"),
                    "the Skip button")  # fmt: skip
    assert buttons(msg) == ["runbook_resume", "runbook_skip", "runbook_abort"], msg.blocks
    assert button_texts(msg) == ["Resume (run the step again)", "Skip the step", "Abort"]
    assert "needs attention" in msg.text, msg.text
    shown = json.dumps(msg.blocks)
    assert "Restart the node" in shown and "may or may not have happened" in shown, shown
    # Nothing after the step in doubt ran.
    assert effects.requests() == {"drain-rpc-1": 1, "restart-rpc-1": 1}

    reply(slack.driver.block_action("runbook_skip", user="bob", channel=channel,
                                    message_ts=msg.ts), seat)  # fmt: skip
    seat.wait(lambda: told(slack, bob, "Restart the node") and told(slack, bob, "skipped by"),
              "bob to be told the step was skipped")  # fmt: skip
    seat.wait(lambda: status(engine, run_id) == "succeeded", "the run to succeed")
    msgs = seat.wait(lambda: succeeded_message(slack, channel, run_id),
                     "the run message to show the run succeeded")  # fmt: skip
    assert len(msgs) == 1 and msgs[0].ts == msg.ts, ([m.text for m in msgs], seat.logs())
    assert buttons(msgs[0]) == []
    shown = json.dumps(msgs[0].blocks)
    for label in LABELS:
        state = "skipped" if label == "Restart the node" else "done"
        assert f"{label}: {state}" in shown, shown
    # The step in doubt happened once (the node saw it), and nothing was repeated.
    assert effects.applied() == Counter(TOKENS), (effects.hits, seat.logs())
    assert effects.requests() == Counter(TOKENS), (effects.hits, seat.logs())
    events = timeline(engine)
    assert [e.summary for e in events if e.kind == "note"].count(NOTE) == 1
    done = Counter(e.data.get("step") for e in events if e.kind == "runbook.step_succeeded")
    assert done == Counter(["drain", "note", "settle", "enable"]), seat.logs()
    skipped = [(e.actor, e.data.get("step")) for e in events if e.kind == "runbook.step_skipped"]
    assert skipped == [(bob, "restart")], skipped
    kinds = [e.kind for e in events]
    assert kinds.count("runbook.needs_attention") == 1 and kinds.count("runbook.succeeded") == 1
