"""A runbook run in the bot (``incidentbot serve`` as a real process) whose process is
SIGKILLed after every step it completes, a fresh process taking over each time: the run
completes, each side effect happens once, and the run has exactly one Slack message.
(``tests/runbook_kill_support.py`` has the runbook, the processes and what the test reads.)
"""

from __future__ import annotations

import re

from incidentbot import db, ledger
from tests.runbook_kill_support import (  # noqa: F401 - fixtures
    approve,
    assert_completed_once,
    declare_and_run,
    effects,
    seats,
    slack,
    status,
    succeeded_message,
    timeline,
    zygote,
)


def test_killed_after_every_step_the_run_completes_once(
    seats,  # noqa: F811 - the fixtures of tests.runbook_kill_support
    engine,
    slack,  # noqa: F811
    effects,  # noqa: F811
):
    """From the runbook request on, every bot process stops dead after any step it completes
    and is SIGKILLed there; a fresh one takes over each time until the run has succeeded.

    One worker thread per process, so a kill never lands in the middle of some other step.
    The incident is set up by a process that is not paused (the incident's own runs are not
    what this test is about, and each kill costs a process start)."""
    seat = seats(workers=1)
    channel, _bob, run_id = declare_and_run(
        seat, engine, slack, effects, before_run=lambda: seat.replace(pause_after="all")
    )
    seat.wait(lambda: status(engine, run_id) == "parked", "the run to wait for approval",
              kill_paused=True)  # fmt: skip
    assert effects.requests() == {}  # nothing ran before the approval
    approve(seat, slack, channel, run_id, kill_paused=True)
    seat.wait(lambda: status(engine, run_id) == "succeeded", "the run to succeed",
              kill_paused=True)  # fmt: skip

    seat.wait(lambda: succeeded_message(slack, channel, run_id),
              "the run message to show the run succeeded", kill_paused=True)  # fmt: skip
    assert_completed_once(seat, engine, slack, effects, channel, run_id)

    # The announcement, the approval and the five steps: a process died after each of them,
    # and none of them ran twice (the effects were counted above). The note and the settle
    # are idempotent: each is marked started in the commit of the step before it (unless a
    # Slack answer was in progress just then), so the death after that step left it started,
    # and the next process ran it again: a second attempt whose first never began.
    paused = re.findall(rf"PAUSED run={run_id} step=(\d+)", seat.logs())
    assert paused == [str(n) for n in range(1, 8)], seat.logs()
    with db.transaction(engine) as s:
        steps = ledger.get_steps(s, run_id)
    assert [st.status for st in steps] == ["succeeded"] * 7, seat.logs()
    attempts = [st.attempts for st in steps]
    assert [attempts[i] for i in (0, 1, 2, 5, 6)] == [1] * 5, seat.logs()
    assert attempts[3] in (1, 2) and attempts[4] in (1, 2), seat.logs()
    # Each death with the run in hand is on the timeline as a takeover: after every step
    # but the last, which ended the run in the same commit.
    kinds = [e.kind for e in timeline(engine)]
    assert kinds.count("runbook.taken_over") == 6, kinds
