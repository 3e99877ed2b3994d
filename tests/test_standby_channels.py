"""Standby channels: a declare takes a channel made before it and renames it.

Against the local Slack server over real sockets: the incident gets the spare of its kind
(public or private), exactly once however many declares race for it; the pool is refilled
after a take; a crash between the take and the rename resumes on the same channel; a rename
Slack refuses falls back to creating a channel, and the declare is not lost.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import text
from sqlmodel import select

from incidentbot import db, db_schema
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents import standby
from incidentbot.incidents.standby import StandbyChannel
from incidentbot.ledger import service as ledger
from incidentbot.ledger.actions import registry
from incidentbot.ledger.leases import claim_next
from incidentbot.ledger.transitions import begin_step
from incidentbot.ledger.worker import Worker, WorkerPool
from tests.ledger_harness import expire_leases
from tests.slack_harness import running_bot, settled, wait_for

EFFECTS = ("channel.created", "responders.invited", "header.posted", "digest.announced")
ON = {"channels": {"standby": True}}


def _declare(sandbox, words: str) -> None:  # type: ignore[no-untyped-def]
    ack = sandbox.driver.slash_command(f"declare {words}", user="alice", channel="incidents")
    assert ack.status == 200, ack.body


def _rows(engine) -> list[StandbyChannel]:  # type: ignore[no-untyped-def]
    with db.read(engine) as s:
        return list(s.exec(select(StandbyChannel).order_by(StandbyChannel.id)).all())


def _spare(engine, *, private: bool) -> StandbyChannel:  # type: ignore[no-untyped-def]
    ready = [r for r in _rows(engine) if r.state == standby.READY and r.private == private]
    assert len(ready) == 1, _rows(engine)
    return ready[0]


def _state(engine, ref: str):  # type: ignore[no-untyped-def]
    with db.read(engine) as s:
        inc = svc.get(s, ref)
        return inc, Counter(e.kind for e in svc.timeline(s, inc))


def _assert_furnished(sandbox, engine, ref: str, title: str) -> None:  # type: ignore[no-untyped-def]
    """What a responder sees: the incident's own channel, named by the naming rules, with its
    topic, purpose, members and pinned header, announced once; each effect once on the
    timeline."""
    inc, kinds = _state(engine, ref)
    assert all(kinds[k] == 1 for k in EFFECTS), kinds
    snap = sandbox.snapshot(inc.channel_id)
    assert snap.name == inc.channel_name
    assert inc.channel_name == f"inc-{inc.number}-{title.lower().replace(' ', '-')}"
    assert snap.topic.startswith(f"{ref} · SEV2")
    assert snap.purpose.startswith(f"[{ref}]")
    assert "alice" in snap.members
    assert [m.ts for m in snap.pinned] == [inc.header_ts]
    headers = [m for m in snap.messages if ref in m.text]
    assert [m.ts for m in headers] == [inc.header_ts]


def _channel(sandbox, channel_id: str):  # type: ignore[no-untyped-def]
    return sandbox.workspace.channels[channel_id]


def test_a_declare_takes_the_spare_of_its_kind_renames_it_and_the_pool_is_refilled(engine):
    with running_bot(engine, **ON) as (_bot, sandbox):
        settled(engine)  # the spares made at start
        public, private = _spare(engine, private=False), _spare(engine, private=True)
        assert not _channel(sandbox, public.channel_id).is_private
        assert _channel(sandbox, private.channel_id).is_private
        assert public.channel_name == f"incident-standby-{public.id}"
        assert "Please do not use it" in _channel(sandbox, public.channel_id).purpose.value

        before = len(sandbox.requests())
        _declare(sandbox, "sev2 Validator missed attestations")
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        assert inc.channel_id == public.channel_id  # the public spare, renamed
        _assert_furnished(sandbox, engine, "INC-1", "Validator missed attestations")
        assert _channel(sandbox, inc.channel_id).previous_names == [public.channel_name]
        calls = sandbox.requests()[before:]
        # No channel was created for the incident; one was, for the new spare.
        assert [r.args["name"] for r in calls if r.method == "conversations.create"] == [
            f"incident-standby-{_spare(engine, private=False).id}"
        ]
        assert [r.method for r in calls if r.method == "conversations.rename"] == [
            "conversations.rename"
        ]
        assert _spare(engine, private=True).id == private.id  # untouched

        _declare(sandbox, "--private sev2 Key ceremony leak")
        settled(engine)
        inc2, _ = _state(engine, "INC-2")
        assert inc2.private and inc2.channel_id == private.channel_id
        assert _channel(sandbox, inc2.channel_id).is_private
        _assert_furnished(sandbox, engine, "INC-2", "Key ceremony leak")
        refilled = _spare(engine, private=True)
        assert refilled.id != private.id and _channel(sandbox, refilled.channel_id).is_private
        # A private incident's channel is never a public one, nor announced publicly.
        shown = sandbox.snapshot("incidents").messages
        assert not [m for m in shown if "INC-2" in m.text and m.only_visible_to is None]


def test_a_private_incident_with_no_private_spare_gets_a_new_private_channel(engine):
    with running_bot(engine, **ON) as (bot, sandbox):
        settled(engine)
        public, private = _spare(engine, private=False), _spare(engine, private=True)
        bot.pool.stop()  # the private spare is gone (taken meanwhile), not yet refilled
        with db.transaction(engine) as s:
            standby.settle(s, private.id, standby.DISCARDED)
        bot.pool = type(bot.pool)(engine, threads=2, poll=0.05, name="after").start()
        _declare(sandbox, "--private sev2 Signer key exposed")
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        assert inc.channel_id not in (public.channel_id, private.channel_id)
        assert _channel(sandbox, inc.channel_id).is_private
        _assert_furnished(sandbox, engine, "INC-1", "Signer key exposed")
        assert _spare(engine, private=False).id == public.id  # the public spare is untouched


def test_two_declares_racing_for_one_spare_one_takes_it_the_other_creates(engine):
    with running_bot(engine, **ON) as (bot, sandbox):
        settled(engine)
        spare = _spare(engine, private=False)
        bot.pool.stop()  # both declares queued before any worker looks
        _declare(sandbox, "sev2 RPC node one lagging")
        _declare(sandbox, "sev2 RPC node two lagging")
        # Two replicas, one thread each, take the two channel runs at once.
        replicas = [
            WorkerPool(engine, threads=1, poll=0.05, name=f"replica-{n}").start() for n in "ab"
        ]
        try:
            settled(engine)
        finally:
            for pool in replicas:
                pool.stop()
        one, _ = _state(engine, "INC-1")
        two, _ = _state(engine, "INC-2")
        assert [one.channel_id, two.channel_id].count(spare.channel_id) == 1
        _assert_furnished(sandbox, engine, "INC-1", "RPC node one lagging")
        _assert_furnished(sandbox, engine, "INC-2", "RPC node two lagging")
        taken = [r for r in _rows(engine) if r.id == spare.id]
        assert taken[0].state == standby.USED
        assert taken[0].incident_id in (one.id, two.id)
        _spare(engine, private=False)  # refilled once: one spare, not two


@pytest.mark.postgres
def test_a_take_waiting_on_another_finds_the_spare_gone(pg_cluster, pg_template):
    """Two transactions take at once on PostgreSQL: the second waits on the first's row lock
    and, once it commits, finds the spare taken (no second owner, no error)."""
    name = "standby_race"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    engine = db.make_engine(pg_cluster.url(name))
    try:
        with db.transaction(engine) as s:
            ids = []
            for n in (1, 2):
                inc = svc.declare(s, Settings(), title=f"race {n}", severity="SEV2", actor="a")
                ids.append(inc.id)
            s.execute(
                text(
                    "INSERT INTO standby_channel (private, state, channel_id, channel_name, "
                    "created_at, updated_at) VALUES (false, 'ready', 'C0SPARE', "
                    "'incident-standby-1', now(), now())"
                )
            )
        first = db.transaction(engine)
        s1 = first.__enter__()
        assert standby.take(s1, ids[0], private=False) is not None
        got: dict[str, object] = {}

        def second() -> None:
            with db.transaction(engine) as s2:
                got["row"] = standby.take(s2, ids[1], private=False)

        thread = threading.Thread(target=second)
        thread.start()

        def waiting() -> bool:
            with engine.connect() as c:
                return bool(
                    c.execute(
                        text(
                            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'UPDATE standby_channel%'"
                        )
                    ).first()
                )

        wait_for(waiting, what="the second take to wait on the first's lock")
        first.__exit__(None, None, None)
        thread.join()
        assert got["row"] is None
        rows = [r for r in _rows(engine) if r.channel_id == "C0SPARE"]
        assert [(r.state, r.incident_id) for r in rows] == [(standby.TAKEN, ids[0])]
    finally:
        engine.dispose()
        pg_cluster.execute(f"DROP DATABASE {name}")


def test_a_crash_after_the_take_resumes_on_the_same_channel(engine):
    with running_bot(engine, **ON) as (bot, sandbox):
        settled(engine)
        spare = _spare(engine, private=False)
        bot.pool.stop()
        _declare(sandbox, "sev2 Archive node disk full")
        with db.read(engine) as s:
            run = ledger.get_by_key(s, "INC-1:channel")
        assert run is not None
        # A replica starts the channel step (the take commits with it), then dies.
        doomed = Worker(engine, name="doomed", lease=60)
        with db.transaction(engine) as s:
            assert claim_next(s, doomed.owner, 60, run_id=run.id) is not None
            attempt = begin_step(s, run.id, doomed.owner, 60, registry, {})
            assert attempt is not None
            doomed._prepare(s, attempt)
        rows = {r.id: r for r in _rows(engine)}
        inc, _ = _state(engine, "INC-1")
        assert rows[spare.id].state == standby.TAKEN and rows[spare.id].incident_id == inc.id
        assert inc.channel_id == spare.channel_id
        assert _channel(sandbox, spare.channel_id).name == spare.channel_name  # not renamed
        assert expire_leases(engine, "doomed") == 1
        bot.pool = type(bot.pool)(engine, threads=2, poll=0.05, name="survivor").start()
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        assert inc.channel_id == spare.channel_id  # the same channel, now renamed
        _assert_furnished(sandbox, engine, "INC-1", "Archive node disk full")
        assert not [
            r for r in sandbox.requests("conversations.create") if r.args["name"].startswith("inc-")
        ]
        assert [r.state for r in _rows(engine) if r.id == spare.id] == [standby.USED]
        _spare(engine, private=False)  # the take's refill ran


def test_a_rename_whose_answer_was_lost_is_not_done_twice(engine):
    with running_bot(engine, **ON) as (bot, sandbox):
        settled(engine)
        spare = _spare(engine, private=False)
        bot.chat.client.timeout = 1  # Slack renames it; its answer comes after the bot gave up
        sandbox.fail_next("conversations.rename", "timeout", hold_s=3.0, applied=True)
        _declare(sandbox, "sev2 Bridge relayer out of funds")
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        assert inc.channel_id == spare.channel_id
        _assert_furnished(sandbox, engine, "INC-1", "Bridge relayer out of funds")
        assert _channel(sandbox, spare.channel_id).previous_names == [spare.channel_name]


def test_a_name_taken_by_someone_else_gets_a_suffix_as_a_created_channel_would(engine):
    with running_bot(engine, **ON) as (_bot, sandbox):
        settled(engine)
        spare = _spare(engine, private=False)
        bob = sandbox.workspace.user("bob").id
        sandbox.workspace.add_channel("inc-1-sequencer-stalled", creator=bob, members=[bob])
        _declare(sandbox, "sev2 Sequencer stalled")
        settled(engine)
        inc, kinds = _state(engine, "INC-1")
        assert inc.channel_id == spare.channel_id
        assert inc.channel_name == "inc-1-sequencer-stalled-2"
        assert sandbox.snapshot(inc.channel_id).name == "inc-1-sequencer-stalled-2"
        assert kinds["channel.created"] == 1


def test_a_rename_refused_falls_back_to_creating_a_channel(engine):
    with running_bot(engine, **ON) as (_bot, sandbox):
        settled(engine)
        spare = _spare(engine, private=False)
        # Someone archived the spare: Slack refuses its rename (and every post in it).
        _channel(sandbox, spare.channel_id).is_archived = True
        _declare(sandbox, "sev2 Beacon node out of peers")
        settled(engine)
        inc, _ = _state(engine, "INC-1")
        assert inc.channel_id and inc.channel_id != spare.channel_id
        _assert_furnished(sandbox, engine, "INC-1", "Beacon node out of peers")
        assert "is_archived" in [r.error for r in sandbox.requests("conversations.rename")]
        states = {r.id: r.state for r in _rows(engine)}
        assert states[spare.id] == standby.DISCARDED
        _spare(engine, private=False)  # a new spare in its place


def test_without_the_setting_no_spare_is_made_and_a_declare_creates(engine):
    with running_bot(engine) as (_bot, sandbox):
        _declare(sandbox, "sev2 Indexer behind")
        settled(engine)
        assert _rows(engine) == []
        names = [r.args["name"] for r in sandbox.requests("conversations.create")]
        assert names == ["inc-1-indexer-behind"]
        assert not sandbox.requests("conversations.rename")


def test_downgrading_to_0019_drops_the_pool_and_says_so_when_it_lists_channels(engine):
    assert db_schema.downgrade_losses(engine, "0019") == []  # an empty pool: nothing lost
    now = utcnow()
    with db.transaction(engine) as s:
        s.add(StandbyChannel(private=False, state="ready", channel_id="C1", created_at=now,
                             updated_at=now))  # fmt: skip
    assert db_schema.downgrade_losses(engine, "0019") == ["table standby_channel (1 row)"]
    assert db_schema.downgrade(engine, "0019")[1] == "0019"
    db.upgrade(engine)
    assert _rows(engine) == []  # back, empty


def test_a_spare_slack_would_not_make_is_replaced_when_the_bot_next_starts(engine):
    with running_bot(engine, **ON) as (_bot, sandbox):
        settled(engine)
        refill = max(r.id for r in _rows(engine)) + 1  # the row the next take's refill adds
        bob = sandbox.workspace.user("bob").id
        for n in range(1, 6):  # every name the refill may use is someone else's channel
            sandbox.workspace.add_channel(standby.standby_name(refill, n), creator=bob)
        _declare(sandbox, "sev2 Snapshot upload stuck")
        settled(engine)
        _assert_furnished(sandbox, engine, "INC-1", "Snapshot upload stuck")
        rows = {r.id: r for r in _rows(engine)}
        assert rows[refill].state == standby.FILLING and rows[refill].channel_id is None
        with db.read(engine) as s:
            assert ledger.get_by_key(s, f"standby:{refill}").status == "failed"
    with running_bot(engine, **ON) as (_bot, sandbox):
        settled(engine)
        assert {r.id: r.state for r in _rows(engine)}[refill] == standby.DISCARDED
        spare = _spare(engine, private=False)
        assert sandbox.workspace.channels[spare.channel_id].name == spare.channel_name
