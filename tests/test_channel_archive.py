"""Incident channels archive themselves a set time after close, with a warning before, fired by
the bot's own scheduler on a controllable clock and carried out on the local Slack server over
real sockets; a reopen cancels a pending archive; bad settings are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from incidentbot.config import Settings
from incidentbot.scheduler.builtin import ARCHIVE_JOB, builtin_jobs
from tests.clock_support import moving_clock, tick
from tests.slack_harness import (
    assert_spec_conformance,
    channel_of,
    incident,
    running_bot,
    settled,
    timeline_kinds,
)

QUIET = {"status_updates": False}
ARCHIVE = {"archive_after": "7d", "archive_warning": "1d"}
WARNING = ":file_cabinet:"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def at(clock, bot, engine, when: datetime) -> None:  # type: ignore[no-untyped-def]
    """Move the clock to ``when``, let the scheduler fire what is due, and the runs finish."""
    clock.set(when)
    tick(bot)
    settled(engine)


def command(slack, engine, text: str, channel: str, user: str = "alice") -> dict:  # type: ignore[no-untyped-def]
    ack = slack.driver.slash_command(text, user=user, channel=channel)
    assert ack.status == 200, ack.body
    settled(engine)
    return ack.json()


def warnings(slack, channel: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in slack.workspace.channel(channel).messages if WARNING in m.text]


def declare_and_close(slack, engine, ref: str, title: str) -> str:  # type: ignore[no-untyped-def]
    command(slack, engine, f"declare sev3 {title}", "incidents")
    name = channel_of(engine, ref)
    command(slack, engine, "resolve fixed", name)
    command(slack, engine, "close", name)
    return name


def test_a_closed_channel_is_warned_then_archived(engine):
    with (
        moving_clock(utc(2024, 5, 6, 9, 0)) as clock,
        running_bot(engine, reminders=QUIET, channels=ARCHIVE) as (bot, slack),
    ):
        name = declare_and_close(slack, engine, "INC-1", "Archive node disk at 91%")
        closed = incident(engine).closed_at
        assert closed is not None
        at(clock, bot, engine, closed + timedelta(days=6) - timedelta(minutes=2))
        assert warnings(slack, name) == []
        at(clock, bot, engine, closed + timedelta(days=6, minutes=1))
        [warning] = warnings(slack, name)
        due = (closed + timedelta(days=7)).strftime("%Y-%m-%d %H:%M UTC")
        assert f"INC-1 is closed: this channel will be archived on {due}" in warning
        assert "/incident reopen" in warning
        at(clock, bot, engine, closed + timedelta(days=6, minutes=3))  # the next slots
        assert len(warnings(slack, name)) == 1
        assert not slack.workspace.channel(name).is_archived
        at(clock, bot, engine, closed + timedelta(days=7, minutes=1))
        assert slack.workspace.channel(name).is_archived
        at(clock, bot, engine, closed + timedelta(days=7, minutes=3))
        kinds = timeline_kinds(engine)
        assert kinds.count("channel.archive_warned") == 1
        assert kinds.count("channel.archived") == 1
        assert kinds.index("incident.closed") < kinds.index("channel.archive_warned")
        assert kinds.index("channel.archive_warned") < kinds.index("channel.archived")
        # Slack refuses posts in an archived channel; the bot's own stayed within the rules.
        assert slack.snapshot(name).is_archived
        assert_spec_conformance(slack)


def test_reopen_cancels_a_pending_archive_and_a_new_close_starts_over(engine):
    with (
        moving_clock(utc(2024, 5, 6, 9, 0)) as clock,
        running_bot(engine, reminders=QUIET, channels=ARCHIVE) as (bot, slack),
    ):
        name = declare_and_close(slack, engine, "INC-1", "Indexer replay stuck")
        first = incident(engine).closed_at
        assert first is not None
        at(clock, bot, engine, first + timedelta(days=6, minutes=1))
        assert len(warnings(slack, name)) == 1
        command(slack, engine, "reopen", name)
        at(clock, bot, engine, first + timedelta(days=8))
        assert not slack.workspace.channel(name).is_archived
        assert "channel.archived" not in timeline_kinds(engine)
        # Closed again: a new warning and archive, counted from this close.
        command(slack, engine, "resolve fixed again", name)
        command(slack, engine, "close", name)
        second = incident(engine).closed_at
        assert second is not None and second > first
        at(clock, bot, engine, second + timedelta(days=6, minutes=1))
        assert len(warnings(slack, name)) == 2
        at(clock, bot, engine, second + timedelta(days=7, minutes=1))
        assert slack.workspace.channel(name).is_archived
        kinds = timeline_kinds(engine)
        assert (kinds.count("channel.archive_warned"), kinds.count("channel.archived")) == (2, 1)


def test_archive_without_a_warning_and_off_by_default(engine):
    assert builtin_jobs(Settings(), None)[ARCHIVE_JOB].enabled is False
    with (
        moving_clock(utc(2024, 5, 6, 9, 0)) as clock,
        running_bot(engine, reminders=QUIET, channels={"archive_after": "2h"}) as (bot, slack),
    ):
        name = declare_and_close(slack, engine, "INC-1", "RPC p99 latency above 2s")
        closed = incident(engine).closed_at
        assert closed is not None
        at(clock, bot, engine, closed + timedelta(hours=2, minutes=1))
        assert slack.workspace.channel(name).is_archived
        assert warnings(slack, name) == []
        assert "channel.archive_warned" not in timeline_kinds(engine)


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ({"archive_warning": "1d"}, "archive_warning needs archive_after"),
        ({"archive_after": "1d", "archive_warning": "2d"}, "shorter than archive_after"),
        ({"archive_after": "1d", "archive_warning": "1d"}, "shorter than archive_after"),
        ({"archive_after": "0s"}, "positive duration"),
        ({"archive_after": "soon"}, "soon"),
    ],
)
def test_bad_archive_settings_are_refused(channels, message):
    with pytest.raises(ValidationError, match=message):
        Settings(channels=channels)
