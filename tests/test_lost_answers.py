"""A Slack call that took effect but whose answer was lost (Slack answered 500).

The bot cannot know whether the announcement went out, so it looks before posting again. A
busy digest channel may have had hundreds of messages by then: the lookup pages back through
history to the incident's start instead of scanning a fixed 100, so the announcement is found,
kept up to date, and on the timeline once.
"""

from __future__ import annotations

from collections import Counter

from incidentbot import db
from incidentbot.incidents import service as svc
from tests.slack_harness import running_bot, settled, wait_for

FLOOD = 150  # more than one page of history used to hold


def announcements(sandbox) -> list:
    return [
        m
        for m in sandbox.snapshot("incidents").messages
        if "INC-1" in m.text and "declared" not in m.text
    ]


def test_a_lost_announcement_is_found_behind_a_busy_channel(engine):
    with running_bot(engine) as (_, sandbox):
        digest = sandbox.workspace.channel("incidents").id

        def others_talk() -> None:
            for n in range(FLOOD):
                sandbox.driver.post_message("bob", "incidents", f"unrelated #{n}", deliver=False)

        sandbox.fail_next("chat.postMessage", "server_error", applied=True, channel=digest,
                          after=others_talk)  # fmt: skip
        ack = sandbox.driver.slash_command("declare sev2 Indexer lagging 300 blocks")
        assert ack.status == 200, ack.body
        settled(engine)
        assert not sandbox.faults.pending()  # the lost answer did happen

        shown = announcements(sandbox)
        assert len(shown) == 1
        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            kinds = Counter(e.kind for e in svc.timeline(s, inc))
        assert inc.digest_ts == shown[0].ts
        assert kinds["digest.announced"] == 1

        # Later changes edit that announcement; none is posted again.
        channel = inc.channel_id
        assert sandbox.driver.slash_command("sev 1", channel=channel).status == 200
        wait_for(lambda: "SEV1" in announcements(sandbox)[0].text, what="SEV1 in the digest")
        assert len(announcements(sandbox)) == 1
