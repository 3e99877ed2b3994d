"""The on-call handoff: a realistic shift rendered exactly, the CLI preview, and posting and
acknowledging it through the local Slack server with the local PagerDuty server giving who is
on call, over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from incidentbot import db
from incidentbot.action_items import service as items
from incidentbot.alerts import service as alerts
from incidentbot.clock import set_clock
from incidentbot.config import Settings
from incidentbot.handoff import notes
from incidentbot.handoff import service as handoff
from incidentbot.handoff.config import HandoffSettings
from incidentbot.incidents import service as svc
from incidentbot.pagerduty_adapter import PagerDutyPager, pager_for
from incidentbot.sandbox.pagerduty.server import PagerDutySandbox
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.slack.chat import SlackChat
from incidentbot.slack.grammar import Command, Usage, parse
from tests.slack_harness import held_until_answered, running_bot, wait_for
from tests.test_alerts_support import alert, notification

# Monday 6 May 2024, five seconds after the weekly 09:00 handoff. The local PagerDuty's
# "RPC primary" rotation hands over every Monday at 09:00 UTC: Carol had the week from 29 April,
# Bob has the week from 6 May.
HANDOFF = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
NOW = HANDOFF + timedelta(seconds=5)


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock(NOW)
    set_clock(c)
    try:
        yield c
    finally:
        set_clock(None)


def rotation_config(schedule_id: str, channel: str = "oncall-rpc") -> dict:
    return {
        "rotations": [
            {
                "name": "rpc",
                "schedule_id": schedule_id,
                "channel": channel,
                "cron": "0 9 * * MON",
                "timezone": "UTC",
                "ack_reminder_minutes": 20,
            }
        ]
    }


def schedule_id(pd: PagerDutySandbox, name: str = "RPC primary") -> str:
    return next(s["id"] for s in pd.describe()["schedules"] if s["name"] == name)


def pager(pd: PagerDutySandbox) -> PagerDutyPager:
    d = pd.describe()
    return PagerDutyPager(
        d["api_token"],
        from_email="alice@nodeworks.example",
        base_url=d["rest_url"],
        ca_file=d["ca_file"],
    )


def seed_shift(engine, settings: Settings, clock: Clock) -> None:
    """A week of the rpc rotation: incidents in and out of the window, follow-ups, alerts and
    watch notes, each written at the time it happened."""

    def at(when: datetime) -> datetime:
        clock.at = when
        return when

    with db.transaction(engine) as s:
        # Opened before the shift and still open.
        svc.declare(
            s,
            settings,
            title="Archive node disk at 91%",
            severity="SEV3",
            actor="U0ALICE01",
            now=at(datetime(2024, 4, 25, 12, 0, tzinfo=UTC)),
        )
        # Opened and resolved before the shift: not in this handoff.
        old = svc.declare(
            s,
            settings,
            title="Indexer replay stuck",
            severity="SEV3",
            actor="U0DAVE001",
            now=at(datetime(2024, 4, 20, 8, 0, tzinfo=UTC)),
        )
        svc.resolve(
            s,
            settings,
            old.ref,
            "Replayed from snapshot",
            actor="U0DAVE001",
            now=at(datetime(2024, 4, 22, 8, 0, tzinfo=UTC)),
        )
    with db.transaction(engine) as s:
        # Opened and resolved during the shift; it leaves follow-ups and a postmortem.
        inc = svc.declare(
            s,
            settings,
            title="Public RPC 5xx on eth-mainnet",
            severity="SEV1",
            actor="U0CAROL01",
            now=at(datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        )
        svc.resolve(
            s,
            settings,
            inc.ref,
            "Rolled back HAProxy config",
            actor="U0CAROL01",
            now=at(datetime(2024, 5, 1, 11, 10, tzinfo=UTC)),
        )
        items.add(
            s,
            settings,
            inc,
            "Alert on HAProxy reload errors",
            actor="U0CAROL01",
            owner="U0BOB0001",
            due=date(2024, 5, 3),
            now=clock.at,
        )
        items.add(
            s,
            settings,
            inc,
            "Canary HAProxy config changes",
            actor="U0CAROL01",
            due=date(2024, 5, 20),
            now=clock.at,
        )
    with db.transaction(engine) as s:
        # Opened during the shift, still open.
        inc = svc.declare(
            s,
            settings,
            title="Validator <missed> attestations",
            severity="SEV2",
            actor="U0CAROL01",
            now=at(datetime(2024, 5, 5, 22, 0, tzinfo=UTC)),
        )
        svc.set_status(
            s,
            settings,
            inc.ref,
            "monitoring",
            actor="U0CAROL01",
            now=at(datetime(2024, 5, 5, 23, 0, tzinfo=UTC)),
        )
    # Alerts: one before the shift (not counted), four during it in two groups.
    at(datetime(2024, 4, 28, 10, 0, tzinfo=UTC))
    alerts.ingest(
        engine, settings, notification([alert("NodeLagging", instance="n-0")], group="NodeLagging")
    )
    at(datetime(2024, 5, 2, 3, 0, tzinfo=UTC))
    rpc = [
        alert("RpcEndpointDown", instance=f"rpc-{n}:8545", starts_at=clock.at) for n in (1, 2, 3)
    ]
    alerts.ingest(engine, settings, notification(rpc))
    at(datetime(2024, 5, 3, 4, 0, tzinfo=UTC))
    alerts.ingest(
        engine,
        settings,
        notification(
            [alert("NodeLagging", instance="n-1", starts_at=clock.at)], group="NodeLagging"
        ),
    )
    with db.transaction(engine) as s:
        notes.add_note(
            s,
            "rpc",
            "old note from the week before",
            actor="U0DAVE001",
            now=datetime(2024, 4, 27, 9, 0, tzinfo=UTC),
            key="a",
        )
        notes.add_note(
            s,
            "rpc",
            "Watch eu-west RPC latency after the 14:00 <deploy>",
            actor="U0CAROL01",
            now=datetime(2024, 5, 4, 14, 0, tzinfo=UTC),
            key="b",
        )
        notes.add_note(
            s,
            "validators",
            "another rotation's note",
            actor="U0DAVE001",
            now=datetime(2024, 5, 4, 15, 0, tzinfo=UTC),
            key="c",
        )
    clock.at = NOW


def expected(outgoing: str, incoming: str) -> str:
    inc4 = (
        "• *INC-4* SEV2 · monitoring · open 11h 00m (new) · commander <@U0CAROL01> · "
        "Validator &lt;missed&gt; attestations"
    )
    return f"""\
:handshake: *On-call handoff: rpc*
Shift Mon 29 Apr 09:00 UTC → Mon 06 May 09:00 UTC (covered to Mon 06 May 09:00 UTC)
*Outgoing:* {outgoing}  →  *Incoming:* {incoming}

*Open incidents (2)*
• *INC-1* SEV3 · triage · open 10d 21h · commander <@U0ALICE01> · Archive node disk at 91%
{inc4}

*Resolved during the shift (1)*
• *INC-3* SEV1 · resolved Wed 01 May 11:10 UTC after 1h 10m · Public RPC 5xx on eth-mainnet

*Action items:* 2 open, 1 overdue
• :hourglass: #1 (INC-3) Alert on HAProxy reload errors · <@U0BOB0001> · due 2024-05-03

*Postmortems due (1)*
• *INC-3* due 2024-05-08 · draft · <@U0CAROL01> · Public RPC 5xx on eth-mainnet

*Alerts received:* 4 in 2 groups
• RpcEndpointDown: 3
• NodeLagging: 1

*Watch items (1)*
• Watch eu-west RPC latency after the 14:00 &lt;deploy&gt; (<@U0CAROL01>, Sat 04 May 14:00 UTC)
"""


def test_the_handoff_for_a_shift_is_rendered_exactly(engine, tmp_path, clock):
    with PagerDutySandbox() as pd, SlackSandbox() as slack_box:
        settings = Settings(data_dir=tmp_path / "data", handoff=rotation_config(schedule_id(pd)))
        seed_shift(engine, settings, clock)
        chat = SlackChat(slack_box.bot_token, base_url=slack_box.base_url)
        rotation = settings.handoff.rotation("rpc")
        h = handoff.build(engine, settings, rotation, pager=pager(pd), chat=chat)
        ws = slack_box.workspace
        carol, bob = ws.user("carol").id, ws.user("bob").id
        assert [p.email for p in h.outgoing] == ["carol@nodeworks.example"]
        assert h.incoming_ids == [bob]
        assert handoff.render(h) == expected(f"<@{carol}>", f"<@{bob}>")

        # Without Slack, people show by name; without PagerDuty, the message says so.
        h = handoff.build(engine, settings, rotation, pager=pager(pd), chat=None)
        assert handoff.render(h) == expected("Carol Nguyen", "Bob Okafor")
        text = handoff.render(handoff.build(engine, settings, rotation, pager=None, chat=None))
        assert ":warning: PagerDuty is not configured, so on-call is unknown" in text
        assert "*Outgoing:* unknown  →  *Incoming:* unknown" in text


def test_shift_windows_follow_the_cron_in_the_rotation_time_zone():
    cfg = HandoffSettings.model_validate(
        {
            "rotations": [
                {
                    "name": "validators",
                    "escalation_policy_id": "PEP1",
                    "channel": "#oncall-validators",
                    "cron": "0 8,20 * * *",
                    "timezone": "Europe/Berlin",
                }
            ]
        }
    )
    rotation = cfg.rotation(None)
    assert rotation.channel == "oncall-validators"
    # 10:00 UTC is 12:00 in Berlin (CEST): the handoff was at 08:00 Berlin, 06:00 UTC.
    shift = handoff.shift_at(rotation, datetime(2024, 5, 6, 10, 0, tzinfo=UTC))
    assert shift.handoff_at == datetime(2024, 5, 6, 6, 0, tzinfo=UTC)
    assert shift.start == datetime(2024, 5, 5, 18, 0, tzinfo=UTC)
    # Exactly at a slot, that slot is the handoff.
    shift = handoff.shift_at(rotation, datetime(2024, 5, 6, 18, 0, tzinfo=UTC))
    assert shift.handoff_at == datetime(2024, 5, 6, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rotation", "message"),
    [
        ({"name": "rpc", "channel": "x"}, "exactly one of schedule_id and escalation_policy_id"),
        ({"name": "rpc", "channel": "x", "schedule_id": "P1", "cron": "0 9 * * 1"}, "name the day"),
        ({"name": "rpc", "channel": "x", "schedule_id": "P1", "cron": "0 9 * *"}, "five-field"),
        ({"name": "rpc", "channel": "x", "schedule_id": "P1", "timezone": "Mars"}, "time zone"),
        ({"name": "RPC!", "channel": "x", "schedule_id": "P1"}, "rotation name"),
    ],
)
def test_bad_rotations_are_refused(rotation, message):
    with pytest.raises(ValidationError, match=message):
        HandoffSettings.model_validate({"rotations": [rotation]})


def test_the_grammar(tmp_path):
    settings = Settings(data_dir=tmp_path, handoff=rotation_config("P1"))

    def p(text: str) -> Command | Usage:
        return parse(text, settings=settings, in_incident_channel=False)

    assert p("handoff") == Command("handoff", {"action": "post", "rotation": None, "text": None})
    assert p("handoff RPC").args["rotation"] == "rpc"
    assert p("handoff note rpc watch the “eu” nodes").args == {
        "action": "note",
        "rotation": "rpc",
        "text": 'watch the "eu" nodes',
    }
    assert p("handoff note rpc").args == {"action": "note", "rotation": None, "text": "rpc"}
    assert "Unknown rotation 'nope'" in p("handoff nope").text()  # type: ignore[union-attr]
    assert "needs what the next on-call should watch" in p("handoff note").text()  # type: ignore[union-attr]


def test_preview_prints_the_handoff(engine, cli, database_url, tmp_path, clock, monkeypatch):
    with PagerDutySandbox() as pd:
        d = pd.describe()
        config = tmp_path / "incidentbot.yaml"
        config.write_text(
            json.dumps(
                {
                    "pagerduty": {"api_url": d["rest_url"], "ca_file": d["ca_file"]},
                    "handoff": rotation_config(schedule_id(pd)),
                }
            )
        )
        monkeypatch.setenv("INCIDENTBOT_PAGERDUTY_API_TOKEN", d["api_token"])
        settings = Settings(data_dir=tmp_path / "data", handoff=rotation_config("P1"))
        seed_shift(engine, settings, clock)
        code, out, err = cli("--config", str(config), "handoff", "preview", "rpc")
        assert (code, err) == (0, "")
        assert out == expected("Carol Nguyen", "Bob Okafor")

        code, out, err = cli("--config", str(config), "handoff", "preview", "nope")
        assert code == 1 and "unknown rotation 'nope'" in err
        # --at shows an earlier handoff: on Monday 29 April Bob handed over to Carol.
        code, out, _ = cli(
            "--config", str(config), "handoff", "preview", "--at", "2024-04-29T10:00:00Z"
        )
        assert code == 0
        assert "*Outgoing:* Bob Okafor  →  *Incoming:* Carol Nguyen" in out
        assert "*Alerts received:* 1 in 1 group\n• NodeLagging: 1\n" in out
        assert "• old note from the week before (<@U0DAVE001>, Sat 27 Apr 09:00 UTC)" in out

        # Three days into Bob's week, the preview frames his shift, handed over next Monday,
        # not Carol's shift that ended three days ago.
        clock.at = HANDOFF + timedelta(days=3, hours=2)
        code, out, err = cli("--config", str(config), "handoff", "preview", "rpc")
        assert (code, err) == (0, "")
        assert (
            "Shift Mon 06 May 09:00 UTC → Mon 13 May 09:00 UTC (covered to Thu 09 May 11:00 UTC)"
        ) in out
        assert "*Outgoing:* Bob Okafor" in out
        assert "Mon 29 Apr" not in out


@contextmanager
def handoff_bot(engine, tmp_path):
    with PagerDutySandbox() as pd:
        d = pd.describe()
        with running_bot(
            engine,
            data_dir=tmp_path / "data",
            pagerduty={
                "api_url": d["rest_url"],
                "ca_file": d["ca_file"],
                "from_email": "alice@nodeworks.example",
            },
            pagerduty_api_token=d["api_token"],
            handoff=rotation_config(schedule_id(pd)),
        ) as (bot, slack):
            ws = slack.workspace
            members = [ws.user(h).id for h in ("alice", "bob", "carol")] + [ws.bot.id]
            ws.add_channel("oncall-rpc", creator=members[0], members=members)
            yield bot, slack


def posted(slack) -> list:
    return [m for m in slack.workspace.channel("oncall-rpc").messages if m.blocks]


def test_slash_handoff_posts_and_the_incoming_person_acknowledges(engine, tmp_path):
    started = datetime.now(UTC)
    set_clock(lambda: NOW + (datetime.now(UTC) - started))  # runs from Monday 09:00:05
    try:
        with handoff_bot(engine, tmp_path) as (bot, slack):
            ws = slack.workspace
            carol, bob = ws.user("carol").id, ws.user("bob").id

            ack = slack.driver.slash_command(
                "handoff note Watch <the> eu-west nodes", user="carol", channel="oncall-rpc"
            )
            assert json.loads(ack.body)["text"] == "Noted for the next *rpc* handoff."
            # Answered before the handoff is built, posted and confirmed to carol.
            with held_until_answered(slack, "response_url", bot):
                ack = slack.driver.slash_command("handoff rpc", user="carol", channel="incidents")
            assert "Preparing the *rpc* handoff for #oncall-rpc" in json.loads(ack.body)["text"]
            msg = wait_for(lambda: posted(slack), what="the handoff message")[0]
            original = copy.deepcopy({"blocks": msg.blocks, "text": msg.text})
            assert msg.text.startswith(":handshake: *On-call handoff: rpc*\n")
            assert f"*Outgoing:* <@{carol}>  →  *Incoming:* <@{bob}>" in msg.text
            assert "• Watch &lt;the&gt; eu-west nodes (<@" in msg.text
            assert msg.blocks[-1]["elements"][0]["text"]["text"] == "Acknowledge handoff"
            channel = ws.channel("oncall-rpc").id
            wait_for(
                lambda: any(f"in <#{channel}>" in e.text for e in slack.ephemeral("carol")),
                what="the confirmation to carol",
            )

            # Someone else clicks: only they are told why nothing happened (once the click is
            # answered: the answer does not wait for Slack to take the explanation).
            with held_until_answered(slack, "response_url", bot):
                ack = slack.driver.block_action(
                    "handoff_ack", user="alice", channel="oncall-rpc", message_ts=msg.ts
                )
            assert ack.ok, ack
            told = wait_for(
                lambda: [e.text for e in slack.ephemeral("alice") if "Only the incoming" in e.text],
                what="the explanation to alice",
            )
            assert told == [
                f"Only the incoming on-call (<@{bob}>) can acknowledge this handoff. "
                "If you are taking the shift instead, ask them to hand it over in PagerDuty."
            ]
            assert msg.blocks[-1]["type"] == "actions"

            # The incoming on-call clicks: recorded, answered, then the button becomes the
            # acknowledgement.
            with held_until_answered(slack, "chat.update", bot):
                ack = slack.driver.block_action(
                    "handoff_ack", user="bob", channel="oncall-rpc", message_ts=msg.ts
                )
                assert ack.ok, ack
                with db.transaction(engine) as s:
                    assert notes.acknowledgement(s, "rpc", HANDOFF) is not None
            wait_for(lambda: posted(slack)[0].blocks[-1]["type"] == "context", what="the update")
            done = posted(slack)[0]
            line = done.blocks[-1]["elements"][0]["text"]
            assert line.startswith(
                f":white_check_mark: Handoff acknowledged by <@{bob}> at Mon 06 May 09:0"
            )
            assert done.text == original["text"]
            assert done.blocks[:-1] == original["blocks"][:-1]
            assert not slack.ephemeral("bob")

            # A second click (a double click landing after the update) changes nothing and
            # says so.
            value = original["blocks"][-1]["elements"][0]["value"]
            again = bot_handoff(bot).click(
                user=bob, value=value, channel_id=channel, message_ts=msg.ts, message=original
            )
            assert again is not None and again.startswith(
                f"Already acknowledged by <@{bob}> at 09:0"
            )
            assert posted(slack)[0].blocks[-1]["elements"][0]["text"] == line

            # A second copy of the same handoff, clicked: it shows the same acknowledgement.
            slack.driver.slash_command("handoff", user="carol", channel="incidents")
            copy2 = wait_for(lambda: posted(slack)[1:], what="the second copy")[0]
            slack.driver.block_action(
                "handoff_ack", user="bob", channel="oncall-rpc", message_ts=copy2.ts
            )
            wait_for(lambda: copy2.blocks[-1]["type"] == "context", what="the copy's update")
            assert copy2.blocks[-1]["elements"][0]["text"] == line
            told = wait_for(lambda: [e.text for e in slack.ephemeral("bob")], what="bob told")
            assert len(told) == 1 and told[0].startswith(f"Already acknowledged by <@{bob}>")
            with db.transaction(engine) as s:
                recorded = notes.acknowledgement(s, "rpc", HANDOFF)
            assert recorded is not None and recorded.by == bob
            with engine.connect() as conn:
                from sqlalchemy import text

                acks = conn.execute(text("SELECT count(*) FROM handoff_ack")).scalar_one()
                notes_kept = conn.execute(text("SELECT count(*) FROM handoff_note")).scalar_one()
            assert (acks, notes_kept) == (1, 1)
    finally:
        set_clock(None)


def bot_handoff(bot):
    """The bot's handoff commands, as its Bolt listener calls them."""
    from incidentbot.slack.handoff_commands import HandoffCommands

    return HandoffCommands(bot.settings, bot.engine, bot.chat, pager_for(bot.settings))


def test_a_watch_note_from_the_command_line(engine, cli, database_url, tmp_path, clock):
    config = tmp_path / "incidentbot.yaml"
    config.write_text(json.dumps({"handoff": rotation_config("P1")}))
    assert cli("--config", str(config), "db", "upgrade")[0] == 0
    code, out, err = cli(
        "--config", str(config), "handoff", "note", "watch", "the", "eu-west", "nodes",
        "--as", "carol",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == "Noted for the next rpc handoff: watch the eu-west nodes\n"
    for argv, message in (
        (("note", "--rotation", "nope", "x"), "error: unknown rotation 'nope'"),
        (("note", "   "), "error: the watch note is empty"),
    ):
        code, _, err = cli("--config", str(config), "handoff", *argv)
        assert code == 1 and err.startswith(message), (argv, err)
    with db.transaction(engine) as s:
        kept = notes.notes_between(s, "rpc", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert [(n.text, n.by) for n in kept] == [("watch the eu-west nodes", "carol")]
