"""One commit between two steps (``incidentbot/ledger/chained.py``), on SQLite and PostgreSQL:
step N's success and step N+1's start commit together when N+1 is idempotent and plain. What
the next step's ``prepare`` reads, the order callbacks and hooks see, what a database error, a
lost lease, a shutdown or a Slack answer in progress leave."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select, text, update

from incidentbot import db, ledger, priority
from incidentbot.ledger import worker as worker_module
from incidentbot.ledger.models import Run, Step
from tests.ledger_harness import wait_until
from tests.test_storage_concurrency import answering

_step = Step.__table__  # type: ignore[attr-defined]
_run = Run.__table__  # type: ignore[attr-defined]


def start(engine, actions: ledger.ActionRegistry, steps: list[dict], key: str = "k") -> int:
    with db.transaction(engine) as s:
        run = ledger.start_run(s, kind="test", key=key, steps=steps, actor="test",
                               actions=actions)  # fmt: skip
        assert run.id is not None
        return run.id


def drive(engine, actions: ledger.ActionRegistry, **kw) -> ledger.Worker:
    worker = ledger.Worker(engine, name="chain", lease=30, actions=actions, **kw)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    return worker


def steps_of(engine, rid: int) -> list[tuple[str, int, dict | None]]:
    with db.read(engine) as s:
        return [(st.status, st.attempts, st.output) for st in ledger.get_steps(s, rid)]


@pytest.fixture
def seen() -> Iterator[list[tuple[str, str, int | None]]]:
    """What subscribers (after commit) and transition hooks (inside it) see, in order."""
    out: list[tuple[str, str, int | None]] = []
    unsubscribe = ledger.subscribe(lambda ev: out.append(("event", ev.kind, ev.step_index)))
    remove = ledger.on_transition(lambda _s, ev: out.append(("hook", ev.kind, ev.step_index)))
    yield out
    unsubscribe()
    remove()


def test_the_next_steps_prepare_reads_the_previous_output_in_the_shared_commit(engine, seen):
    """Each step's ``prepare`` runs in the commit that records the step before it: it reads
    that step succeeded with its output, and itself started. Callbacks and hooks see each
    step's success before the next one's start, as with two commits."""
    actions = ledger.ActionRegistry()

    def prepare(session, ctx: ledger.StepContext, _data: dict) -> dict:
        rows = session.execute(
            select(_step.c.idx, _step.c.status, _step.c.output)
            .where(_step.c.run_id == ctx.run_id)
            .order_by(_step.c.idx)
        ).all()
        before = rows[ctx.step_index - 1] if ctx.step_index else None
        return {
            "me": rows[ctx.step_index].status,
            "before": None if before is None else [before.status, before.output],
        }

    actions.register("test.chain", lambda ctx, _d: {"n": ctx.step_index, **ctx.prepared},
                     idempotent=True, prepare=prepare)  # fmt: skip
    rid = start(engine, actions, [{"name": f"s{i}", "action": "test.chain"} for i in range(3)])
    commits: list[object] = []
    record = commits.append  # one bound method, to remove what was listened
    event.listen(engine, "commit", record)
    try:
        drive(engine, actions)
    finally:
        event.remove(engine, "commit", record)
    # The claim with step 0's start, two shared commits, the last step's success with the
    # run's end (two commits a step and the claim's own would be seven).
    assert len(commits) == 4

    first = {"n": 0, "me": "started", "before": None}
    second = {"n": 1, "me": "started", "before": ["succeeded", first]}
    third = {"n": 2, "me": "started", "before": ["succeeded", second]}
    assert steps_of(engine, rid) == [
        ("succeeded", 1, first), ("succeeded", 1, second), ("succeeded", 1, third)]  # fmt: skip
    for who in ("hook", "event"):
        order = [(kind, idx) for w, kind, idx in seen if w == who and kind.startswith("step.")]
        assert order == [("step.started", 0), ("step.succeeded", 0), ("step.started", 1),
                         ("step.succeeded", 1), ("step.started", 2),
                         ("step.succeeded", 2)], (who, seen)  # fmt: skip


def test_a_database_error_in_the_next_start_leaves_the_success_recorded(engine, caplog):
    """The next step's ``prepare`` hits a database error once: the shared commit is rolled
    back whole, the success is then recorded alone, and the next step starts in a commit of
    its own and runs once."""
    actions = ledger.ActionRegistry()
    broken = {"times": 1}

    def prepare(session, ctx: ledger.StepContext, _data: dict) -> None:
        if ctx.step_index == 1 and broken["times"]:
            broken["times"] -= 1
            session.execute(text("SELECT * FROM no_such_table"))

    ran: list[int] = []
    actions.register("test.flaky", lambda ctx, _d: ran.append(ctx.step_index) or {},
                     idempotent=True, prepare=prepare)  # fmt: skip
    rid = start(engine, actions, [{"name": f"s{i}", "action": "test.flaky"} for i in range(2)])
    drive(engine, actions)
    assert ran == [0, 1] and broken["times"] == 0
    assert steps_of(engine, rid) == [("succeeded", 1, {}), ("succeeded", 1, {})]
    assert "recording step 1 with the start of the next failed; recording it alone" in caplog.text
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "succeeded"


def test_a_lost_lease_writes_neither_the_success_nor_the_next_start(engine):
    """Another worker took the run while step 1 ran: its success is not recorded and step 2
    is not started by the worker that lost it."""
    actions = ledger.ActionRegistry()

    def steal(ctx: ledger.StepContext, _data: dict) -> dict:
        with db.transaction(engine) as s:
            s.execute(update(_run).where(_run.c.id == ctx.run_id).values(owner="thief"))
        return {"done": True}

    actions.register("test.steal", steal, idempotent=True)
    actions.register("test.next", lambda _c, _d: {}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.steal"},
                                  {"name": "b", "action": "test.next"}])  # fmt: skip
    drive(engine, actions)
    assert steps_of(engine, rid) == [("started", 1, None), ("pending", 0, None)]
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).owner == "thief"


def test_a_worker_told_to_stop_records_the_step_alone_and_hands_the_run_back(engine):
    """A shutdown during step 1: its success commits alone and the run goes back with the
    idempotent step 2 pending, not started, for another worker to run at once."""
    actions = ledger.ActionRegistry()
    stop = threading.Event()
    actions.register("test.stop", lambda _c, _d: stop.set() or {}, idempotent=True)
    actions.register("test.next", lambda _c, _d: {"ran": True}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.stop"},
                                  {"name": "b", "action": "test.next"}])  # fmt: skip
    drive(engine, actions, stop=stop)
    assert steps_of(engine, rid) == [("succeeded", 1, {}), ("pending", 0, None)]
    with db.read(engine) as s:
        run = ledger.get_run(s, rid)
    assert (run.status, run.owner) == ("pending", None)
    drive(engine, actions)
    assert steps_of(engine, rid)[1] == ("succeeded", 1, {"ran": True})


def test_while_slack_is_answered_the_step_commits_alone_and_the_next_waits(engine, monkeypatch):
    """A Slack answer in progress when step 1 returns: its success commits at once, alone;
    step 2 is not started until the answer is done (the worker yields to it)."""
    monkeypatch.setattr(worker_module, "YIELD_TO_SLACK_S", 60.0)  # until the answer is done
    actions = ledger.ActionRegistry()
    held: list[tuple[threading.Thread, threading.Event]] = []  # a Slack answer, held open

    def first(_ctx, _data) -> dict:
        held.append(answering([]))
        return {}

    actions.register("test.first", first, idempotent=True)
    actions.register("test.next", lambda _c, _d: {"ran": True}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.first"},
                                  {"name": "b", "action": "test.next"}])  # fmt: skip
    worker = threading.Thread(target=drive, args=(engine, actions), daemon=True)
    worker.start()
    try:
        wait_until(lambda: priority.deferred() == 1, "the worker to wait for the answer")
        assert steps_of(engine, rid) == [("succeeded", 1, {}), ("pending", 0, None)]
    finally:
        for _answer, release in held:
            release.set()
    worker.join(30)
    assert not worker.is_alive()
    assert steps_of(engine, rid)[1] == ("succeeded", 1, {"ran": True})


# -- the claim and the first step's start in one commit ----------------------------------------


def test_the_first_steps_prepare_reads_the_run_claimed_and_itself_started(engine, seen):
    """The claim and the first step's start are one commit: the step's ``prepare`` reads,
    inside it, the run held by this worker on a live lease and the step started; callbacks
    and hooks see the claim before the start."""
    actions = ledger.ActionRegistry()

    def prepare(session, ctx: ledger.StepContext, _data: dict) -> dict:
        run = session.execute(
            select(_run.c.status, _run.c.owner, _run.c.lease_expires_at > _run.c.updated_at)
            .where(_run.c.id == ctx.run_id)
        ).one()  # fmt: skip
        me = session.execute(
            select(_step.c.status).where(_step.c.run_id == ctx.run_id, _step.c.idx == 0)
        ).scalar_one()
        return {"run": [run[0], run[1].startswith("chain:"), bool(run[2])], "me": me}

    actions.register("test.first", lambda ctx, _d: dict(ctx.prepared), idempotent=True,
                     prepare=prepare)  # fmt: skip
    rid = start(engine, actions, [{"name": "a", "action": "test.first"}])
    commits: list[object] = []
    record = commits.append
    event.listen(engine, "commit", record)
    try:
        drive(engine, actions)
    finally:
        event.remove(engine, "commit", record)
    assert len(commits) == 2  # the claim with the start, the success with the run's end
    assert steps_of(engine, rid) == [
        ("succeeded", 1, {"run": ["running", True, True], "me": "started"})]  # fmt: skip
    for who in ("hook", "event"):
        order = [kind for w, kind, _ in seen if w == who]
        assert order == ["run.created", "run.claimed", "step.started", "step.succeeded",
                         "run.succeeded"], (who, seen)  # fmt: skip


def test_a_database_error_in_the_first_start_leaves_the_run_claimed_alone(engine, caplog):
    """The first step's ``prepare`` hits a database error once: the claim and the start are
    rolled back together (nothing half-done), the run is claimed alone, its step starts in a
    commit of its own and runs once."""
    actions = ledger.ActionRegistry()
    broken = {"times": 1}

    def prepare(session, _ctx, _data: dict) -> None:
        if broken["times"]:
            broken["times"] -= 1
            session.execute(text("SELECT * FROM no_such_table"))

    ran: list[int] = []
    actions.register("test.flaky", lambda ctx, _d: ran.append(ctx.attempt) or {},
                     idempotent=True, prepare=prepare)  # fmt: skip
    rid = start(engine, actions, [{"name": "a", "action": "test.flaky"}])
    drive(engine, actions)
    assert ran == [1] and broken["times"] == 0
    assert steps_of(engine, rid) == [("succeeded", 1, {})]
    assert "claiming it with the start of its first step failed; claiming it alone" in caplog.text
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "succeeded"


def test_a_worker_told_to_stop_hands_a_claimed_run_back_with_its_step_pending(engine):
    actions = ledger.ActionRegistry()
    actions.register("test.next", lambda _c, _d: {"ran": True}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.next"}])
    stop = threading.Event()
    stop.set()
    drive(engine, actions, stop=stop)
    assert steps_of(engine, rid) == [("pending", 0, None)]
    with db.read(engine) as s:
        run = ledger.get_run(s, rid)
    assert (run.status, run.owner) == ("pending", None)


def test_a_run_cancelled_before_its_claim_starts_no_step_but_its_clean_up(engine):
    """Cancelled while pending, with a clean-up step ahead: the claim starts nothing in its
    commit; the first step is skipped (never run), the clean-up step runs."""
    actions = ledger.ActionRegistry()
    ran: list[str] = []
    actions.register("test.work", lambda ctx, _d: ran.append(ctx.step_name) or {},
                     idempotent=True)  # fmt: skip
    steps = [{"name": "work", "action": "test.work"},
             {"name": "tidy", "action": "test.work", "always": True}]  # fmt: skip
    rid = start(engine, actions, steps)
    with db.transaction(engine) as s:
        ledger.cancel(s, rid, actor="cli:carol")
    drive(engine, actions)
    assert ran == ["tidy"]
    assert [st[:2] for st in steps_of(engine, rid)] == [("skipped", 0), ("succeeded", 1)]
    with db.read(engine) as s:
        assert ledger.get_run(s, rid).status == "cancelled"


def test_while_slack_is_answered_the_claim_commits_alone_and_the_step_waits(engine, monkeypatch):
    """A Slack answer begins just after the worker's yield, as it claims the run: the claim
    commits alone, and the first step is not started until the answer is done (the worker
    yields to it)."""
    monkeypatch.setattr(worker_module, "YIELD_TO_SLACK_S", 60.0)  # until the answer is done
    actions = ledger.ActionRegistry()
    actions.register("test.next", lambda _c, _d: {"ran": True}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.next"}])
    held: list[tuple[threading.Thread, threading.Event]] = []  # a Slack answer, held open
    yielded = priority.after_urgent

    def then_answer(max_wait: float) -> None:
        yielded(max_wait)
        if not held:  # the worker's yield before its claim: nothing pending
            held.append(answering([]))

    monkeypatch.setattr(priority, "after_urgent", then_answer)
    worker = threading.Thread(target=drive, args=(engine, actions), daemon=True)
    worker.start()
    try:
        wait_until(lambda: priority.deferred() == 1, "the worker to wait for the answer")
        assert steps_of(engine, rid) == [("pending", 0, None)]
        with db.read(engine) as s:
            run = ledger.get_run(s, rid)
        assert (run.status, run.owner.startswith("chain:")) == ("running", True)
    finally:
        for _answer, release in held:
            release.set()
    worker.join(30)
    assert not worker.is_alive()
    assert steps_of(engine, rid) == [("succeeded", 1, {"ran": True})]


def test_a_run_this_build_cannot_read_is_claimed_without_starting_its_step(engine):
    """A run written by a newer build (a step field this one does not know): the claim starts
    nothing (on PostgreSQL its statement would have: that is undone), and the run is handed
    back for a worker that reads it, its step still pending."""
    actions = ledger.ActionRegistry()
    actions.register("test.next", lambda _c, _d: {"ran": True}, idempotent=True)
    rid = start(engine, actions, [{"name": "a", "action": "test.next"}])
    with db.transaction(engine) as s:
        spec = s.execute(select(_run.c.spec).where(_run.c.id == rid)).scalar_one()
        spec["steps"][0]["new_in_a_later_build"] = True
        s.execute(update(_run).where(_run.c.id == rid).values(spec=spec))
    drive(engine, actions)
    assert steps_of(engine, rid) == [("pending", 0, None)]
    with db.read(engine) as s:
        run = ledger.get_run(s, rid)
    assert (run.status, run.owner) == ("pending", None)
    assert "waiting for a worker that has it" in (run.error or "")
