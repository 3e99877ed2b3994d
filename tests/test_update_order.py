"""A status update keeps the state it was written under, and an incident's updates leave in the
order they were written, even when Slack holds one back with a 429.

The update is written at SEV2 · Investigating. Slack answers its first post with a 429; before
that answer (the fault's hook, so no timing is involved) the commander raises the severity,
moves the status to monitoring and writes a second update. The first update must still read
"SEV2 · Investigating" and come before the second, in the incident channel and in the digest.
"""

from __future__ import annotations

from incidentbot import db
from incidentbot.incidents import service as svc
from tests.slack_harness import incident, running_bot, settled, wait_for

FIRST = "Investigating RPC errors on node-1"
SECOND = "Failed over to node-2, watching the error rate"


def updates(sandbox, channel: str) -> list[str]:
    """The status update messages a channel shows, top to bottom."""
    return [m.text for m in sandbox.snapshot(channel).messages if ":loudspeaker:" in m.text]


def test_an_update_held_back_by_slack_keeps_its_state_and_its_place(engine):
    with running_bot(engine) as (_, sandbox):
        ack = sandbox.driver.slash_command("declare sev2 RPC errors on node-1")
        assert ack.status == 200, ack.body
        wait_for(lambda: incident(engine).channel_id, what="the incident channel")
        channel = incident(engine).channel_id
        assert sandbox.driver.slash_command("status investigating", channel=channel).status == 200
        settled(engine)
        said = []

        def meanwhile() -> None:  # while the first update's post is held back by Slack
            for text in ("sev 1", "status monitoring", f"update {SECOND}"):
                said.append(sandbox.driver.slash_command(text, channel=channel).status)

        fault = sandbox.fail_next("chat.postMessage", "ratelimited", channel=channel,
                                  after=meanwhile)  # fmt: skip
        assert sandbox.driver.slash_command(f"update {FIRST}", channel=channel).status == 200
        settled(engine)
        assert fault not in sandbox.faults.pending()  # Slack did say 429 once
        assert said == [200, 200, 200]

        digest = sandbox.workspace.channel("incidents").id
        for where in (channel, digest):
            shown = updates(sandbox, where)
            assert len(shown) == 2, shown  # each once: the retry found the one already posted
            first, second = shown
            assert FIRST in first and SECOND in second  # in the order they were written
            assert "SEV2" in first and "Investigating" in first  # the state it was written in
            assert "SEV1" not in first and "Monitoring" not in first
            assert "SEV1" in second and "Monitoring" in second

        with db.transaction(engine) as s:
            inc = svc.get(s, "INC-1")
            written = [e.data for e in svc.timeline(s, inc) if e.kind == "status.update"]
        assert inc.severity == "SEV1" and inc.status == "monitoring"
        assert written == [
            {"severity": "SEV2", "status": "investigating"},
            {"severity": "SEV1", "status": "monitoring"},
        ]
