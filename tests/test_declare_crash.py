"""A crash in the declare fan-out, between Slack's side of an effect and ours.

``incidentbot serve`` runs as a real process. Slack (the local server) applies the calls that
post the digest announcement, the header and the invitation, then holds their answers: the
effects happened and the bot has not heard so. The bot is SIGKILLed right there and a new one
takes its runs over. Everything must be in Slack once and on the timeline once: the timeline
entry of an effect is written in the transaction that records the effect as done, so the retry
that finds the message writes it, and a finished effect cannot be recorded twice.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.installation import installation_id
from tests.runbook_procs import BotSeat

TITLE = "Beacon node stuck at slot 8123"
HOLD = 300.0  # the held answers never come back while the test runs
BOOKKEEPING = ("channel.created", "responders.invited", "header.posted", "digest.announced")


@pytest.fixture
def slack(slack_sandbox):
    return slack_sandbox


@pytest.fixture
def seat(database_url, tmp_path, slack):
    made = BotSeat(tmp_path, database_url, slack, runbook_dirs=[], lease=1.0)
    yield made
    made.close()


def announcements(slack) -> list:
    """The digest channel's announcements of INC-1 (not the declare command's own reply)."""
    return [
        m
        for m in slack.snapshot("incidents").messages
        if "INC-1" in m.text and "declared" not in m.text
    ]


def incident_state(engine):
    with db.transaction(engine) as s:
        inc = svc.get(s, "INC-1")
        kinds = Counter(e.kind for e in svc.timeline(s, inc))
        return inc, kinds


def test_kill_after_slack_applied_the_fan_out_records_each_effect_once(engine, slack, seat):
    # The announcement and the header are posted, and alice invited, but no answer returns.
    slack.fail_next("chat.postMessage", "timeout", count=2, hold_s=HOLD, applied=True)
    slack.fail_next("conversations.invite", "timeout", hold_s=HOLD, applied=True)
    ack = slack.driver.slash_command(f"declare sev2 {TITLE}", user="alice", channel="incidents")
    assert ack.status == 200, (ack.status, ack.body)
    assert "INC-1" in json.loads(ack.body)["text"]

    def applied() -> str | None:
        inc, _ = incident_state(engine)
        if not inc.channel_name:
            return None
        channel = slack.snapshot(inc.channel_name)
        digest = announcements(slack)
        header = [m for m in channel.messages if f"INC-1: {TITLE}" in m.text]
        alice_in = "alice" in channel.members
        return inc.channel_name if digest and header and alice_in else None

    channel = seat.wait(applied, "Slack to apply the announcement, header and invitation")
    inc, kinds = incident_state(engine)
    # The bot has not heard back: what it knows of these effects is still missing.
    assert inc.header_ts is None and inc.digest_ts is None
    assert kinds["header.posted"] == kinds["digest.announced"] == 0

    seat.replace()  # SIGKILL, then a new process takes the runs over after the lease

    def recorded() -> Counter | None:
        inc, kinds = incident_state(engine)
        done = inc.header_ts and inc.digest_ts and all(kinds[k] for k in BOOKKEEPING)
        return kinds if done else None

    kinds = seat.wait(recorded, "the new process to finish the fan-out", timeout=90)
    assert {k: kinds[k] for k in BOOKKEEPING} == dict.fromkeys(BOOKKEEPING, 1), kinds

    # Slack shows each effect once: one announcement, one header (pinned), one channel.
    digest = announcements(slack)
    snap = slack.snapshot(channel)
    headers = [m for m in snap.messages if f"INC-1: {TITLE}" in m.text]
    assert len(digest) == 1 and len(headers) == 1 and headers[0].pinned
    assert snap.purpose.endswith(f"· incidentbot {installation_id(engine)}")
    inc, _ = incident_state(engine)
    assert inc.channel_id == snap.id

    # A later change edits the same messages: nothing posted again.
    seat.wait(lambda: "alice" in slack.snapshot(channel).members, "alice in the channel")
    ack = slack.driver.slash_command("sev 1", user="alice", channel=snap.id)
    assert ack.status == 200, (ack.status, ack.body)
    seat.wait(
        lambda: all("SEV1" in m.text for m in announcements(slack)),
        "the announcement to show SEV1",
    )
    digest = announcements(slack)
    assert len(digest) == 1
    _, kinds = incident_state(engine)
    assert {k: kinds[k] for k in BOOKKEEPING} == dict.fromkeys(BOOKKEEPING, 1), kinds
