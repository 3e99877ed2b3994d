"""Handoffs posted by the bot's own scheduler, on a controllable clock, through the local Slack
and PagerDuty servers over real sockets: at the cron slot for a realistic shift (exactly once),
at each PagerDuty shift change, the acknowledgement reminder, and a restart in the middle of it
all that loses nothing (jobs, snoozes, pending reminders)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text

from incidentbot.bot import Bot
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.clock_support import moving_clock, tick
from tests.runbook_procs import BotProcess
from tests.slack_harness import assert_spec_conformance, channel_of, settled, wait_for
from tests.test_handoff import (
    HANDOFF,
    NOW,
    Clock,
    expected,
    rotation_config,
    schedule_id,
    seed_shift,
)

MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


class Bots:
    """Local Slack and PagerDuty servers that outlive the bots started against them, so a
    test can stop a bot and start another one on the same database (a restart)."""

    def __init__(self, engine, settings: Settings, slack: SlackSandbox):  # type: ignore[no-untyped-def]
        self.engine, self.settings, self.slack = engine, settings, slack
        self.bot: Bot | None = None

    def start(self) -> Bot:
        assert self.bot is None
        bot = Bot.build(self.settings, self.engine, poll=0.1)
        self.slack.driver.bot_url = bot.start_http() + "/slack/events"
        bot.start_workers()
        self.bot = bot
        return bot

    def stop(self) -> None:
        if self.bot is not None:
            self.bot.stop()
            self.bot = None


@contextmanager
def bots(engine, tmp_path, **rotation) -> Iterator[Bots]:  # type: ignore[no-untyped-def]
    with PagerDutySandbox() as pd, SlackSandbox() as slack:
        d = pd.describe()
        config = rotation_config(schedule_id(pd))
        config["rotations"][0].update(rotation)
        settings = Settings(
            data_dir=tmp_path / "data",
            slack_bot_token=slack.bot_token,
            slack_signing_secret=slack.signing_secret,
            slack={"api_url": slack.base_url},
            pagerduty={"api_url": d["rest_url"], "ca_file": d["ca_file"],
                       "from_email": "alice@nodeworks.example"},
            pagerduty_api_token=d["api_token"],
            handoff=config,
        )  # fmt: skip
        ws = slack.workspace
        members = [ws.user(h).id for h in ("alice", "bob", "carol")] + [ws.bot.id]
        ws.add_channel("oncall-rpc", creator=members[0], members=members)
        b = Bots(engine, settings, slack)
        try:
            yield b
        finally:
            b.stop()


def handoffs(slack) -> list:  # type: ignore[no-untyped-def]
    return [m for m in slack.workspace.channel("oncall-rpc").messages if m.blocks]


def ack_reminders(slack) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in slack.workspace.channel("oncall-rpc").messages if ":bell:" in m.text]


def rows(engine, sql: str) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def seed(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    c = Clock(NOW)
    set_clock(c)
    try:
        seed_shift(engine, settings, c)
    finally:
        set_clock(None)


def test_the_handoff_is_posted_at_its_slot_once_and_the_incoming_is_reminded(engine, tmp_path):
    with bots(engine, tmp_path) as b:
        seed(engine, b.settings)
        ws = b.slack.workspace
        carol, bob = ws.user("carol").id, ws.user("bob").id
        with moving_clock(HANDOFF - 2 * MIN) as clock:
            bot = b.start()
            tick(bot)
            assert handoffs(b.slack) == []

            # Monday 09:00: the week's handoff, exactly as the shift was.
            clock.set(HANDOFF + 5 * SEC)
            tick(bot)
            [message] = handoffs(b.slack)
            assert message.text == expected(f"<@{carol}>", f"<@{bob}>")
            assert message.blocks[-1]["elements"][0]["text"]["text"] == "Acknowledge handoff"
            clock.advance(2 * MIN)
            tick(bot)
            assert len(handoffs(b.slack)) == 1

            # Asked for by hand as well: a copy, but still one handoff on record.
            b.slack.driver.slash_command("handoff", user="carol", channel="incidents")
            wait_for(lambda: len(handoffs(b.slack)) == 2, what="the copy")
            assert rows(engine, "SELECT rotation, message_ts FROM handoff_post") == [
                ("rpc", message.ts)
            ]

            # Twenty minutes without an acknowledgement: Bob is reminded, once.
            clock.set(HANDOFF + 19 * MIN)
            tick(bot)
            assert ack_reminders(b.slack) == []
            clock.set(HANDOFF + 21 * MIN)
            tick(bot)
            clock.advance(3 * MIN)
            tick(bot)
            [reminder] = ack_reminders(b.slack)
            link = re.search(r"<(https?://[^|>]+)\|handoff>", reminder)
            assert link is not None, reminder
            assert reminder == (
                f":bell: <@{bob}>: the *rpc* <{link.group(1)}|handoff> of Mon 06 May 09:00 UTC "
                "is not acknowledged yet. Read it and press *Acknowledge handoff*."
            )
            assert message.ts.replace(".", "") in link.group(1)
            outcomes = rows(engine, "SELECT job, slot, outcome FROM scheduler_run "
                                    "WHERE job = 'handoff.rpc'")  # fmt: skip
            assert [(job, outcome) for job, _, outcome in outcomes] == [("handoff.rpc", "ok")]
            assert str(outcomes[0][1]).startswith("2024-05-06 09:00:00")  # its slot
            assert_spec_conformance(b.slack)


def test_an_acknowledged_handoff_is_not_reminded_of(engine, tmp_path):
    with bots(engine, tmp_path) as b, moving_clock(HANDOFF + 5 * SEC) as clock:
        bot = b.start()
        tick(bot)
        [message] = handoffs(b.slack)
        b.slack.driver.block_action("handoff_ack", user="bob", channel="oncall-rpc",
                                    message_ts=message.ts)  # fmt: skip
        wait_for(lambda: handoffs(b.slack)[0].blocks[-1]["type"] == "context", what="the ack")
        clock.advance(45 * MIN)
        tick(bot)
        assert ack_reminders(b.slack) == []


# The shift changes PagerDuty reports, not storage: one back end (the scheduler's claims on
# both are the other tests'). Each jump of days makes the scheduler record the slots it missed,
# thousands of rows, which is most of this test's time.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_at_each_shift_change_of_the_schedule(engine, tmp_path):
    with bots(engine, tmp_path, shift_change=True, cron="0 12 * * FRI") as b:
        ws = b.slack.workspace
        carol, bob = ws.user("carol").id, ws.user("bob").id
        # Switched on in the middle of a shift: that shift's handoff is long past.
        with moving_clock(HANDOFF - timedelta(days=2)) as clock:
            bot = b.start()
            tick(bot)
            assert handoffs(b.slack) == []
            # The schedule hands over on Monday at 09:00 (not on the Friday cron).
            clock.set(HANDOFF + 30 * SEC)
            tick(bot)
            [first] = handoffs(b.slack)
            assert first.text.splitlines()[1].startswith(
                "Shift Mon 29 Apr 09:00 UTC → Mon 06 May 09:00 UTC"
            )
            assert f"*Outgoing:* <@{carol}>  →  *Incoming:* <@{bob}>" in first.text
            for later in (MIN, 2 * MIN, timedelta(days=3)):
                clock.set(HANDOFF + 30 * SEC + later)
                tick(bot)
            assert len(handoffs(b.slack)) == 1
            # A week later Bob hands over to Carol.
            clock.set(HANDOFF + timedelta(days=7, seconds=40))
            tick(bot)
            second = handoffs(b.slack)[1]
            assert second.text.splitlines()[1].startswith(
                "Shift Mon 06 May 09:00 UTC → Mon 13 May 09:00 UTC"
            )
            assert f"*Outgoing:* <@{bob}>  →  *Incoming:* <@{carol}>" in second.text


def test_a_restart_loses_no_job_snooze_or_pending_reminder(engine, tmp_path):
    with bots(engine, tmp_path) as b, moving_clock(HANDOFF - 60 * MIN) as clock:
        slack = b.slack
        ws = slack.workspace
        bob = ws.user("bob").id
        bot = b.start()
        # 08:00 a SEV2 (update every 30 minutes); its first reminder is snoozed for an hour.
        slack.driver.slash_command("declare sev2 Indexer lagging", user="alice")
        name = channel_of(engine)
        settled(engine)
        clock.set(HANDOFF - 28 * MIN)
        tick(bot)
        [first] = [m for m in ws.channel(name).messages if ":alarm_clock:" in m.text]
        slack.driver.block_action("reminder_snooze_60", user="bob", channel=name,
                                  message_ts=first.ts)  # fmt: skip
        wait_for(lambda: first.blocks[-1]["type"] == "context", what="the snooze")
        snoozed_until = clock() + 60 * MIN

        # The bot stops at 08:40 and is down over the 09:00 handoff.
        clock.set(HANDOFF - 20 * MIN)
        b.stop()
        clock.set(HANDOFF + 10 * MIN)
        bot = b.start()
        tick(bot)
        # The missed handoff is posted on start (within its hour of grace), once.
        [message] = handoffs(slack)
        assert "Mon 06 May 09:00 UTC" in message.text
        # The snooze held: no status reminder before its end.
        reminders = lambda: [m for m in ws.channel(name).messages if ":alarm_clock:" in m.text]  # noqa: E731
        assert len(reminders()) == 1
        clock.set(snoozed_until - MIN)
        tick(bot)
        assert len(reminders()) == 1

        # Stopped again with the acknowledgement reminder pending (due 09:30).
        b.stop()
        clock.set(snoozed_until + 2 * MIN)
        bot = b.start()
        tick(bot)
        assert len(reminders()) == 2  # the snooze ended while the bot was down
        [pending] = ack_reminders(slack)  # the acknowledgement reminder came due meanwhile
        assert pending.startswith(f":bell: <@{bob}>: the *rpc* <")
        # Nothing is sent twice by a third start.
        b.stop()
        clock.advance(MIN)
        bot = b.start()
        tick(bot)
        assert (len(handoffs(slack)), len(reminders()), len(ack_reminders(slack))) == (1, 2, 1)
        claimed = rows(engine, "SELECT claimed_by, outcome FROM scheduler_run "
                               "WHERE job = 'handoff.rpc'")  # fmt: skip
        assert len(claimed) == 1 and claimed[0][1] == "ok"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_serve_runs_the_scheduler_on_one_replica_and_another_takes_over(
    engine, database_url, tmp_path
):
    """Two `incidentbot serve` replicas: one runs the scheduled jobs; SIGKILLed, the other
    takes over within seconds, and no slot runs twice."""
    every_second = json.dumps({"jobs": [{"name": "reminders.status", "every": 1}]})

    def ok_runs() -> list[tuple[str, str]]:
        return rows(engine, "SELECT claimed_by, outcome FROM scheduler_run "
                            "WHERE job = 'reminders.status' AND outcome = 'ok'")  # fmt: skip

    with SlackSandbox() as slack:
        procs = [
            BotProcess(database_url, tmp_path / f"bot-{n}.log", slack=slack, runbook_dirs=[],
                       extra_env={"INCIDENTBOT_SCHEDULER": every_second})
            for n in (1, 2)
        ]  # fmt: skip
        try:
            for proc in procs:
                proc.wait_listening()
            wait_for(lambda: len(ok_runs()) >= 3, what="the status check every second")
            leaders = {who for who, _ in ok_runs()}
            assert len(leaders) == 1, leaders
            [leader] = leaders
            pid = int(leader.rsplit(":", 1)[1])
            dead = next(p for p in procs if p.proc.pid == pid)
            dead.kill()
            survivor = next(p for p in procs if p is not dead)
            wait_for(lambda: any(who != leader for who, _ in ok_runs()), what="the takeover")
            others = {who for who, _ in ok_runs()} - {leader}
            assert [who.rsplit(":", 1)[1] for who in others] == [str(survivor.proc.pid)]
            slots = rows(engine, "SELECT slot, count(*) FROM scheduler_run "
                                 "WHERE job = 'reminders.status' GROUP BY slot "
                                 "HAVING count(*) > 1")  # fmt: skip
            assert slots == []
        finally:
            for proc in procs:
                proc.kill()


def test_secrets_in_watch_notes_and_action_items_do_not_reach_the_handoff(engine, tmp_path):
    key = "AbCdEf0123456789AbCdEf0123456789"
    with bots(engine, tmp_path) as b, moving_clock(HANDOFF - timedelta(days=1)) as clock:
        bot = b.start()
        b.slack.driver.slash_command(
            f"handoff note fall back to https://eth-mainnet.g.alchemy.com/v2/{key} if needed",
            user="carol",
            channel="oncall-rpc",
        )
        b.slack.driver.slash_command("declare sev3 Archive node slow", user="alice")
        name = channel_of(engine)
        settled(engine)
        b.slack.driver.slash_command(
            f"action add Rotate https://mainnet.infura.io/v3/{key.lower()} due:2024-05-05",
            user="alice",
            channel=name,
        )
        settled(engine)
        clock.set(HANDOFF + 5 * SEC)
        tick(bot)
        [message] = handoffs(b.slack)
        assert "• fall back to https://eth-mainnet.g.alchemy.com/v2/*** if needed" in message.text
        assert "Rotate https://mainnet.infura.io/v3/***" in message.text
        assert key not in message.text and key.lower() not in message.text
