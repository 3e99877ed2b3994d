"""The declare fan-out reads nothing back from Slack unless an earlier outcome is unknown.

On the happy path a declare creates the channel, then sets its topic and purpose, invites the
responders and posts the header at once, then pins; the digest announcement goes out without
waiting for the channel. Reconciliation reads (channel list, history, members) happen only after
a call whose answer was lost, and then the effect is still done once.
"""

from __future__ import annotations

from collections import Counter

from sqlmodel import col, delete

from incidentbot import db
from incidentbot.incidents import effects
from incidentbot.incidents import service as svc
from incidentbot.ledger import service as ledger
from incidentbot.ledger.models import Step
from tests.slack_harness import running_bot, settled

READS = ("conversations.history", "conversations.list", "conversations.members")
EFFECTS = ("channel.created", "responders.invited", "header.posted", "digest.announced")


def _declare(sandbox, title: str) -> None:  # type: ignore[no-untyped-def]
    ack = sandbox.driver.slash_command(f"declare sev2 {title}", user="alice", channel="incidents")
    assert ack.status == 200, ack.body


def _state(engine, ref: str):  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        inc = svc.get(s, ref)
        return inc, Counter(e.kind for e in svc.timeline(s, inc))


def _announcements(sandbox, ref: str) -> list:  # type: ignore[no-untyped-def]
    return [
        m
        for m in sandbox.snapshot("incidents").messages
        if ref in m.text and "declared" not in m.text
    ]


def _assert_furnished(sandbox, engine, ref: str) -> None:  # type: ignore[no-untyped-def]
    inc, kinds = _state(engine, ref)
    assert all(kinds[k] == 1 for k in EFFECTS), kinds
    snap = sandbox.snapshot(inc.channel_name)
    assert snap.topic.startswith(f"{ref} · SEV2")
    assert snap.purpose.startswith(f"[{ref}]")
    assert "alice" in snap.members
    assert [m.ts for m in snap.pinned] == [inc.header_ts]
    shown = _announcements(sandbox, ref)
    assert [m.ts for m in shown] == [inc.digest_ts]
    assert f"#{inc.channel_name}" in shown[0].text  # the announcement links the channel


def test_a_declare_reads_nothing_back_from_slack_on_the_happy_path(engine):
    with running_bot(engine) as (_bot, sandbox):
        _declare(sandbox, "Validator missed 3 attestations")
        settled(engine)
        _assert_furnished(sandbox, engine, "INC-1")
        # The digest channel is looked up by name once per process; nothing else is read.
        first = Counter(r.method for r in sandbox.requests())
        assert first["conversations.list"] == 1
        assert first["conversations.history"] == 0 and first["conversations.members"] == 0

        before = len(sandbox.requests())
        _declare(sandbox, "RPC node 4 behind by 40 blocks")
        settled(engine)
        _assert_furnished(sandbox, engine, "INC-2")
        calls = Counter(r.method for r in sandbox.requests()[before:])
        assert not [m for m in READS if calls[m]], calls
        assert calls["conversations.create"] == 1 and calls["pins.add"] == 1
        assert calls["chat.postMessage"] == 2  # the header and the announcement
        assert calls["conversations.invite"] == 1


def test_a_lost_channel_creation_is_adopted_not_made_twice(engine):
    with running_bot(engine) as (bot, sandbox):
        bot.chat.client.timeout = 2
        # Slack creates the channel but its answer never reaches the bot.
        sandbox.fail_next("conversations.create", "timeout", hold_s=5.0, applied=True)
        _declare(sandbox, "Bridge relayer out of funds")
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        names = [c.name for c in sandbox.workspace.channels.values()]
        assert names.count(inc.channel_name) == 1
        assert not [n for n in names if n.startswith(f"{inc.channel_name}-")]  # no "-2" copy
        _assert_furnished(sandbox, engine, "INC-1")
        # The outcome was unknown: the retry looked the channel up by name.
        creates = sandbox.requests("conversations.create")
        assert "name_taken" in [r.error for r in creates]
        assert sandbox.requests("conversations.list")


def test_an_invitation_whose_answer_was_lost_is_recorded_once(engine):
    with running_bot(engine) as (bot, sandbox):
        bot.chat.client.timeout = 2
        sandbox.fail_next("conversations.invite", "server_error", applied=True)
        _declare(sandbox, "Archive node disk 95% full")
        settled(engine)
        _assert_furnished(sandbox, engine, "INC-1")
        # The retry read the members (the first invitation took effect) and asked again for
        # no one.
        assert sandbox.requests("conversations.members")
        assert len(sandbox.requests("conversations.invite")) == 1


def test_a_channel_run_queued_in_two_steps_before_the_upgrade_still_furnishes(engine):
    """Runs queued by an older incidentbot (create, then furnish as a second step) run as
    they are; a declare now queues one step that does both."""
    with running_bot(engine) as (bot, sandbox):
        bot.pool.stop()  # nothing runs while the old-shaped run is put in place
        _declare(sandbox, "Sequencer stalled at block 1200")
        with db.transaction(engine) as s:
            run = ledger.get_by_key(s, "INC-1:channel")
            assert run is not None and [st.action for st in ledger.get_steps(s, run.id)] == [
                "chat.open_channel"
            ]
            s.execute(delete(Step).where(col(Step.run_id) == run.id))
            s.delete(run)
            s.flush()
            inc = svc.get(s, "INC-1")
            ledger.start_run(
                s,
                kind="incident.channel",
                key="INC-1:channel",
                steps=[
                    effects._step("Create the incident channel", "chat.open_channel"),
                    effects._step(
                        "Set topic and purpose, invite, post the header",
                        "chat.furnish_channel",
                        declarer=sandbox.workspace.user("alice").id,
                    ),
                ],
                incident_id=inc.id,
                actor="alice",
            )
        bot.pool = type(bot.pool)(engine, threads=2, poll=0.1, name="after-upgrade").start()
        settled(engine)
        _assert_furnished(sandbox, engine, "INC-1")
