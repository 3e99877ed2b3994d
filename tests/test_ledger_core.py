"""The run ledger in one process, on SQLite and PostgreSQL: starting, locks, retries,
timeouts, cancel, parking, fencing and transition callbacks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from incidentbot import db, ledger
from incidentbot.errors import DomainError
from incidentbot.incidents import service as incidents
from incidentbot.ledger import transitions
from incidentbot.ledger.leases import claim_next, renew
from incidentbot.ledger.models import Run
from tests.conftest import count
from tests.ledger_harness import RELEASE, call_step, wait_status, wait_until


@pytest.fixture
def release():
    """Held or hung harness actions return when the test ends."""
    RELEASE.clear()
    yield RELEASE
    RELEASE.set()


@pytest.fixture
def pools(engine):
    started: list[ledger.WorkerPool] = []

    def make(threads: int = 2, lease: float = 5.0, **kw) -> ledger.WorkerPool:
        pool = ledger.WorkerPool(engine, threads=threads, lease=lease, poll=0.05, **kw).start()
        started.append(pool)
        return pool

    yield make
    RELEASE.set()
    for pool in started:
        pool.stop(timeout=10)


@pytest.fixture
def events():
    seen: list[ledger.LedgerEvent] = []
    unsubscribe = ledger.subscribe(seen.append)
    yield seen
    unsubscribe()


def start(engine, key="k1", steps=None, target="rpc-2", **kw) -> int:
    steps = [{"name": "noop", "action": "ledger.noop"}] if steps is None else steps
    with db.transaction(engine) as s:
        run = ledger.start_run(s, kind="test", key=key, steps=steps, target=target,
                               actor="test:alice", **kw)  # fmt: skip
        return run.id


def detail(engine, run_id):
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id), ledger.get_steps(s, run_id)


# -- starting ----------------------------------------------------------------------------------


def test_start_is_idempotent_by_key_even_when_raced(engine):
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def go() -> None:
        barrier.wait()
        try:
            ids.append(
                start(
                    engine,
                    key="declare:T123:abc",
                    steps=[
                        {"name": "a", "action": "ledger.noop"},
                        {"name": "b", "action": "ledger.noop"},
                    ],
                )
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 8 and len(set(ids)) == 1
    assert count(engine, "ledger_run") == 1
    assert count(engine, "ledger_step") == 2
    assert count(engine, "ledger_lock") == 1


def test_same_key_for_a_different_run_is_refused(engine):
    start(engine, key="k")
    with pytest.raises(DomainError, match="already started run 1"):
        start(engine, key="k", target="rpc-3")


def test_locked_target_refusal_names_run_and_incident(engine, settings, pools):
    with db.transaction(engine) as s:
        inc = incidents.declare(s, settings, title="rpc-2 lagging", severity="SEV2", actor="a")
        inc_id = inc.id
    first = start(engine, key="restart-1", incident_id=inc_id)
    with pytest.raises(ledger.LockHeld) as refused:
        start(engine, key="restart-2")
    message = str(refused.value)
    assert f"run {first}" in message and "INC-1" in message and "'rpc-2'" in message
    assert refused.value.run_id == first
    assert count(engine, "ledger_run") == 1  # the refused start left nothing behind

    pools(threads=1)
    wait_status(engine, first, "succeeded")
    second = start(engine, key="restart-2")  # the lock went with the first run
    assert second != first


def test_invalid_specs_are_refused_with_the_reason(engine):
    cases = [
        ([], "at least one step"),
        ([{"name": "x", "action": "no.such"}], "unknown action 'no.such'"),
        ([{"name": "x", "action": "ledger.noop", "timeout": 0}], "step 1 is invalid: timeout"),
        ([{"name": "x", "action": "ledger.noop", "retry": {"max_attempts": 0}}], "max_attempts"),
        ([{"name": " ", "action": "ledger.noop"}], "name"),
        ([{"name": "x", "action": "ledger.noop", "input": {"n": object()}}], "not JSON"),
    ]
    for steps, message in cases:
        with pytest.raises(DomainError, match=message):
            start(engine, steps=steps)
    assert count(engine, "ledger_run") == 0 and count(engine, "ledger_lock") == 0


def test_input_and_output_are_stored_redacted_but_the_action_gets_the_real_input(engine, pools):
    secret_url = "https://user:hunter2@eth.example.com/v3/a1b2c3d4e5f6a7b8c9d0e1f2?apikey=zz&x=1"
    rid = start(
        engine,
        steps=[
            {
                "name": "echo",
                "action": "ledger.noop",
                "input": {"rpc": secret_url, "api_token": "s3cr3t", "n": 1},
            }
        ],
    )
    pools(threads=1)
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    for stored in (steps[0].input, steps[0].output):
        assert stored["api_token"] == "***" and stored["n"] == 1
        assert "hunter2" not in stored["rpc"] and "a1b2c3d4e5f6" not in stored["rpc"]
        assert "apikey=%2A%2A%2A" in stored["rpc"] or "apikey=***" in stored["rpc"]
    with db.transaction(engine) as s:  # the snapshot keeps what the worker needs
        assert ledger.get_run(s, rid).spec["steps"][0]["input"]["api_token"] == "s3cr3t"


# -- retries, failures, timeouts ---------------------------------------------------------------


def test_429_is_retried_after_retry_after(engine, server, pools, events):
    server.script("R1", (429, {"Retry-After": "1"}))
    rid = start(engine, steps=[call_step("page on-call", server.url, "R1")])
    pools()
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert steps[0].attempts == 2 and steps[0].status == "succeeded"
    assert server.requests()["R1"] == 2 and server.applied()["R1"] == 1
    retry = next(e for e in events if e.kind == "step.retrying")
    assert retry.data["retry_after"] == 1.0 and retry.data["delay"] >= 1.0
    assert "HTTP 429" in retry.error


def test_5xx_is_retried_with_backoff_then_gives_up(engine, server, pools, events):
    server.script("R5", *[(503, {})] * 3)
    retry = {"max_attempts": 3, "backoff": 0.05, "max_backoff": 0.1}
    rid = start(engine, steps=[{**call_step("post update", server.url, "R5"), "retry": retry},
                               call_step("never", server.url, "R6")])  # fmt: skip
    pools()
    wait_status(engine, rid, "failed")
    run, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["failed", "skipped"]
    assert steps[0].attempts == 3
    assert "failed after 3 attempts" in run.error and "HTTP 503" in run.error
    assert server.requests() == {"R5": 3}
    delays = [e.data["delay"] for e in events if e.kind == "step.retrying"]
    assert len(delays) == 2 and all(0.025 <= d <= 0.1 for d in delays)
    assert count(engine, "ledger_lock") == 0


def test_permanent_failure_is_not_retried(engine, server, pools):
    server.script("P1", (400, {}))
    rid = start(engine, steps=[call_step("create channel", server.url, "P1"),
                               call_step("invite", server.url, "P2")])  # fmt: skip
    pools()
    wait_status(engine, rid, "failed")
    run, steps = detail(engine, rid)
    assert steps[0].attempts == 1 and "HTTP 400" in run.error
    assert steps[1].status == "skipped"
    assert server.requests() == {"P1": 1}
    assert count(engine, "ledger_lock") == 0


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = ledger.RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=8.0)
    low = [policy.delay(n, rand=lambda a, b: a) for n in range(1, 7)]
    high = [policy.delay(n, rand=lambda a, b: b) for n in range(1, 7)]
    assert low == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert high == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.delay(1, retry_after=30, rand=lambda a, b: b) == 30


def test_a_hung_non_idempotent_step_times_out_into_needs_attention(
    engine, server, pools, release, caplog
):
    rid = start(
        engine,
        steps=[
            {**call_step("restart geth", server.url, "H1", hang_on_attempt=1), "timeout": 0.3},
            call_step("after", server.url, "H2"),
        ],
    )
    pools()
    wait_status(engine, rid, "needs_attention")
    run, steps = detail(engine, rid)
    assert "step 1 'restart geth'" in run.error and "may or may not have happened" in run.error
    assert "timed out after 0.3s" in run.error
    # The log says where the step was stuck: in the harness's hung call, waiting.
    timed_out = [r.getMessage() for r in caplog.records if "timed out after" in r.getMessage()]
    assert timed_out and "tests/ledger_harness.py" in timed_out[0], timed_out
    assert [s.status for s in steps] == ["started", "pending"]
    assert server.requests() == {}  # the hung call never got out, and nothing after it ran
    with pytest.raises(ledger.LockHeld):  # the target stays locked: its state is unknown
        start(engine, key="other")


def test_a_hung_idempotent_step_times_out_and_is_retried(engine, server, pools, release):
    # The retry must finish within the timeout too, on the busiest machine: the hung attempt
    # costs it, so not longer than that.
    step = {**call_step("check sync", server.url, "H3", idempotent=True, hang_on_attempt=1),
            "timeout": 2.0, "retry": {"backoff": 0.01}}  # fmt: skip
    rid = start(engine, steps=[step])
    pools()
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert steps[0].attempts == 2
    assert server.applied() == {"H3": 1}


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_a_waiting_run_releases_its_lock_at_once(engine):
    rid = start(engine, steps=[{"name": "a", "action": "ledger.noop"}])
    with db.transaction(engine) as s:
        message = ledger.cancel(s, rid, actor="cli:bob", reason="wrong node")
    assert "cancelled" in message and "lock on 'rpc-2' released" in message
    run, steps = detail(engine, rid)
    assert run.status == "cancelled" and run.error == "cancelled by cli:bob: wrong node"
    assert [s.status for s in steps] == ["skipped"]
    assert count(engine, "ledger_lock") == 0
    with db.transaction(engine) as s, pytest.raises(DomainError, match="already cancelled"):
        ledger.cancel(s, rid, actor="cli:bob")


def test_cancel_a_running_run_stops_it_before_its_next_step(engine, server, pools, release):
    rid = start(engine, steps=[call_step("drain", server.url, "C1", hold_on_attempt=1),
                               call_step("restart", server.url, "C2")])  # fmt: skip
    pools()
    wait_until(lambda: server.requests()["C1"] == 1, "step 1 to reach the server")
    with db.transaction(engine) as s:
        message = ledger.cancel(s, rid, actor="cli:bob")
    assert "cancel requested" in message
    release.set()
    wait_status(engine, rid, "cancelled")
    _, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["succeeded", "skipped"]
    assert server.requests() == {"C1": 1}
    assert count(engine, "ledger_lock") == 0


# -- parking -----------------------------------------------------------------------------------


def park_steps(server, timeout=600.0, action="ledger.approval"):
    return [call_step("drain", server.url, "D1"),
            {"name": "approve restart", "action": action,
             "park": {"timeout": timeout, "prompt": "Restart geth on rpc-2?"}},
            call_step("restart", server.url, "D3")]  # fmt: skip


def test_first_decision_wins_and_the_second_says_so(engine, server, pools, events):
    rid = start(engine, steps=park_steps(server))
    pools()
    wait_status(engine, rid, "parked")
    parked = next(e for e in events if e.kind == "run.parked")
    assert parked.data["prompt"] == "Restart geth on rpc-2?" and parked.step_index == 1

    with db.transaction(engine) as s:
        wrong = ledger.decide(s, rid, "approved", by="slack:U9", step=2)
    assert not wrong.accepted and "waits at step 2, not step 3" in wrong.message

    barrier = threading.Barrier(2)
    results: list[ledger.DecisionResult] = []

    def decide(decision: str, by: str) -> None:
        barrier.wait()
        with db.transaction(engine) as s:
            results.append(ledger.decide(s, rid, decision, by=by, step=1))

    threads = [threading.Thread(target=decide, args=a)
               for a in (("approved", "slack:alice"), ("rejected", "slack:bob"))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r for r in results if r.accepted]
    ignored = [r for r in results if not r.accepted]
    assert len(accepted) == 1 and len(ignored) == 1
    winner = accepted[0]
    assert f"already decided: {winner.decision} by {winner.decided_by}" in ignored[0].message

    final = wait_status(engine, rid, "succeeded", "failed")
    _, steps = detail(engine, rid)
    assert steps[1].decision == winner.decision and steps[1].decided_by == winner.decided_by
    if winner.decision == "approved":
        assert final == "succeeded" and server.requests() == {"D1": 1, "D3": 1}
    else:
        assert final == "failed" and server.requests() == {"D1": 1}
    with db.transaction(engine) as s:
        late = ledger.decide(s, rid, "approved", by="slack:carol")
    assert not late.accepted and "already decided" in late.message


def test_decision_words_are_checked(engine, server):
    rid = start(engine, steps=park_steps(server))
    for bad in ("", "expired", "yes please"):
        with db.transaction(engine) as s, pytest.raises(DomainError, match="invalid decision"):
            ledger.decide(s, rid, bad, by="a")
    with db.transaction(engine) as s:
        result = ledger.decide(s, rid, "approved", by="a")
    assert not result.accepted and "the run is pending, not waiting" in result.message


def test_deadline_that_passed_while_no_worker_ran_is_honoured_at_restart(engine, server, pools):
    rid = start(engine, steps=park_steps(server, timeout=0.5, action="ledger.decision"))
    worker = ledger.Worker(engine, name="before", lease=5)
    try:
        assert worker.run_once()  # runs step 1, parks at step 2, returns: then no worker runs
    finally:
        worker.close()
    _, steps = detail(engine, rid)
    assert steps[1].deadline_at is not None and steps[1].decision is None

    def past_deadline() -> bool:
        with db.transaction(engine) as s:
            return db.db_now(s) > steps[1].deadline_at

    wait_until(past_deadline, "the database clock to pass the deadline", timeout=10)
    with db.transaction(engine) as s:
        late = ledger.decide(s, rid, "approved", by="slack:alice")
    assert not late.accepted and "the deadline passed" in late.message

    pools()  # the restart
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert (steps[1].decision, steps[1].decided_by) == ("expired", "ledger")
    assert steps[1].output["decision"] == "expired"
    assert server.requests() == {"D1": 1, "D3": 1}


def test_an_expired_approval_fails_the_run(engine, server, pools):
    rid = start(engine, steps=park_steps(server, timeout=0.2))
    pools()
    wait_status(engine, rid, "failed")
    run, _ = detail(engine, rid)
    assert "not approved: expired" in run.error
    assert server.requests() == {"D1": 1}
    assert count(engine, "ledger_lock") == 0


def test_cancel_a_parked_run(engine, server, pools):
    rid = start(engine, steps=park_steps(server))
    pools()
    wait_status(engine, rid, "parked")
    with db.transaction(engine) as s:
        assert "cancelled" in ledger.cancel(s, rid, actor="slack:bob")
    _, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["succeeded", "skipped", "skipped"]
    assert count(engine, "ledger_lock") == 0


# -- leases and fencing ------------------------------------------------------------------------


def _expire_lease(engine, rid):
    """What a stalled worker looks like from the outside: its lease is in the past."""
    with db.transaction(engine) as s:
        now = db.db_now(s)
        s.execute(update(Run).where(Run.id == rid)
                  .values(lease_expires_at=now - timedelta(seconds=1)))  # fmt: skip


def test_a_worker_whose_lease_was_taken_cannot_write(engine, server):
    rid = start(engine, steps=[call_step("restart", server.url, "F1"),
                               call_step("enable", server.url, "F2")])  # fmt: skip
    registry = ledger.registry
    with db.transaction(engine) as s:
        assert claim_next(s, "worker-a", 30).id == rid
    with db.transaction(engine) as s:
        attempt = transitions.begin_step(s, rid, "worker-a", 30, registry)
    assert attempt is not None and attempt.attempt == 1

    _expire_lease(engine, rid)
    with db.transaction(engine) as s:
        taken = claim_next(s, "worker-b", 30)
        assert taken.id == rid and taken.takeovers == 1 and taken.owner == "worker-b"

    outcome = transitions.Succeeded({"done": True})
    with pytest.raises(ledger.LeaseLost), db.transaction(engine) as s:
        transitions.finish_step(s, attempt, "worker-a", 30, outcome)
    with db.transaction(engine) as s:
        assert not renew(s, rid, "worker-a", 30)
    run, steps = detail(engine, rid)
    assert run.owner == "worker-b" and steps[0].status == "started" and steps[0].output is None

    # worker-b finds the non-idempotent step started and not finished: it must not guess.
    with db.transaction(engine) as s:
        assert transitions.begin_step(s, rid, "worker-b", 30, registry) is None
    run, steps = detail(engine, rid)
    assert run.status == "needs_attention"
    assert "step 1 'restart'" in run.error and "did not finish" in run.error
    assert server.requests() == {}


def test_an_interrupted_idempotent_step_is_run_again_by_the_next_worker(engine, server):
    rid = start(engine, steps=[call_step("check", server.url, "F3", idempotent=True)])
    with db.transaction(engine) as s:
        claim_next(s, "worker-a", 30)
    with db.transaction(engine) as s:
        transitions.begin_step(s, rid, "worker-a", 30, ledger.registry)
    _expire_lease(engine, rid)
    worker = ledger.Worker(engine, name="worker-b", lease=5)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    run, steps = detail(engine, rid)
    assert run.status == "succeeded" and steps[0].attempts == 2 and run.takeovers == 1


def test_a_worker_without_the_action_leaves_the_run_for_one_that_has_it(engine, pools):
    rid = start(engine, steps=[{"name": "a", "action": "ledger.noop"}])
    old_build = ledger.ActionRegistry()  # a worker from before the action existed
    worker = ledger.Worker(engine, name="old", lease=5, actions=old_build)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    run, steps = detail(engine, rid)
    assert run.status == "pending" and run.wake_at is not None and steps[0].attempts == 0
    with db.transaction(engine) as s:  # let it be due now rather than in 30 s
        s.execute(update(Run).where(Run.id == rid).values(wake_at=None))
    pools(threads=1)
    wait_status(engine, rid, "succeeded")


# -- transition callbacks ----------------------------------------------------------------------


def test_subscribers_see_each_committed_transition_in_order(engine, server, pools, events):
    server.script("E2", (503, {}))

    def broken(_ev):
        raise RuntimeError("a subscriber bug must not hurt the run")

    unsubscribe = ledger.subscribe(broken)
    try:
        rid = start(engine, steps=[call_step("one", server.url, "E1"),
                                   {**call_step("two", server.url, "E2"),
                                    "retry": {"backoff": 0.01}}])  # fmt: skip
        pools(threads=1)
        wait_status(engine, rid, "succeeded")
        # Events reach subscribers after their transaction commits: the last may still be on
        # its way when the database already says "succeeded".
        wait_until(
            lambda: any(e.kind == "run.succeeded" and e.run_id == rid for e in events),
            "the run.succeeded event",
        )
    finally:
        unsubscribe()
    kinds = [(e.kind, e.step_index, e.attempt) for e in events if e.run_id == rid]
    assert kinds == [
        ("run.created", None, None),
        ("run.claimed", None, None),
        ("step.started", 0, 1),
        ("step.succeeded", 0, 1),
        ("step.started", 1, 1),
        ("step.retrying", 1, 1),
        ("run.released", None, None),
        ("run.claimed", None, None),
        ("step.started", 1, 2),
        ("step.succeeded", 1, 2),
        ("run.succeeded", None, None),
    ]
    done = [e for e in events if e.kind == "step.succeeded"]
    assert done[0].data["output"] == {"applied": True, "attempt": 1}
    assert all(e.target == "rpc-2" and e.run_kind == "test" for e in events)


def test_no_event_for_a_start_that_rolled_back(engine, events):
    with pytest.raises(RuntimeError), db.transaction(engine) as s:
        ledger.start_run(s, kind="t", key="gone", actor="a",
                         steps=[{"name": "a", "action": "ledger.noop"}])  # fmt: skip
        raise RuntimeError("the caller's transaction failed")
    assert events == [] and count(engine, "ledger_run") == 0


def test_prepare_reads_in_the_start_transaction_and_its_refusal_fails_the_step_unrun(engine):
    """An action's ``prepare`` reads what the attempt needs in the transaction that marks the
    step started (so it sees the step started); if it refuses, the step fails with its reason
    and the action never runs."""
    actions = ledger.ActionRegistry()
    ran: list[object] = []

    def prepare(session, ctx: ledger.StepContext, data: dict) -> str:
        if data.get("refuse"):
            raise ledger.PermanentError("refused before anything happened")
        step = ledger.Step.__table__  # type: ignore[attr-defined]
        stmt = select(step.c.status).where(
            step.c.run_id == ctx.run_id, step.c.idx == ctx.step_index
        )
        return session.execute(stmt).scalar_one()

    def act(ctx: ledger.StepContext, data: dict) -> dict:
        ran.append(ctx.prepared)
        return {"status when prepared": ctx.prepared}

    actions.register("test.prepared", act, prepare=prepare)
    ok = start(engine, key="prep-ok", target=None, actions=actions,
               steps=[{"name": "read", "action": "test.prepared"}])  # fmt: skip
    refused = start(engine, key="prep-no", target=None, actions=actions,
                    steps=[{"name": "read", "action": "test.prepared",
                            "input": {"refuse": True}}])  # fmt: skip
    worker = ledger.Worker(engine, name="prep", lease=30, actions=actions)
    try:
        assert worker.run_once() and worker.run_once()
    finally:
        worker.close()
    with db.read(engine) as s:
        assert ledger.get_run(s, ok).status == "succeeded"
        assert ledger.get_steps(s, ok)[0].output == {"status when prepared": "started"}
        assert ledger.get_run(s, refused).status == "failed"
        assert "refused before anything happened" in (ledger.get_steps(s, refused)[0].error or "")
    assert ran == ["started"]
