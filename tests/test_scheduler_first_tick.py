"""The scheduler's first tick after start: its setup (the leader's connection and lock, each
job's last slot) is done before the bot says it is ready, and a tick lets a Slack answer in
progress go first. On SQLite and PostgreSQL; time is a fake clock, ticks are called directly
(or the bot's warm-up is held at a gate), nothing waits on durations."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from incidentbot import priority
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.sandbox.slack.server import SlackSandbox
from incidentbot.scheduler import core
from incidentbot.scheduler.core import LOCK_KEY, Scheduler
from tests.ledger_harness import wait_until
from tests.test_scheduler import T0, FakeClock, make_jobs, rows
from tests.test_storage_concurrency import answering


@contextmanager
def statements(*engines: Engine) -> Iterator[list[str]]:
    """Every statement sent through ``engines`` meanwhile, as its first two words."""
    seen: list[str] = []

    def record(_conn, _cursor, sql: str, *_args) -> None:
        seen.append(" ".join(sql.split()[:2]).upper())

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def lock_holders(engine: Engine) -> int:
    """Backends other than this one holding the scheduler's advisory lock (PostgreSQL)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :k"
                ),
                {"k": LOCK_KEY},
            ).scalar_one()
        )


def test_a_prepared_scheduler_leads_and_its_first_tick_only_fires_what_is_due(engine):
    """After ``prepare`` the scheduler leads (on PostgreSQL it holds the lock on its own
    connection), and its first tick reads nothing more: it claims the due slot, runs the job
    and records it. On SQLite the setup took no write turn (its reads are a snapshot)."""
    calls: list[object] = []
    fake = FakeClock(T0 + timedelta(seconds=1))
    jobs = make_jobs(lambda ctx: calls.append(ctx.slot), every=60, grace=30)
    other = make_jobs(lambda ctx: None, every=60, grace=30, name="t.other")
    sched = Scheduler(engine, jobs + other, name="a", now=fake)
    try:
        with statements(engine) as setup:
            assert sched.prepare()
        if engine.dialect.name == "postgresql":
            assert lock_holders(engine) == 1
            standby = Scheduler(engine, jobs, name="b")
            try:
                assert not standby.prepare()  # one leader
            finally:
                standby.release()
            lock_engine = sched._lock_engine
            assert lock_engine is not None
            engines: tuple[Engine, ...] = (engine, lock_engine)
        else:
            # A read snapshot: a plain BEGIN, never BEGIN IMMEDIATE (a writer's turn).
            assert "BEGIN IMMEDIATE" not in setup and "BEGIN" in setup, setup
            engines = (engine,)
        with statements(*engines) as first:
            assert sched.tick() == 2  # each job's slot at T0
        shapes = Counter(first)
        if engine.dialect.name == "postgresql":  # the lock connection checked, then the claims
            assert shapes == Counter({"SELECT 1": 1, "INSERT INTO": 2, "UPDATE SCHEDULER_RUN": 2})
        else:
            assert shapes == Counter(
                {"BEGIN IMMEDIATE": 4, "INSERT INTO": 2, "UPDATE SCHEDULER_RUN": 2}
            ), first
    finally:
        sched.release()
    assert calls == [T0]
    assert sorted((r.job, r.slot, r.outcome) for r in rows(engine)) == [
        ("t.job", T0, "ok"), ("t.other", T0, "ok")]  # fmt: skip
    if engine.dialect.name == "postgresql":
        assert lock_holders(engine) == 0  # released with its connection


def test_what_a_dead_leader_left_is_settled_by_the_first_tick_not_before_ready(engine):
    """A run the previous leader never finished is run again (it may take as long as the
    job), so ``prepare`` leaves it to the first tick, after ready."""
    calls: list[tuple[str, int]] = []
    fake = FakeClock(T0 + timedelta(seconds=1))
    jobs = make_jobs(lambda ctx: calls.append((ctx.job, ctx.attempt)), every=60, grace=120,
                     idempotent=True, name="safe")  # fmt: skip
    dead = Scheduler(engine, jobs, name="dead", now=fake)
    assert dead.try_lead() and dead._claim("safe", T0) is not None  # then the process died
    dead._leader = False
    dead.release()
    sched = Scheduler(engine, jobs, name="b", now=fake)
    try:
        assert sched.prepare()
        assert calls == []
        sched.tick()
    finally:
        sched.release()
    assert calls == [("safe", 2)]
    assert [(r.slot, r.outcome, r.claimed_by) for r in rows(engine)] == [(T0, "ok", "b")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_tick_lets_a_slack_answer_in_progress_go_first(engine, monkeypatch):
    """A slot falls due while the process answers Slack: the tick claims nothing until the
    answer is done, then fires the slot once."""
    monkeypatch.setattr(core, "YIELD_TO_SLACK_S", 60.0)  # until the answer is done
    calls: list[object] = []
    fake = FakeClock(T0 + timedelta(seconds=1))
    sched = Scheduler(engine, make_jobs(lambda ctx: calls.append(ctx.slot), every=60, grace=30),
                      name="a", now=fake)  # fmt: skip
    assert sched.prepare()
    answer, release = answering([])  # a Slack answer, held open
    made: list[int] = []
    ticker = threading.Thread(target=lambda: made.append(sched.tick()), daemon=True)
    try:
        ticker.start()
        wait_until(lambda: priority.deferred() == 1, "the tick to wait for the answer")
        assert rows(engine) == [] and calls == []  # nothing claimed, nothing run
    finally:
        release.set()
        ticker.join(30)
        answer.join(30)
        sched.release()
    assert made == [1] and calls == [T0]
    assert [(r.slot, r.outcome) for r in rows(engine)] == [(T0, "ok")]


def test_serve_warm_up_makes_the_scheduler_lead_before_the_bot_is_ready(engine):
    """The warm-up ``serve`` runs readies the scheduler's first tick beside its other steps:
    held at its last step (before ready), the bot's scheduler already leads (on PostgreSQL,
    its lock is held), though it was not started."""
    slack = SlackSandbox().start()
    settings = Settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret=slack.signing_secret,
        slack={"api_url": slack.base_url},
    )
    bot = Bot.build(settings, engine)
    assert bot.scheduler is not None and not bot.scheduler.is_leader
    entered, gate = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def held() -> None:
        seen["leads"] = bot.scheduler is not None and bot.scheduler.is_leader
        if engine.dialect.name == "postgresql":
            seen["holders"] = lock_holders(engine)
        entered.set()
        assert gate.wait(60), "the test never opened the gate"

    bot.extra_warm_up.append(("held", held))
    warming = threading.Thread(target=lambda: bot.warm_up(scheduler=True), daemon=True)
    try:
        warming.start()
        assert entered.wait(60), "the warm-up never reached the held step"
        assert not bot.ready()
        assert seen["leads"] is True
        if engine.dialect.name == "postgresql":
            assert seen["holders"] == 1
    finally:
        gate.set()
        warming.join(60)
        bot.stop()
        slack.stop()
    if engine.dialect.name == "postgresql":
        assert lock_holders(engine) == 0  # stopping released it
