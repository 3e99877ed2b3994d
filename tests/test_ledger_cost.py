"""What one step costs the database, on both back ends: the statements a worker sends for each
plain step of a ledger run and of a runbook run, counted (a count is deterministic where a
time is noise), so that a read or an ORM load creeping back onto the hot path fails here.

Each figure is the difference between a longer and a shorter run of the same steps, divided by
the steps between them: what claiming a run and ending it cost cancels out.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import ANY

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from incidentbot import db, ledger
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import TimelineEvent
from incidentbot.ledger import events
from incidentbot.ledger.leases import any_due, claim_next
from incidentbot.ledger.models import RUNNING, STEP_SUCCEEDED
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import planning, runtime
from incidentbot.runbooks.actions import registry
from incidentbot.runbooks.loader import load_text

SHORT, LONG = 3, 7


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent through ``engine`` meanwhile, as its verb and table, and every
    commit (``COMMIT``: with fsync on, each is a flush of the database's log to disk)."""
    seen: list[str] = []

    def record(_conn, _cursor, sql: str, *_args) -> None:
        seen.append(_shape(sql))

    def committed(_conn) -> None:
        seen.append("COMMIT")

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "commit", committed)


def _shape(sql: str) -> str:
    words = sql.split()
    verb = words[0].upper()
    if verb == "SELECT":
        found = re.search(r"\bFROM\s+(\w+)", sql, re.IGNORECASE)
        return "SELECT " + (found.group(1) if found else "(the clock)")
    if verb in ("UPDATE", "INSERT", "DELETE"):
        table = words[2] if verb in ("INSERT", "DELETE") else words[1]
        return f"{verb} {table}"
    return " ".join(words[:2]) if verb in ("BEGIN", "RELEASE") else verb


def drive_once(engine: Engine) -> None:
    """One worker claims the due run and drives it as far as it goes."""
    worker = ledger.Worker(engine, name="cost", lease=30)
    try:
        assert worker.run_once()
    finally:
        worker.close()


def per_step(engine: Engine, start: Callable[[int], int]) -> Counter[str]:
    """Statements per step: a run of LONG steps less a run of SHORT ones, over the difference."""
    counts = []
    for steps in (SHORT, LONG):
        rid = start(steps)
        with statements(engine) as seen:
            drive_once(engine)
        with db.read(engine) as s:
            done = ledger.get_steps(s, rid)
        assert [st.status for st in done] == [STEP_SUCCEEDED] * steps
        assert all(st.attempts == 1 for st in done)
        counts.append(Counter(seen))
    extra = counts[1] - counts[0]
    assert all(n % (LONG - SHORT) == 0 for n in extra.values()), extra
    return Counter({k: n // (LONG - SHORT) for k, n in extra.items()})


def begins(engine: Engine, n: int) -> Counter[str]:
    """What ``n`` transactions cost beyond their own statements: a commit each. SQLite shows
    how each starts (a write one takes the lock up front); PostgreSQL's driver begins
    implicitly. Where writes commit in groups (SQLite's default), each transaction is a
    savepoint of its group's (one writer here: a group of one, one commit)."""
    found: Counter[str] = Counter({"COMMIT": n})
    if engine.dialect.name == "sqlite":
        found["BEGIN IMMEDIATE"] = n
    if db.writers(engine) is not None:
        found.update({"SAVEPOINT": n, "RELEASE SAVEPOINT": n})
    return found


def ledger_step(engine: Engine) -> Counter[str]:
    """A plain ledger step of a run of idempotent steps: one commit, which records the step
    before it and marks it started: the fence moving the cursor (and reading the run), the
    previous step's update and this one's. No SELECT, no ORM load. On PostgreSQL the three
    are one statement (the fence in a ``WITH``): one round trip."""
    if engine.dialect.name == "postgresql":
        return begins(engine, 1) + Counter({"WITH": 1})
    return begins(engine, 1) + Counter({"UPDATE ledger_run": 1, "UPDATE ledger_step": 2})


def test_a_plain_ledger_step_is_one_fenced_transaction_without_a_read(engine):
    def start(steps: int) -> int:
        with db.transaction(engine) as s:
            run = ledger.start_run(
                s, kind="cost", key=str(uuid.uuid4()), actor="test",
                steps=[{"name": f"noop {i}", "action": "ledger.noop", "input": {"i": i}}
                       for i in range(steps)],
            )  # fmt: skip
            assert run.id is not None
            return run.id

    cost = per_step(engine, start)
    assert cost == ledger_step(engine), cost


def test_a_step_before_a_non_idempotent_one_commits_alone(engine):
    """Marking a non-idempotent step started in the commit of the step before it would leave,
    after a crash between the two, a step that may or may not have happened, to a person:
    each step of such a run keeps its two commits, with the clean point between them."""

    def start(steps: int) -> int:
        with db.transaction(engine) as s:
            run = ledger.start_run(
                s, kind="cost", key=str(uuid.uuid4()), actor="test",
                steps=[{"name": f"noop {i}", "action": "ledger.noop", "idempotent": False}
                       for i in range(steps)],
            )  # fmt: skip
            assert run.id is not None
            return run.id

    cost = per_step(engine, start)
    if engine.dialect.name == "postgresql":
        assert cost == begins(engine, 2) + Counter({"WITH": 2}), cost
    else:
        two = Counter({"UPDATE ledger_run": 2, "UPDATE ledger_step": 2})
        assert cost == begins(engine, 2) + two, cost


def _noop_run(engine: Engine, steps: int = 1) -> int:
    with db.transaction(engine) as s:
        run = ledger.start_run(
            s, kind="cost", key=str(uuid.uuid4()), actor="test",
            steps=[{"name": f"noop {i}", "action": "ledger.noop"} for i in range(steps)],
        )  # fmt: skip
        assert run.id is not None
        return run.id


def test_starting_a_run_without_a_target_is_two_inserts_with_the_clock_read_inside(engine):
    with db.transaction(engine) as s:
        now = db.db_now(s)
    steps = [{"name": "noop", "action": "ledger.noop"}]
    with statements(engine) as seen, db.transaction(engine) as s:
        later = ledger.start_run(s, kind="cost", key="later", actor="test", steps=steps,
                                 wake_at=now + timedelta(hours=1))  # fmt: skip
        past = ledger.start_run(s, kind="cost", key="past", actor="test", steps=steps,
                                wake_at=now - timedelta(hours=1))  # fmt: skip
    assert Counter(seen) == begins(engine, 1) + Counter(
        {"INSERT ledger_run": 2, "INSERT ledger_step": 2}
    ), seen
    with db.read(engine) as s:
        stored = {key: ledger.get_by_key(s, key) for key in ("later", "past")}
    # A wake time ahead of the database clock is kept; one behind it is no wait at all.
    assert stored["later"].wake_at == now + timedelta(hours=1) == later.wake_at
    assert stored["past"].wake_at is None and past.wake_at is None
    for run in stored.values():
        assert now <= run.created_at == run.updated_at
    assert (later.created_at, past.created_at) == (
        stored["later"].created_at,
        stored["past"].created_at,
    )


def test_claiming_a_pending_run_is_one_statement(engine):
    rid = _noop_run(engine)
    with statements(engine) as seen, db.transaction(engine) as s:
        run = claim_next(s, "cost-worker", 30)
        assert run is not None and run.id == rid
        assert (run.status, run.owner, run.wake_at) == (RUNNING, "cost-worker", None)
    # The oldest due run, its lease and its start in one UPDATE ... RETURNING, the clock read
    # inside it: no SELECT, no ORM load, no flush.
    assert Counter(seen) == begins(engine, 1) + Counter({"UPDATE ledger_run": 1}), seen
    with db.read(engine) as s:
        stored = ledger.get_run(s, rid)
    assert (stored.status, stored.owner) == (RUNNING, "cost-worker")
    assert stored.started_at is not None and stored.lease_expires_at is not None
    assert stored.created_at <= stored.started_at <= stored.updated_at
    assert stored.lease_expires_at - stored.updated_at > timedelta(seconds=29)
    with db.transaction(engine) as s:  # held: no other worker gets it
        assert claim_next(s, "other-worker", 30) is None


def test_a_one_step_run_is_claimed_run_and_ended_in_two_transactions(engine):
    rid = _noop_run(engine)
    with statements(engine) as seen:
        drive_once(engine)
    # Claimed (the spec read with it) and its idempotent step started in the same commit
    # (claim, step); the step's result and the run's end (fence, run, step). On PostgreSQL
    # each is one statement (the step's start in the claim's WITH, the end folded into the
    # fence). No SELECT, no ORM load.
    if engine.dialect.name == "postgresql":
        expected = Counter({"WITH": 2})
    else:
        expected = Counter({"UPDATE ledger_run": 3, "UPDATE ledger_step": 2})
    assert Counter(seen) == begins(engine, 2) + expected, seen
    with db.read(engine) as s:
        run, steps = ledger.get_run(s, rid), ledger.get_steps(s, rid)
    assert (run.status, run.cursor, run.owner, run.lease_expires_at) == ("succeeded", 1, ANY, None)
    assert run.finished_at is not None and run.finished_at == run.updated_at
    assert [(st.status, st.attempts, st.output) for st in steps] == [(STEP_SUCCEEDED, 1, {})]
    assert run.started_at is not None and run.started_at <= steps[0].started_at <= run.finished_at


def test_a_run_whose_first_step_is_not_idempotent_is_claimed_in_a_commit_of_its_own(engine):
    """The step could not be started in the claim's commit without leaving, after a crash
    right after it, a step that may or may not have happened: the claim commits alone and the
    step starts in a commit of its own (fence, step), three transactions in all (on
    PostgreSQL one statement each: the claim that tried to start the step in its WITH, the
    fence with the start, the fence with the end)."""
    with db.transaction(engine) as s:
        rid = ledger.start_run(s, kind="cost", key="once", actor="test", steps=[
            {"name": "once", "action": "ledger.noop", "idempotent": False}]).id  # fmt: skip
    with statements(engine) as seen:
        drive_once(engine)
    if engine.dialect.name == "postgresql":
        expected = Counter({"WITH": 3})
    else:
        expected = Counter({"UPDATE ledger_run": 4, "UPDATE ledger_step": 2})
    assert Counter(seen) == begins(engine, 3) + expected, seen
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "succeeded"


_CLAIM = re.compile(r"ORDER BY ledger_run\.id\s+LIMIT", re.IGNORECASE)


def test_a_new_run_wakes_one_idle_worker_of_the_pool_not_all_of_them(engine):
    """Each idle worker woken makes a claim transaction: the one new run is claimed by one
    worker, and the others keep sleeping (their poll is a minute away)."""
    claims: list[str] = []
    all_idle, finished = threading.Event(), threading.Event()
    at_end: list[int] = []
    threads = 3

    def record(_conn, _cursor, sql: str, *_args) -> None:
        if _CLAIM.search(sql) and sql.lstrip().upper().startswith(("UPDATE", "WITH")):
            claims.append(threading.current_thread().name)
            if len(claims) == threads:
                all_idle.set()  # each worker's first claim, at start, found nothing

    def on_event(ev: events.LedgerEvent) -> None:
        if ev.kind == "run.succeeded":
            at_end.append(len(claims))
            finished.set()

    event.listen(engine, "before_cursor_execute", record)
    unsubscribe = events.subscribe(on_event)
    pool = ledger.WorkerPool(engine, threads=threads, poll=60, name="wake").start()
    try:
        assert all_idle.wait(20), claims
        _noop_run(engine)
        assert finished.wait(20)
    finally:
        pool.stop()
        unsubscribe()
        event.remove(engine, "before_cursor_execute", record)
    assert at_end == [threads + 1], claims


def test_after_a_run_a_worker_with_no_wake_up_waiting_reads_before_claiming(engine):
    """A claim that finds nothing still takes the write turn (and on SQLite a commit): once
    its run has ended, a worker that no new run woke first reads whether anything is due,
    and with nothing due writes nothing at all."""
    seen: list[tuple[str, str]] = []
    first_claim, looked = threading.Event(), threading.Event()
    ended: list[int] = []

    def record(_conn, _cursor, sql: str, *_args) -> None:
        name = threading.current_thread().name
        if not name.startswith("look/"):
            return
        seen.append((name, _shape(sql)))
        if ended and _shape(sql) == "SELECT ledger_run":
            looked.set()

    def claimed(_conn, _cursor, sql: str, *_args) -> None:
        # Once the claim at start has run, not before: a run added while it is on its way
        # would be found by it, and the wake-up the run sends would make a second claim.
        name = threading.current_thread().name
        claim = _CLAIM.search(sql) and sql.lstrip().upper().startswith(("UPDATE", "WITH"))
        if name.startswith("look/") and claim:
            first_claim.set()

    def on_event(ev: events.LedgerEvent) -> None:
        if ev.kind == "run.succeeded":
            ended.append(len(seen))

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "after_cursor_execute", claimed)
    unsubscribe = events.subscribe(on_event)
    pool = ledger.WorkerPool(engine, threads=1, poll=60, name="look").start()
    try:
        assert first_claim.wait(20)  # the claim at start, which found nothing
        rid = _noop_run(engine)
        assert looked.wait(20), seen
    finally:
        pool.stop()
        unsubscribe()
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "after_cursor_execute", claimed)
    after = [shape for _name, shape in seen[ended[0] :]]
    # On SQLite in a deferred transaction (a snapshot, no lock), ended without a commit.
    begin = ["BEGIN"] if engine.dialect.name == "sqlite" else []
    assert after == [*begin, "SELECT ledger_run"], after
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "succeeded"


def test_whether_a_run_is_due_is_read_as_a_claim_would_find_it(engine):
    """The read a worker makes before a claim likely to find nothing (see above) says "due"
    exactly when a claim would take a run."""
    assert not any_due(engine)
    rid = _noop_run(engine)
    assert any_due(engine) and any_due(engine, run_id=rid)
    assert not any_due(engine, run_id=rid + 1)
    with db.transaction(engine) as s:
        assert claim_next(s, "holder", 30) is not None  # held on a live lease: not due
    assert not any_due(engine)
    with db.transaction(engine) as s:
        now = db.db_now(s)
        later = now + timedelta(hours=1)
        ledger.start_run(s, kind="cost", key="later", actor="test", wake_at=later,
                         steps=[{"name": "noop", "action": "ledger.noop"}])  # fmt: skip
    assert not any_due(engine)  # waiting for its time
    with db.transaction(engine) as s:
        run = ledger.get_run(s, rid)
        run.lease_expires_at = now - timedelta(seconds=1)  # its worker died
        s.add(run)
    assert any_due(engine, run_id=rid)
    with db.transaction(engine) as s:
        assert claim_next(s, "taker", 30) is not None  # which a claim takes over


RUNBOOK = """
name: cost
params:
  node: {type: string, default: rpc-1}
target: node
steps:
"""


@pytest.fixture
def runbooks(engine):
    settings = Settings()
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC", severity="SEV2", actor="alice")
    runtime.install(engine, settings)

    def start(text: str) -> int:
        runbook = load_text(text, "cost.yaml", registry)
        plan = planning.plan(runbook, {"node": str(uuid.uuid4())})
        with db.transaction(engine) as s:
            row = rb_engine.start(s, settings, plan, key=str(uuid.uuid4()), requester="alice",
                                  incident=svc.get(s, "INC-1"), source="cli")  # fmt: skip
            return row.run_id

    return start


def checks(steps: int, that: str) -> str:
    """A runbook of ``check.that`` steps: the first checks ``true``, the others ``that``."""
    lines = [RUNBOOK.strip()]
    for i in range(steps):
        lines += [f"  - id: s{i}", "    uses: check.that",
                  f"    with: {{that: {that if i else 'true'}, "
                  "otherwise: 'stop on {{ params.node }}'}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def on_timeline(engine: Engine, kind: str) -> int:
    with db.read(engine) as s:
        stmt = select(func.count()).select_from(TimelineEvent).where(TimelineEvent.kind == kind)
        return int(s.execute(stmt).scalar_one())


def runbook_step(engine: Engine) -> Counter[str]:
    """A plain runbook step: the ledger step; one read of the run and its incident (one join,
    the definition cached), in the transaction that marks the step started; the step's start
    and its result each on the timeline, one INSERT in the transition's own transaction. No
    transaction of its own, no savepoint."""
    return ledger_step(engine) + Counter({"SELECT runbook_run": 1, "INSERT timeline_event": 2})


def test_a_runbook_step_adds_one_read_and_its_two_timeline_lines(engine, runbooks):
    cost = per_step(engine, lambda n: runbooks(checks(n, "true")))
    assert cost == runbook_step(engine), cost
    assert on_timeline(engine, "runbook.step_succeeded") == SHORT + LONG


def test_a_runbook_step_that_reads_earlier_steps_also_reads_their_results(engine, runbooks):
    that = "\"{{ steps.s0.status == 'succeeded' }}\""
    cost = per_step(engine, lambda n: runbooks(checks(n, that)))
    assert cost == runbook_step(engine) + Counter({"SELECT ledger_step": 1}), cost


def test_a_declares_channel_and_announcement_runs_are_two_inserts_and_a_repeat_adds_none(engine):
    """The runs a declare queues while Slack waits for its acknowledgement: both runs in one
    multi-row INSERT, all their steps in one more; a repeated declare (a retried request)
    inserts no run twice and still reads back nothing it does not check."""
    from incidentbot.incidents import effects
    from incidentbot.ledger.actions import registry as actions

    for name in ("chat.open_channel", "chat.digest"):
        if actions.get(name) is None:
            actions.register(name, lambda *_a, **_k: None, idempotent=True)
    created: list[events.LedgerEvent] = []
    unsubscribe = events.subscribe(created.append)
    try:
        with db.transaction(engine) as s:
            inc = svc.declare(s, Settings(), title="RPC", severity="SEV2", actor="alice")
        with statements(engine) as seen, db.transaction(engine) as s:
            effects.start_declare_effects(s, svc.get(s, "INC-1"), declarer="alice")
        with db.transaction(engine) as s:  # a repeated declare: the same keys
            effects.start_declare_effects(s, svc.get(s, "INC-1"), declarer="alice")
    finally:
        unsubscribe()
    # Beyond reading the incident (svc.get): no read of a key, no clock, no flush.
    assert Counter(seen) == begins(engine, 1) + Counter(
        {"SELECT incident": 1, "INSERT ledger_run": 1, "INSERT ledger_step": 1}
    ), seen
    with db.read(engine) as s:
        stored = {k: ledger.get_by_key(s, f"INC-1:{k}") for k in ("channel", "refresh:declared")}
        steps = {k: [st.action for st in ledger.get_steps(s, r.id)] for k, r in stored.items()}
        total = s.execute(select(func.count()).select_from(ledger.Run)).scalar_one()
    assert total == 2
    assert steps == {"channel": ["chat.open_channel"], "refresh:declared": ["chat.digest"]}
    assert all(r.incident_id == inc.id and r.created_by == "alice" for r in stored.values())
    assert sorted((e.kind, e.run_id) for e in created) == sorted(
        ("run.created", r.id) for r in stored.values()
    )
