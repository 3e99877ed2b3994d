"""The scheduler is core code: it never imports the Slack handoff commands. Whoever runs it hands
it the handoff operations, and `incidentbot scheduler` (not only `serve`) does: the weekly
handoff goes out at its slot through the local Slack and PagerDuty servers, exactly once, and
the unacknowledged handoff is reminded of."""

from __future__ import annotations

from datetime import timedelta

from incidentbot.cli.jobs_cmd import _services
from incidentbot.scheduler.builtin import build_scheduler
from tests.clock_support import moving_clock
from tests.test_handoff import HANDOFF, expected
from tests.test_handoff_schedule import ack_reminders, bots, handoffs, rows, seed

SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)


def test_the_scheduler_command_posts_handoffs_with_the_operations_it_is_handed(engine, tmp_path):
    with bots(engine, tmp_path) as b:
        seed(engine, b.settings)
        ws = b.slack.workspace
        carol, bob = ws.user("carol").id, ws.user("bob").id
        services = _services(b.settings, engine)  # what `incidentbot scheduler` builds
        assert services is not None and services.handoffs is not None
        scheduler = build_scheduler(b.settings, engine, services, name="cli-scheduler")
        assert "handoff.rpc" in scheduler.jobs
        try:
            with moving_clock(HANDOFF + 5 * SEC) as clock:
                assert scheduler.try_lead()
                scheduler.tick()
                [message] = handoffs(b.slack)
                assert message.text == expected(f"<@{carol}>", f"<@{bob}>")
                scheduler.tick()
                assert len(handoffs(b.slack)) == 1  # the slot fired once

                clock.set(HANDOFF + 21 * MIN)
                scheduler.tick()
                [reminder] = ack_reminders(b.slack)
                assert reminder.startswith(f":bell: <@{bob}>: the *rpc* <")
        finally:
            scheduler.release()
        outcomes = rows(engine, "SELECT job, outcome FROM scheduler_run WHERE job LIKE 'handoff.%'")
        assert ("handoff.rpc", "ok") in outcomes and ("handoff.ack_reminders", "ok") in outcomes
