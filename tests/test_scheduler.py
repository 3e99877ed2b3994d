"""The scheduler: slots from triggers (with time zones), claims that make a slot fire once,
catch-up on takeover, the CLI, and real ``incidentbot scheduler`` processes SIGKILLed.

Time is a fake clock driven by the tests (``tick()`` is called explicitly); only the process test
runs on the real clock, and it waits on database state, never on durations.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from incidentbot import clock, db
from incidentbot.config import Settings
from incidentbot.scheduler.builtin import builtin_jobs
from incidentbot.scheduler.config import JobSchedule, SchedulerSettings
from incidentbot.scheduler.core import Scheduler, make_trigger, resolve_jobs
from incidentbot.scheduler.models import SchedulerRun
from incidentbot.scheduler.registry import RegisteredJob
from tests.ledger_harness import REPO, EffectServer, wait_until

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def rows(engine) -> list[SchedulerRun]:
    with db.transaction(engine) as s:
        return list(s.execute(select(SchedulerRun).order_by(SchedulerRun.slot)).scalars())  # type: ignore[arg-type]


def make_jobs(fn, *, every=None, cron=None, grace=None, idempotent=False, name="t.job"):
    reg = {name: RegisteredJob(name, fn, idempotent=idempotent)}
    cfg = SchedulerSettings(jobs=[JobSchedule(name=name, every=every, cron=cron, grace=grace)])
    return resolve_jobs(cfg, "UTC", reg)


# -- triggers ------------------------------------------------------------------------------------


def test_cron_with_a_time_zone_gives_the_right_utc_slots_across_dst():
    trig = make_trigger("0 9 * * MON", None, "Europe/Berlin")
    entry = JobSchedule(name="w", cron="0 9 * * MON", timezone="Europe/Berlin")
    reg = {"w": RegisteredJob("w", lambda ctx: None)}
    (job,) = resolve_jobs(SchedulerSettings(jobs=[entry]), "UTC", reg)
    assert job.trigger is not None and str(trig) == str(job.trigger)
    spring = list(job.slots(datetime(2026, 3, 16, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC)))
    # Summer time starts on Sunday 29 March 2026: 09:00 CET is 08:00 UTC, 09:00 CEST 07:00 UTC.
    assert spring == [
        datetime(2026, 3, 16, 8, tzinfo=UTC),
        datetime(2026, 3, 23, 8, tzinfo=UTC),
        datetime(2026, 3, 30, 7, tzinfo=UTC),
        datetime(2026, 4, 6, 7, tzinfo=UTC),
    ]
    autumn = list(job.slots(datetime(2026, 10, 19, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)))
    assert autumn == [datetime(2026, 10, 19, 7, tzinfo=UTC), datetime(2026, 10, 26, 8, tzinfo=UTC)]


def test_bad_schedules_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="five-field"):
        JobSchedule(name="x", cron="* * * * * *")
    with pytest.raises(ValueError, match="unknown time zone"):
        JobSchedule(name="x", cron="0 9 * * MON", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="either cron or every"):
        JobSchedule(name="x", cron="0 9 * * MON", every=5)
    from incidentbot.scheduler.core import SchedulerError

    with pytest.raises(SchedulerError, match="no job named 'nope' is registered"):
        resolve_jobs(SchedulerSettings(jobs=[JobSchedule(name="nope", every=5)]), "UTC", {})


BUILTIN = sorted(builtin_jobs(Settings(), None))


# -- claims --------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_config_check_knows_the_built_in_and_imported_jobs(cli, tmp_path):
    def check(config: dict) -> tuple[int, str]:
        (tmp_path / "incidentbot.yaml").write_text(yaml.safe_dump(config))
        code, out, err = cli("config", "check")
        return code, out + err

    code, out = check({"scheduler": {"jobs": [{"name": "reminders.stale", "cron": "0 8 * * MON"}]}})
    assert code == 0, out
    code, out = check({"scheduler": {"jobs": [{"name": "reminders.stal", "enabled": False}]}})
    assert code == 1
    assert "no job named 'reminders.stal' is registered" in out
    assert "reminders.stale" in out  # the known ones are listed
    jobs = [{"name": "harness.effect", "every": 5}]
    code, out = check({"scheduler": {"imports": ["tests.scheduler_harness"], "jobs": jobs}})
    assert code == 0, out
    code, out = check({"scheduler": {"imports": ["tests.no_such_module"]}})
    assert code == 1
    assert "scheduler.imports tests.no_such_module: cannot import it" in out
    code, out = check({"scheduler": {"jobs": [{"name": "reminders.stale", "cron": "0 8 * * 1"}]}})
    assert code != 0
    assert "name the day of the week" in out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scheduler_without_slack_refuses_to_starve_the_built_in_jobs(cli, tmp_path):
    code, _, err = cli("scheduler", "--import", "tests.scheduler_harness")
    assert code == 1
    assert "INCIDENTBOT_SLACK_BOT_TOKEN is not set, and the built-in jobs need Slack" in err
    assert "reminders.status" in err


def test_two_schedulers_racing_fire_each_slot_once(engine):
    calls: list[datetime] = []
    lock = threading.Lock()

    def fn(ctx):
        with lock:
            calls.append(ctx.slot)

    fake = FakeClock(T0 + timedelta(milliseconds=300))
    jobs = make_jobs(fn, every=1, grace=20)
    # Different lock keys: on PostgreSQL both believe they lead (as an old leader might).
    a = Scheduler(engine, jobs, name="a", now=fake, lock_key=1)
    b = Scheduler(engine, jobs, name="b", now=fake, lock_key=2)
    try:
        assert a.try_lead() and b.try_lead()
        for _ in range(3):
            start = threading.Barrier(2)
            made: dict[str, int] = {}

            def go(s: Scheduler, start=start, made=made) -> None:
                start.wait()
                made[s.name] = s.tick()

            threads = [threading.Thread(target=go, args=(s,)) for s in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            fake.t += timedelta(seconds=1)
    finally:
        a.release()
        b.release()
    # now - grace = T0 - 19.7 s: the first slot is T0 - 19 s; the last tick was at T0 + 2.3 s.
    expected = [T0 - timedelta(seconds=19) + timedelta(seconds=i) for i in range(22)]
    assert sorted(calls) == expected  # each slot ran once, none missed
    got = rows(engine)
    assert [r.slot for r in got] == expected
    assert {r.outcome for r in got} == {"ok"}
    assert {r.claimed_by for r in got} <= {"a", "b"}


# SQLite has one scheduler process: its lock is trivial, so this is PostgreSQL's alone.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_only_one_leader_on_postgresql(engine):
    jobs = make_jobs(lambda ctx: None, every=60)
    a, b = Scheduler(engine, jobs, name="a"), Scheduler(engine, jobs, name="b")
    try:
        assert a.try_lead()
        assert not b.try_lead()
        a.release()
        assert b.try_lead()
    finally:
        a.release()
        b.release()


def test_takeover_runs_missed_slots_within_grace_and_records_older_ones_skipped(engine):
    calls: list[tuple[str, datetime]] = []

    def fn(ctx):
        calls.append((ctx.scheduler, ctx.slot))

    fake = FakeClock(T0 + timedelta(seconds=2))
    jobs = make_jobs(fn, cron="* * * * *", grace=150)
    a = Scheduler(engine, jobs, name="a", now=fake)
    b = Scheduler(engine, jobs, name="b", now=fake)
    try:
        assert a.try_lead()
        assert a.tick() == 3  # a new job: the slots of the last `grace` seconds
        assert a.tick() == 0
        a.release()  # a is gone; five minutes pass
        fake.t = T0 + timedelta(minutes=5, seconds=1)
        assert b.try_lead()
        assert b.tick() == 3
    finally:
        a.release()
        b.release()
    m = timedelta(minutes=1)
    assert calls == [("a", T0 - 2 * m), ("a", T0 - m), ("a", T0),
                     ("b", T0 + 3 * m), ("b", T0 + 4 * m), ("b", T0 + 5 * m)]  # fmt: skip
    outcome = {r.slot: (r.outcome, r.claimed_by) for r in rows(engine)}
    assert outcome[T0 + m] == ("skipped", "b")
    assert outcome[T0 + 2 * m] == ("skipped", "b")
    assert [o for o, _ in outcome.values()].count("ok") == 6


def test_a_run_interrupted_by_a_dead_scheduler_is_rerun_if_idempotent_else_failed(engine):
    calls: list[tuple[str, int]] = []
    fake = FakeClock(T0 + timedelta(seconds=1))
    safe = make_jobs(lambda ctx: calls.append((ctx.job, ctx.attempt)), every=60, grace=120,
                     idempotent=True, name="safe")  # fmt: skip
    unsafe = make_jobs(lambda ctx: calls.append((ctx.job, ctx.attempt)), every=60, grace=120,
                       name="unsafe")  # fmt: skip
    dead = Scheduler(engine, safe + unsafe, name="dead", now=fake)
    dead.try_lead()
    assert dead._claim("safe", T0) is not None  # claimed, then the process died
    assert dead._claim("unsafe", T0) is not None
    dead._leader = False
    dead.release()
    b = Scheduler(engine, safe + unsafe, name="b", now=fake)
    try:
        assert b.try_lead()
        b.tick()
    finally:
        b.release()
    assert calls == [("safe", 2)]  # the unsafe run is not guessed at; nothing else is due
    by_job = {r.job: r for r in rows(engine)}
    assert by_job["safe"].outcome == "ok" and by_job["safe"].claimed_by == "b"
    assert by_job["unsafe"].outcome == "failed"
    assert "may or may not have happened" in (by_job["unsafe"].error or "")


def test_a_failing_job_is_recorded_failed_and_the_next_slot_still_runs(engine):
    def fn(ctx):
        if ctx.slot == T0:
            raise RuntimeError("upstream said no")

    fake = FakeClock(T0 + timedelta(seconds=1))
    s = Scheduler(engine, make_jobs(fn, every=60, grace=30), name="a", now=fake)
    try:
        s.try_lead()
        s.tick()
        fake.t += timedelta(seconds=60)
        s.tick()
    finally:
        s.release()
    assert [(r.outcome, r.error) for r in rows(engine)] == [
        ("failed", "RuntimeError: upstream said no"),
        ("ok", None),
    ]


# -- the CLI -------------------------------------------------------------------------------------


def test_jobs_list_shows_schedule_next_run_and_recent_outcomes(cli, engine, tmp_path):
    (tmp_path / "incidentbot.yaml").write_text(yaml.safe_dump({
        "timezone": "UTC",
        "scheduler": {"jobs": [{"name": "harness.effect", "cron": "0 9 * * MON",
                                "timezone": "Europe/Berlin", "grace": 300}]},
    }))  # fmt: skip
    with db.transaction(engine) as s:
        for minutes, outcome, error in [(0, "ok", None), (1, "failed", "Boom: it broke"),
                                        (2, "skipped", "missed")]:  # fmt: skip
            s.add(SchedulerRun(job="harness.effect", slot=T0 + timedelta(minutes=minutes),
                               claimed_by="x", outcome=outcome, error=error))  # fmt: skip
        s.add(SchedulerRun(job="old.job", slot=T0, claimed_by="x", outcome="ok"))
    clock.set_clock(lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # a Wednesday
    try:
        code, out, err = cli("jobs", "list", "--import", "tests.scheduler_harness")
    finally:
        clock.set_clock(None)
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines() if len(line.split()) > 1}
    assert "harness.effect" in lines, out
    line = lines["harness.effect"]
    assert "cron 0 9 * * MON (Europe/Berlin)" in line
    assert "2026-11-30 08:00:00 UTC" in line  # next Monday, 09:00 in Berlin
    assert "skipped failed ok" in line  # newest first
    assert "Boom: it broke" in line
    assert "not registered" in lines["old.job"]


# -- real processes ------------------------------------------------------------------------------


class SchedulerProcess:
    def __init__(self, url: str, config: Path, effect_url: str, name: str, log_path: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.update(INCIDENTBOT_DATABASE_URL=url, INCIDENTBOT_CONFIG=str(config),
                   SCHEDULER_HARNESS_URL=effect_url, PYTHONPATH=str(REPO))  # fmt: skip
        self.name = name
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from incidentbot.cli import main; sys.exit(main())",
             "scheduler", "--import", "tests.scheduler_harness", "--name", name],
            cwd=log_path.parent, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self._log.close()
        return code


@pytest.mark.postgres
def test_three_scheduler_processes_fire_every_slot_exactly_once_through_two_leader_kills(
    pg_cluster, pg_template, tmp_path
):
    name = f"sched_{os.getpid()}"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = pg_cluster.url(name)
    engine = db.make_engine(url)
    config = tmp_path / "incidentbot.yaml"
    # Only the harness job: the built-in ones (which need Slack) are switched off.
    builtin = [{"name": n, "enabled": False} for n in BUILTIN]
    config.write_text(yaml.safe_dump({"scheduler": {
        "retry": 0.5,
        "jobs": [{"name": "harness.effect", "every": 1, "grace": 30}, *builtin]}}))  # fmt: skip
    server = EffectServer().start()
    procs = {n: SchedulerProcess(url, config, server.url, n, tmp_path / f"{n}.log")
             for n in ("s1", "s2", "s3")}  # fmt: skip
    alive = dict(procs)

    def newest() -> SchedulerRun | None:
        with db.transaction(engine) as s:
            return (
                s.execute(
                    select(SchedulerRun)
                    .where(SchedulerRun.outcome == "ok")  # type: ignore[arg-type]
                    .order_by(SchedulerRun.slot.desc())
                    .limit(1)  # type: ignore[attr-defined]
                )
                .scalars()
                .first()
            )

    try:
        leaders = []
        for _kill in range(2):
            # Let the current leader fire a few slots, then SIGKILL it mid-schedule.
            # The first time, three processes start cold: slow on a loaded machine.
            first = wait_until(lambda: (r := newest()) and r.claimed_by in alive and r,
                               "a leader to fire", 120)  # fmt: skip
            wait_until(lambda f=first: (r := newest()) and r.slot >= f.slot + timedelta(seconds=2),
                       "the leader to fire more slots", 30)  # fmt: skip
            leader = newest().claimed_by  # type: ignore[union-attr]
            leaders.append(leader)
            killed_at = newest().slot  # type: ignore[union-attr]
            alive.pop(leader).kill()
            # A standby takes over and fires slots after the kill.
            wait_until(lambda k=killed_at: (r := newest()) and r.slot > k + timedelta(seconds=1)
                       and r.claimed_by in alive and r, "a standby to take over", 30)  # fmt: skip
        last = newest().slot  # type: ignore[union-attr]
        wait_until(lambda: newest().slot >= last + timedelta(seconds=2), "more slots", 30)  # type: ignore[union-attr]
        (survivor,) = alive.values()
        assert survivor.terminate() == 0
        alive.clear()
    finally:
        for p in alive.values():
            p.kill()
        server.stop()
    got = rows(engine)
    engine.dispose()
    assert len(leaders) == 2 and len(set(leaders)) == 2
    slots = [r.slot for r in got]
    assert slots == sorted(set(slots))  # one row per slot
    span = int((slots[-1] - slots[0]).total_seconds())
    assert slots == [slots[0] + timedelta(seconds=i) for i in range(span + 1)]  # none missed
    assert {r.outcome for r in got} == {"ok"}, [(r.slot, r.outcome, r.error) for r in got
                                                  if r.outcome != "ok"]  # fmt: skip
    assert len({r.claimed_by for r in got}) == 3  # every process led at some point
    tokens = [f"scheduler:harness.effect:{s.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}" for s in slots]
    applied = server.applied()
    assert sorted(applied) == sorted(tokens)  # every slot's effect happened …
    assert set(applied.values()) == {1}  # … exactly once
