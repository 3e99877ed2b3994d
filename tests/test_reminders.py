"""Status-update reminders on a controllable clock, through the bot's own scheduler and the
local Slack server over real sockets: they fire on the severity's cadence, snooze and dismiss
buttons work, an update stops them, and a restarted bot forgets nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.slack.reminder_commands import ReminderCommands
from tests.clock_support import moving_clock, tick
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    held_until_answered,
    running_bot,
    settled,
    wait_for,
)

# Tuesday 7 May 2024, 14:00 UTC.
T0 = datetime(2024, 5, 7, 14, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def reply(ack) -> str:  # type: ignore[no-untyped-def]
    import json

    return json.loads(ack.body)["text"]


def reminders(slack, channel: str) -> list:  # type: ignore[no-untyped-def]
    return [m for m in slack.workspace.channel(channel).messages if ":alarm_clock:" in m.text
            or "Status update reminder" in m.text]  # fmt: skip


def buttons(message) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["text"]["text"] for b in message.blocks if b["type"] == "actions"
            for e in b["elements"]]  # fmt: skip


def outcome(message) -> str:  # type: ignore[no-untyped-def]
    return next(b["elements"][0]["text"] for b in message.blocks if b["type"] == "context")


def test_reminders_fire_on_cadence_snooze_dismiss_and_stop_after_an_update(engine):
    with moving_clock(T0) as clock, running_bot(engine) as (bot, slack):
        ws = slack.workspace
        alice, bob = ws.user("alice").id, ws.user("bob").id
        reply(slack.driver.slash_command("declare sev2 RPC p99 latency above 2s", user="alice"))
        name = channel_of(engine)
        settled(engine)
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            declared, commander = inc.declared_at, inc.commander
        assert commander == alice

        # SEV2 expects an update every 30 minutes: nothing at 29.
        clock.set(declared + 29 * MIN)
        tick(bot)
        assert reminders(slack, name) == []

        clock.set(declared + 31 * MIN)
        tick(bot)
        [first] = reminders(slack, name)
        assert first.text == (
            f":alarm_clock: <@{alice}>: *INC-1* has had no status update for 31m (SEV2 expects "
            "one every 30m). Post one with `/incident update &lt;what changed&gt;`."
        )  # escaped, Slack shows `<what changed>`; raw, it would read it as a link and drop it
        assert buttons(first) == ["Snooze 15m", "Snooze 1h", "Dismiss until the next update"]
        tick(bot)  # a second pass in the same minute sends nothing more
        clock.advance(20 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 1

        # Bob snoozes it for 15 minutes: the buttons become who snoozed it until when.
        # Answered once recorded; the message shows it after.
        with held_until_answered(slack, "chat.update", bot):
            ack = slack.driver.block_action("reminder_snooze_15", user="bob", channel=name,
                                            message_ts=first.ts)  # fmt: skip
            assert ack.ok, ack
        wait_for(lambda: not buttons(reminders(slack, name)[0]), what="the snooze shown")
        snoozed_at = clock()
        assert outcome(reminders(slack, name)[0]).startswith(f":zzz: Snoozed by <@{bob}> for 15m")
        clock.set(snoozed_at + 14 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 1
        clock.set(snoozed_at + 16 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 2
        second = reminders(slack, name)[1]
        second_value = second.blocks[-1]["elements"][1]["value"]
        cleared_in = ws.channel(name).id
        assert "has had no status update for 1h" in second.text

        # An update resets the count: the last reminder's buttons go, no reminder for 30m.
        updated_at = clock()
        reply(slack.driver.slash_command("update Failed over to the backup provider",
                                         user="alice", channel=name))  # fmt: skip
        settled(engine)
        clock.advance(MIN)  # the next minute's check
        tick(bot)
        cleared = reminders(slack, name)[1]
        assert cleared.text.startswith(
            ":white_check_mark: Status update reminder: an update was posted at Tue 07 May 15:"
        )
        assert not buttons(cleared)
        # A click on a copy of its buttons (a second client that had not refreshed) is moot now
        # and says so, changing nothing.
        moot = ReminderCommands(bot.settings, engine, bot.chat).click(
            action_id="reminder_snooze_60", user=bob, value=second_value, channel_id=cleared_in,
            message_ts=second.ts, message=None,
        )  # fmt: skip
        assert moot == (
            "Nothing was changed: this reminder no longer applies: an update was posted since."
        )
        clock.set(updated_at + 29 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 2
        clock.set(updated_at + 31 * MIN)
        tick(bot)
        third = reminders(slack, name)[2]
        third_value = third.blocks[-1]["elements"][2]["value"]
        assert re.search(r"has had no status update for 3[01]m \(SEV2", third.text), third.text

        # Dismissed: nothing more until the next update, however long it takes.
        slack.driver.block_action("reminder_dismiss", user="alice", channel=name,
                                  message_ts=third.ts)  # fmt: skip
        wait_for(lambda: not buttons(reminders(slack, name)[2]), what="the dismissal shown")
        assert outcome(reminders(slack, name)[2]) == (
            f":no_bell: Dismissed by <@{alice}>: no more reminders until the next status update."
        )
        # A double click (landing after the update of the message) finds it decided.
        again = ReminderCommands(bot.settings, engine, bot.chat).click(
            action_id="reminder_dismiss", user=bob, value=third_value, channel_id=cleared_in,
            message_ts=third.ts, message=None,
        )  # fmt: skip
        assert again is not None and again.startswith("Already decided: :no_bell: Dismissed")
        clock.advance(5 * 60 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 3

        # Resolved incidents are not reminded of.
        reply(slack.driver.slash_command("update Still stable", user="alice", channel=name))
        settled(engine)
        reply(slack.driver.slash_command("resolve Provider failover held", user="alice",
                                         channel=name))  # fmt: skip
        settled(engine)
        clock.advance(3 * 60 * MIN)
        tick(bot)
        assert len(reminders(slack, name)) == 3
        with engine.connect() as conn:
            outcomes = set(conn.execute(text(
                "SELECT outcome FROM scheduler_run WHERE job = 'reminders.status'"
            )).scalars())  # fmt: skip
        assert "ok" in outcomes and "failed" not in outcomes
        assert_spec_conformance(slack)
