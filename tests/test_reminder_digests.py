"""The daily and weekly reminders (stale incidents, postmortems due and overdue, overdue action
items) on a controllable clock, fired by the bot's own scheduler at their slots and posted to
the local Slack server over real sockets; and bad ``reminders`` settings refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.postmortems import lifecycle, publish
from incidentbot.reminders.digests import Digests
from tests.clock_support import moving_clock, tick
from tests.slack_harness import channel_of, running_bot, settled, wait_for

MIN = timedelta(minutes=1)
QUIET = {"status_updates": False}  # only the digests under test write in the channels


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def at(clock, bot, when: datetime) -> None:  # type: ignore[no-untyped-def]
    """Move the clock to ``when`` and let the bot's scheduler fire what is due."""
    clock.set(when)
    tick(bot)


def said(slack, channel: str, marker: str) -> list:  # type: ignore[no-untyped-def]
    return [m for m in slack.workspace.channel(channel).messages if marker in m.text]


def texts(slack, channel: str, marker: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in said(slack, channel, marker)]


def buttons(message) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["text"]["text"] for b in message.blocks if b["type"] == "actions"
            for e in b["elements"]]  # fmt: skip


def outcome(message) -> str:  # type: ignore[no-untyped-def]
    return next(b["elements"][0]["text"] for b in message.blocks if b["type"] == "context")


def declare_in_slack(slack, engine, ref: str, what: str, user: str) -> str:  # type: ignore[no-untyped-def]
    """Declare through the slash command; return the incident channel's name."""
    slack.driver.slash_command(f"declare {what}", user=user)
    name = channel_of(engine, ref)
    settled(engine)
    return name


def resolve_in_slack(slack, engine, channel: str, summary: str, user: str) -> None:  # type: ignore[no-untyped-def]
    slack.driver.slash_command(f"resolve {summary}", user=user, channel=channel)
    settled(engine)


# -- stale incidents ---------------------------------------------------------------------------


def test_stale_incidents_remind_the_commander_each_weekday_until_dismissed(engine):
    with (
        moving_clock(utc(2024, 4, 29, 9, 0)) as clock,
        running_bot(engine, reminders=QUIET) as (bot, slack),
    ):
        ws = slack.workspace
        alice, bob, carol = (ws.user(n).id for n in ("alice", "bob", "carol"))
        # Monday 29 April: one incident that stays open, one resolved the same morning.
        old = declare_in_slack(slack, engine, "INC-1", "sev3 Archive node disk at 91%", "bob")
        clock.advance(5 * MIN)
        done = declare_in_slack(slack, engine, "INC-2", "sev3 Indexer replay stuck", "alice")
        resolve_in_slack(slack, engine, done, "Replayed from snapshot", "alice")
        # Friday 3 May at noon: a younger one, stale from Friday 10 May at noon.
        clock.set(utc(2024, 5, 3, 12, 0))
        young = declare_in_slack(slack, engine, "INC-3", "sev3 Validator missed attestations",
                                 "carol")  # fmt: skip

        def day(n: int) -> tuple[int, int, int]:
            """The 10:00 UTC slot of ``n`` May 2024: stale reminders in each channel so far."""
            at(clock, bot, utc(2024, 5, n, 10, 0, 5))
            return tuple(len(said(slack, c, ":hourglass:")) for c in (old, done, young))  # type: ignore[return-value]

        at(clock, bot, utc(2024, 5, 6, 9, 59))  # Monday 6 May, before the slot
        assert len(said(slack, old, ":hourglass:")) == 0
        assert day(6) == (1, 0, 0)
        [first] = said(slack, old, ":hourglass:")
        assert first.text == (
            f":hourglass: <@{bob}>: *INC-1* has been open for 7d 1h (declared Mon 29 Apr 09:00 "
            "UTC). If it is over, `/incident resolve &lt;summary&gt;`; if not, post a status "
            "update."  # Slack shows `<summary>`
        )
        assert buttons(first) == ["Stop reminding for this incident"]
        # The same day again: a later pass, and a rerun of the job (a second bot), send nothing.
        at(clock, bot, utc(2024, 5, 6, 15, 0))
        assert Digests(bot.settings, engine, bot.chat).stale() == 0
        assert len(said(slack, old, ":hourglass:")) == 1

        # One a weekday; Friday 10:00 is two hours early for INC-3; none on the weekend.
        assert [day(n) for n in (7, 8, 9, 10, 11, 12)] == [
            (2, 0, 0), (3, 0, 0), (4, 0, 0), (5, 0, 0), (5, 0, 0), (5, 0, 0)
        ]  # fmt: skip
        assert day(13) == (6, 0, 1)
        spans = [t.split(" has been open for ")[1].split(" (")[0]
                 for t in texts(slack, old, ":hourglass:")]  # fmt: skip
        assert spans == ["7d 1h", "8d 1h", "9d 1h", "10d 1h", "11d 1h", "14d 1h"]
        assert texts(slack, young, ":hourglass:")[0].startswith(
            f":hourglass: <@{carol}>: *INC-3* has been open for 9d 22h (declared Fri 03 May 12:00"
        )

        # Alice stops the reminders of INC-1: the button becomes who did it; INC-3 goes on.
        latest = said(slack, old, ":hourglass:")[-1]
        slack.driver.block_action("reminder_dismiss", user="alice", channel=old,
                                  message_ts=latest.ts)  # fmt: skip
        wait_for(lambda: not buttons(said(slack, old, ":hourglass:")[-1]), what="the dismissal")
        assert outcome(said(slack, old, ":hourglass:")[-1]) == (
            f":no_bell: Dismissed by <@{alice}>: no more reminders of this."
        )
        assert day(14) == (6, 0, 2)
        assert day(15) == (6, 0, 3)


# -- postmortems -------------------------------------------------------------------------------


def resolved_sev2(bot, title: str, commander: str, declared: datetime) -> str:  # type: ignore[no-untyped-def]
    """An incident declared (without a channel) and resolved an hour later; its ref."""
    with db.transaction(bot.engine) as s:
        inc = svc.declare(s, bot.settings, title=title, severity="SEV2", actor=commander,
                          now=declared)  # fmt: skip
        svc.resolve(s, bot.settings, inc.ref, "Fixed", actor=commander,
                    now=declared + timedelta(hours=1))  # fmt: skip
        return inc.ref


def test_postmortem_reminders_before_the_due_date_and_while_overdue(engine, tmp_path):
    with (
        moving_clock(utc(2024, 5, 9, 9, 0)) as clock,
        running_bot(engine, reminders=QUIET, data_dir=tmp_path) as (bot, slack),
    ):
        ws = slack.workspace
        carol, dave, erin = (ws.user(n).id for n in ("carol", "dave", "erin"))
        # Resolved Thursday 9 May in Slack: due five business days later, Thursday 16 May.
        rpc = declare_in_slack(slack, engine, "INC-1", "sev2 RPC 5xx on eth-mainnet", "carol")
        clock.advance(30 * MIN)
        resolve_in_slack(slack, engine, rpc, "Rolled back the HAProxy config", "carol")
        # Without a channel (their reminders go to #incidents): resolved Monday 6 May (due
        # Monday 13 May) with Erin as owner and in review; resolved Monday 13 May (due Monday
        # 20 May); a SEV3 needs no postmortem.
        late = resolved_sev2(bot, "Validator missed attestations", dave, utc(2024, 5, 6, 8, 0))
        later = resolved_sev2(bot, "Indexer lag", dave, utc(2024, 5, 13, 8, 0))
        with db.transaction(engine) as s:
            inc = svc.get(s, late)
            lifecycle.set_owner(s, bot.settings, inc, erin, actor=dave, now=clock())
            lifecycle.change_status(s, bot.settings, inc, "in_review", actor=dave, now=clock())
            minor = svc.declare(s, bot.settings, title="Docs site slow", severity="SEV3",
                                actor=dave, now=utc(2024, 5, 6, 8, 0))  # fmt: skip
            svc.resolve(s, bot.settings, minor.ref, "CDN purge", actor=dave, now=clock())
        assert (late, later) == ("INC-2", "INC-3")

        def heads(new: tuple[list[str], list[str]]) -> tuple[list[str], ...]:
            return tuple([t.split(" (")[0] for t in got] for got in new)

        def day(n: int) -> tuple[list[str], list[str]]:
            """New postmortem reminders at the 10:00 slot of ``n`` May: (#rpc, #incidents)."""
            before = [len(said(slack, c, "the postmortem of")) for c in (rpc, "incidents")]
            at(clock, bot, utc(2024, 5, n, 10, 0, 5))
            return texts(slack, rpc, "the postmortem of")[before[0]:], \
                texts(slack, "incidents", "the postmortem of")[before[1]:]  # fmt: skip

        # Tuesday 14 May: INC-1 due in two days (nothing yet), INC-2 a day late.
        assert day(14) == ([], [
            f":rotating_light: <@{erin}>: the postmortem of *INC-2* is overdue by 1 day (it was "
            "due Mon 13 May). It is in review: `/incident postmortem` shows it."
        ])  # fmt: skip
        # Wednesday 15 May: INC-1 due tomorrow, to its commander (the owner by default); INC-3,
        # due in five days, not yet.
        assert day(15) == (
            [f":memo: <@{carol}>: the postmortem of *INC-1* is due tomorrow (Thu 16 May). It is "
             "still a draft: `/incident postmortem` shows it."],
            [f":rotating_light: <@{erin}>: the postmortem of *INC-2* is overdue by 2 days (it "
             "was due Mon 13 May). It is in review: `/incident postmortem` shows it."],
        )  # fmt: skip
        # Published that afternoon: no more reminders of INC-2.
        clock.set(utc(2024, 5, 15, 15, 0))
        with db.transaction(engine) as s:
            publish.publish(s, bot.settings, svc.get(s, late), actor=erin, now=clock())
        assert Digests(bot.settings, engine, bot.chat).postmortems() == 0
        assert day(16) == (
            [f":memo: <@{carol}>: the postmortem of *INC-1* is due today (Thu 16 May). It is "
             "still a draft: `/incident postmortem` shows it."],
            [],
        )  # fmt: skip
        # Overdue from the next day on, every weekday; INC-3 is due on Monday 20 May.
        assert heads(day(17)) == ([f":rotating_light: <@{carol}>: the postmortem of *INC-1* is "
                                   "overdue by 1 day"], [])  # fmt: skip
        assert heads(day(20)) == (
            [f":rotating_light: <@{carol}>: the postmortem of *INC-1* is overdue by 4 days"],
            [f":memo: <@{dave}>: the postmortem of *INC-3* is due today"],
        )
        assert day(20) == ([], [])  # the same slot again: nothing
        # INC-1 is reopened: its postmortem waits while it is worked on again.
        with db.transaction(engine) as s:
            svc.reopen(s, bot.settings, "INC-1", actor=carol, now=clock())
        assert heads(day(21)) == (
            [],
            [f":rotating_light: <@{dave}>: the postmortem of *INC-3* is overdue by 1 day"],
        )


# -- overdue action items, weekly --------------------------------------------------------------


def test_weekly_overdue_action_items_by_dm_and_in_the_digest_channel(engine):
    # Monday 15 January 2024, 09:00 in Berlin (CET, UTC+1) is 08:00 UTC.
    with (
        moving_clock(utc(2024, 1, 2, 10, 0)) as clock,
        running_bot(engine, reminders=QUIET, timezone="Europe/Berlin") as (bot, slack),
    ):
        ws = slack.workspace
        alice, bob, carol, dave = (ws.user(n).id for n in ("alice", "bob", "carol", "dave"))
        st, now = bot.settings, clock()

        def jan(n: int) -> date:
            return date(2024, 1, n)

        with db.transaction(engine) as s:
            rpc = svc.declare(s, st, title="Public RPC 5xx", severity="SEV3", actor=alice, now=now)
            val = svc.declare(s, st, title="Validator missed attestations", severity="SEV3",
                              actor=alice, now=now)  # fmt: skip
            for inc, text, owner, due in [
                (rpc, "Alert on HAProxy reload errors", bob, jan(10)),
                (rpc, "Canary HAProxy config changes", carol, jan(14)),
                (rpc, "Write the failover runbook", None, jan(9)),
                (rpc, "Review <LB> timeouts & retries", "the <!here> platform team", jan(11)),
                (rpc, "Upgrade HAProxy", bob, jan(15)),  # due today: not overdue
                (rpc, "Rotate the TLS certificate", carol, jan(10)),  # done below
                (rpc, "Document the rollback", dave, None),  # no due date
                (val, "Add a disk usage alert", bob, jan(12)),
            ]:
                items.add(s, st, inc, text, actor=alice, owner=owner, due=due, now=now)
            items.done(s, st, 6, actor=carol, now=utc(2024, 1, 12, 9, 0))

        def dms() -> dict[str, list[str]]:
            return {c.im_user: [m.text for m in c.messages]
                    for c in list(ws.channels.values()) if c.is_im and c.messages}  # fmt: skip

        def digests() -> list[str]:
            return texts(slack, "incidents", "*Overdue action items*")

        at(clock, bot, utc(2024, 1, 15, 7, 59))  # 08:59 in Berlin
        assert dms() == {} and digests() == []

        at(clock, bot, utc(2024, 1, 15, 8, 0, 5))
        hint = (
            "Mark one done with `/incident action done &lt;id&gt;`, or close one that "
            "will not be done with `/incident action wontdo &lt;id&gt; &lt;reason&gt;`."
        )
        # Slack shows `<id>`: escaped, it is not taken for a link
        assert dms() == {
            bob: ["\n".join([
                ":clipboard: You have 2 overdue action items:",
                "• #1 INC-1: Alert on HAProxy reload errors (due Wed 10 Jan, 5 days overdue)",
                "• #8 INC-2: Add a disk usage alert (due Fri 12 Jan, 3 days overdue)",
                hint,
            ])],
            carol: ["\n".join([
                ":clipboard: You have 1 overdue action item:",
                "• #2 INC-1: Canary HAProxy config changes (due Sun 14 Jan, 1 day overdue)",
                hint,
            ])],
        }  # fmt: skip
        # Everyone's, by owner (most first, nobody's last); typed text is shown, not interpreted.
        assert digests() == ["\n".join([
            ":clipboard: *Overdue action items*: 5, by owner",
            f"*<@{bob}>* (2)",
            "• #1 INC-1: Alert on HAProxy reload errors (due Wed 10 Jan, 5 days overdue)",
            "• #8 INC-2: Add a disk usage alert (due Fri 12 Jan, 3 days overdue)",
            f"*<@{carol}>* (1)",
            "• #2 INC-1: Canary HAProxy config changes (due Sun 14 Jan, 1 day overdue)",
            "*the &lt;!here&gt; platform team* (1)",
            "• #4 INC-1: Review &lt;LB&gt; timeouts &amp; retries (due Thu 11 Jan, 4 days overdue)",
            "*No owner* (1)",
            "• #3 INC-1: Write the failover runbook (due Tue 09 Jan, 6 days overdue)",
        ])]  # fmt: skip

        # Later that day and on Tuesday at 09:00 in Berlin: nothing more.
        at(clock, bot, utc(2024, 1, 15, 14, 0))
        at(clock, bot, utc(2024, 1, 16, 8, 0, 5))
        assert [len(v) for v in dms().values()] == [1, 1] and len(digests()) == 1


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ({"snooze": ["5m", "15m", "1h", "4h"]}, "reminders.snooze",
         "give one to three snooze durations, e.g. [15m, 1h]"),
        ({"snooze": ["0s"]}, "reminders.snooze", "is not between 1m and 1d"),
        ({"stale_after": "10m"}, "reminders.stale_after", "stale_after must be at least 1h"),
        ({"postmortem_due_soon": 31}, "reminders.postmortem_due_soon",
         "less than or equal to 30"),
        ({"channel": " # "}, "reminders.channel", "channel is empty"),
        ({"stale_afer": "7d"}, "reminders.stale_afer", "Extra inputs are not permitted"),
    ],
    ids=["four-snoozes", "zero-snooze", "stale-10m", "due-soon-31", "empty-channel", "typo"],
)  # fmt: skip
def test_bad_reminder_settings_are_refused_naming_the_field(section, field, message):
    with pytest.raises(ValidationError) as info:
        Settings(reminders=section)
    assert field in str(info.value) and message in str(info.value)


def test_the_weekly_digest_names_people_and_leaves_out_private_incidents(engine):
    """Owners Slack knows are mentioned (a CLI user too, through the people settings), people
    Slack does not know are named, a mention typed in an item shows the person's name, never
    their Slack id; items of a private incident reach their owner only, not the shared channel."""
    from incidentbot.people.lookup import remember
    from incidentbot.sandbox.slack.workspace import SEED_EMAIL_DOMAIN

    people = [
        {"name": "Bob Okafor", "email": f"bob@{SEED_EMAIL_DOMAIN}", "cli": ["bokafor"]},
        {"name": "Dana Reyes", "email": "dana@elsewhere.example", "cli": ["dana"]},
    ]
    with (
        moving_clock(utc(2024, 1, 2, 10, 0)) as clock,
        running_bot(engine, reminders=QUIET, people=people) as (bot, slack),
    ):
        ws = slack.workspace
        alice, bob, carol = (ws.user(n) for n in ("alice", "bob", "carol"))
        st, now = bot.settings, clock()
        with db.transaction(engine) as s:
            for user in (bob, carol):  # cached from Slack, as the bot does when it sees them
                remember(s, user.id, user.name, user.real_name, user.email, now=now)
            rpc = svc.declare(s, st, title="Public RPC 5xx", severity="SEV3", actor=alice.id,
                              now=now)  # fmt: skip
            key = svc.declare(s, st, title="Signer key exposure", severity="SEV1",
                              actor=alice.id, now=now, private=True)  # fmt: skip
            for inc, text, owner in [
                (rpc, "Alert on HAProxy reload errors", "bokafor"),
                (rpc, f"Pair with <@{carol.id}> on the failover drill", "dana"),
                (key, "Rotate the exposed signer key", bob.id),
            ]:
                items.add(s, st, inc, text, actor=alice.id, owner=owner,
                          due=date(2024, 1, 10), now=now)  # fmt: skip

        at(clock, bot, utc(2024, 1, 15, 9, 0, 5))
        digest = texts(slack, "incidents", "*Overdue action items*")
        assert digest == ["\n".join([
            ":clipboard: *Overdue action items*: 2, by owner",
            f"*<@{bob.id}>* (1)",
            "• #1 INC-1: Alert on HAProxy reload errors (due Wed 10 Jan, 5 days overdue)",
            "*Dana Reyes* (1)",
            "• #2 INC-1: Pair with @Carol Nguyen on the failover drill (due Wed 10 Jan, 5 days "
            "overdue)",
        ])]  # fmt: skip
        assert carol.id not in digest[0] and "INC-2" not in digest[0]
        assert "Rotate the exposed signer key" not in digest[0]
        # Bob, owner as the CLI user bokafor and as himself, gets one message with both.
        dm = [c for c in ws.channels.values() if c.is_im and c.im_user == bob.id]
        assert [m.text.splitlines()[:3] for m in dm[0].messages] == [[
            ":clipboard: You have 2 overdue action items:",
            "• #1 INC-1: Alert on HAProxy reload errors (due Wed 10 Jan, 5 days overdue)",
            "• #3 INC-2: Rotate the exposed signer key (due Wed 10 Jan, 5 days overdue)",
        ]]  # fmt: skip
