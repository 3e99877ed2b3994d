"""Two installations in one Slack workspace (staging and production, or a database rebuilt
from empty beside the old one) both have an INC-1. Neither may adopt the other's channel nor
find and edit the other's announcement, header or updates: what the bot finds again in Slack
carries its installation's id."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager

import pytest

from incidentbot import db
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.installation import installation_id
from incidentbot.sandbox.slack.server import SlackSandbox
from tests.slack_harness import wait_for

TITLE = "RPC p99 latency above 2s"


@pytest.fixture
def slack(slack_sandbox):
    return slack_sandbox


@pytest.fixture
def second_engine(sqlite_template, tmp_path):
    """The other installation: a database of its own, made from empty."""
    path = tmp_path / "other.db"
    shutil.copyfile(sqlite_template, path)
    eng = db.make_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@contextmanager
def bot_on(slack: SlackSandbox, engine):
    settings = Settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret=slack.signing_secret,
        slack={"api_url": slack.base_url},
        workers=2,
    )
    bot = Bot.build(settings, engine, poll=0.05)
    try:
        url = bot.start_http() + "/slack/events"
        bot.start_workers()
        yield url
    finally:
        bot.stop()


def command(slack: SlackSandbox, url: str, text: str, channel: str = "incidents") -> dict:
    slack.driver.bot_url = url
    ack = slack.driver.slash_command(text, user="alice", channel=channel)
    assert ack.status == 200, (ack.status, ack.body)
    return json.loads(ack.body)


def settled(engine) -> tuple[str, str, str]:
    """(channel id, header ts, digest ts) once the declare's effects are all done."""

    def probe():
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            if inc.channel_id and inc.header_ts and inc.digest_ts:
                return inc.channel_id, inc.header_ts, inc.digest_ts
        return None

    return wait_for(probe, what="the declare's channel, header and announcement")


def announcement(slack: SlackSandbox, ts: str):
    return next(m for m in slack.snapshot("incidents").messages if m.ts == ts)


def test_two_installations_never_touch_each_others_messages(engine, second_engine, slack):
    ids = installation_id(engine), installation_id(second_engine)
    assert ids[0] != ids[1] and installation_id(engine) == ids[0]  # made once, then kept

    with bot_on(slack, engine) as production:
        command(slack, production, f"declare sev2 {TITLE}")
        prod_channel, prod_header, prod_digest = settled(engine)
    before = announcement(slack, prod_digest).text
    with bot_on(slack, second_engine) as staging:
        command(slack, staging, f"declare sev3 {TITLE}")
        stage_channel, _, stage_digest = settled(second_engine)
        # Its own channel (same name taken: a suffix), its own announcement.
        assert stage_channel != prod_channel and stage_digest != prod_digest
        command(slack, staging, "status investigating", channel=stage_channel)
        wait_for(
            lambda: "Investigating" in announcement(slack, stage_digest).text,
            what="staging's announcement to show its status",
        )
        command(slack, staging, "update checking the load balancer", channel=stage_channel)
        wait_for(
            lambda: any("checking the load balancer" in m.text
                        for m in slack.snapshot(stage_channel).messages),
            what="staging's update in its channel",
        )  # fmt: skip

    prod = announcement(slack, prod_digest)
    assert prod.text == before and "SEV2" in before and "Triage" in before
    prod_snap = slack.snapshot(prod_channel)
    assert [m.ts for m in prod_snap.pinned] == [prod_header]
    assert not any("load balancer" in m.text for m in prod_snap.messages)
    assert slack.snapshot(stage_channel).purpose.endswith(f"incidentbot {ids[1]}")
    # Staging's update reached the digest channel once, as a message of its own.
    updates = [m for m in slack.snapshot("incidents").messages if "load balancer" in m.text]
    assert len(updates) == 1 and updates[0].ts not in (prod_digest, stage_digest)
