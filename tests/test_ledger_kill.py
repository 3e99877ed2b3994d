"""Kill tests: real worker processes (``incidentbot worker``) SIGKILLed at chosen points.

Each side effect is a request to an HTTP server in the test process, so what happened is
counted outside the worker that did it. Workers hold a long lease, so a busy machine never
makes one lose it; once a test has killed a worker it ends that worker's lease itself
(:func:`expire_leases`, what the clock would do a lease later), so takeovers come at once. The
tests wait on database state and log lines, never on the clock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from incidentbot import db, ledger
from tests.conftest import count
from tests.ledger_harness import (
    WorkerProcess,
    call_step,
    expire_leases,
    run_status,
    wait_status,
    wait_until,
)

LEASE = 30.0


@pytest.fixture
def spawn(database_url, tmp_path):
    procs: list[WorkerProcess] = []

    def make(name: str, pause_after: int | str | None = None, **kw) -> WorkerProcess:
        proc = WorkerProcess(database_url, tmp_path / f"{name}.log", name=name,
                             lease=LEASE, pause_after=pause_after, **kw)  # fmt: skip
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.kill()


class Fleet:
    """Worker processes that each stop dead after every step they complete. The test kills
    the one holding the run; a replacement is started at once, so a spare is always warm."""

    def __init__(self, spawn, engine, rid: int, size: int = 3):
        self.spawn, self.engine, self.rid = spawn, engine, rid
        self.live: dict[str, WorkerProcess] = {}
        self.started = 0
        for _ in range(size):
            self._add()

    def _add(self) -> None:
        self.started += 1
        name = f"w{self.started}"
        self.live[name] = self.spawn(name, pause_after="all", poll=0.1)

    def holder(self) -> str:
        with db.transaction(self.engine) as s:
            owner = ledger.get_run(s, self.rid).owner
        assert owner is not None
        return owner.split("/")[0]

    def logged(self, text: str) -> str:
        """The live worker whose log shows ``text`` (waiting for it)."""
        return wait_until(
            lambda: next((n for n, w in self.live.items() if text in w.log()), None),
            f"a worker to log {text!r}",
        )

    def kill(self, name: str, check: Callable[[], None] | None = None) -> None:
        """Kill ``name``; ``check`` what it left while its lease still keeps the others off
        the run; then end that lease, so another worker takes the run over."""
        self.live.pop(name).kill()
        if check is not None:
            check()
        expire_leases(self.engine, f"{name}/")
        self._add()


def steps_of(engine, rid):
    with db.transaction(engine) as s:
        return ledger.get_run(s, rid), ledger.get_steps(s, rid)


def test_kill_after_each_step_during_a_step_and_while_parked(engine, server, spawn):
    """A 5-step run survives seven worker deaths; every effect happens exactly once.

    Step 2 is idempotent: the commit that records step 1 also marks it started, so the death
    "after step 1" leaves it started with its effect never sent; the next worker runs it
    again. Before the other steps (a park, non-idempotent ones) a death after a step leaves
    the next one pending."""
    url = server.url
    with db.transaction(engine) as s:
        rid = ledger.start_run(s, kind="restart-node", key="kill-1", target="rpc-2",
                               actor="test:alice", steps=[
            call_step("drain rpc-2", url, "A1"),
            call_step("snapshot check", url, "A2", idempotent=True, hold_on_attempt=2),
            {"name": "approve restart", "action": "ledger.approval",
             "park": {"timeout": 600, "prompt": "Restart geth on rpc-2?"}},
            call_step("restart geth", url, "A4"),
            call_step("re-enable rpc-2", url, "A5"),
        ]).id  # fmt: skip
    fleet = Fleet(spawn, engine, rid)
    killed: list[str] = []

    def kill_after(step: int, check: Callable[[], None] | None = None) -> None:
        name = fleet.logged(f"PAUSED run={rid} step={step}")
        assert fleet.holder() == name  # it still holds the run: its heartbeat is alive
        fleet.kill(name, check)
        killed.append(f"after {step}")

    def left_after_1() -> None:
        _, steps = steps_of(engine, rid)
        assert [(st.status, st.attempts) for st in steps[:3]] == [
            ("succeeded", 1), ("started", 1), ("pending", 0)]  # fmt: skip
        assert server.requests()["A2"] == 0  # started in step 1's commit, never sent

    kill_after(1, left_after_1)
    # During step 2 (its second attempt): its effect reached the server, its result was never
    # recorded.
    wait_until(lambda: server.requests()["A2"] == 1, "step 2's effect")
    fleet.kill(fleet.holder())
    killed.append("during 2")
    # The next worker re-runs the idempotent step 2 (the server deduplicates it).
    kill_after(2)
    # While parked: the run waits for a decision with no worker holding it.
    wait_status(engine, rid, "parked")
    fleet.kill(fleet.logged(f"run {rid} parked at step 3"))
    killed.append("while parked")
    with db.transaction(engine) as s:
        assert ledger.decide(s, rid, "approved", by="slack:bob").accepted
    kill_after(3)
    kill_after(4)
    kill_after(5)  # the run completed in the same commit as its last step

    assert killed == ["after 1", "during 2", "after 2", "while parked",
                      "after 3", "after 4", "after 5"]  # fmt: skip
    run, steps = steps_of(engine, rid)
    assert run.status == "succeeded", run.error
    assert [s.status for s in steps] == ["succeeded"] * 5
    assert [s.attempts for s in steps] == [1, 3, 1, 1, 1]
    assert steps[2].decision == "approved" and steps[2].decided_by == "slack:bob"
    # Five deaths left a live lease behind (the parked run had none, the finished run none).
    assert run.takeovers == 5
    # Exactly once, counted by the server: the non-idempotent effects had one request each;
    # the idempotent one was sent twice (by its second and third attempts: the second's worker
    # died holding it) and applied once.
    assert server.requests() == {"A1": 1, "A2": 2, "A4": 1, "A5": 1}
    assert server.applied() == {"A1": 1, "A2": 1, "A4": 1, "A5": 1}
    assert count(engine, "ledger_lock") == 0


def test_kill_between_the_claim_and_the_first_action(engine, server, spawn):
    """A worker dies right after claiming, before the run's first action. A run whose first
    step is idempotent was claimed with that step started (one commit): the next worker runs
    it again, its effect once. A run whose first step is not idempotent was claimed alone: its
    step is still pending, and the next worker runs it as its first attempt, no person needed."""
    with db.transaction(engine) as s:
        again = ledger.start_run(s, kind="t", key="claim-1", actor="t", steps=[
            call_step("announce", server.url, "C1", idempotent=True)]).id  # fmt: skip
        once = ledger.start_run(s, kind="t", key="claim-2", target="rpc-3", actor="t", steps=[
            call_step("restart geth", server.url, "C2")]).id  # fmt: skip
    first = spawn("w1", pause_after="claim", threads=2)
    wait_until(lambda: first.log().count("PAUSED") == 2, "both runs claimed")
    first.kill()
    expire_leases(engine, "w1/")
    assert [(s.status, s.attempts) for s in steps_of(engine, again)[1]] == [("started", 1)]
    assert [(s.status, s.attempts) for s in steps_of(engine, once)[1]] == [("pending", 0)]
    assert server.requests() == {}  # no action began

    spawn("w2")
    for rid in (again, once):
        wait_status(engine, rid, "succeeded", "needs_attention")
    (run_a, [step_a]), (run_b, [step_b]) = steps_of(engine, again), steps_of(engine, once)
    assert (run_a.status, run_a.takeovers, step_a.attempts) == ("succeeded", 1, 2)
    assert (run_b.status, run_b.takeovers, step_b.attempts) == ("succeeded", 1, 1)
    assert server.requests() == {"C1": 1, "C2": 1}
    assert count(engine, "ledger_lock") == 0


def test_kill_during_a_non_idempotent_step_stops_for_attention(engine, server, spawn):
    with db.transaction(engine) as s:
        rid = ledger.start_run(s, kind="failover", key="kill-2", target="haproxy", actor="t",
                               steps=[call_step("switch backend", server.url, "B1",
                                                hold_on_attempt=1),
                                      call_step("announce", server.url, "B2")]).id  # fmt: skip
    workers = {name: spawn(name) for name in ("w1", "w2")}
    wait_until(lambda: server.requests()["B1"] == 1, "step 1's effect")
    run, _ = steps_of(engine, rid)
    holder = run.owner.split("/")[0]
    workers.pop(holder).kill()
    expire_leases(engine, f"{holder}/")

    wait_status(engine, rid, "needs_attention")
    run, steps = steps_of(engine, rid)
    assert "step 1 'switch backend'" in run.error
    assert "may or may not have happened" in run.error and "Check haproxy" in run.error
    assert [s.status for s in steps] == ["started", "pending"]
    assert server.requests() == {"B1": 1}  # not repeated, and nothing after it ran
    with pytest.raises(ledger.LockHeld, match="needs_attention"), db.transaction(engine) as s:
        ledger.start_run(s, kind="failover", key="kill-2b", target="haproxy", actor="t",
                         steps=[{"name": "x", "action": "ledger.noop"}])  # fmt: skip
    (survivor,) = workers.values()
    assert survivor.proc.poll() is None  # the surviving worker carries on
    # A person checked haproxy and aborts: the lock goes, the unknown step is named.
    with db.transaction(engine) as s:
        message = ledger.cancel(s, rid, actor="cli:carol", reason="checked by hand")
    assert "step 1 'switch backend' was left in an unknown state" in message
    assert count(engine, "ledger_lock") == 0


def test_sigterm_finishes_the_step_and_hands_the_run_back(engine, server, spawn, tmp_path):
    gate = tmp_path / "finish-step-1"  # step 1 returns once the worker was told to stop
    with db.transaction(engine) as s:
        rid = ledger.start_run(s, kind="t", key="term-1", target="rpc-9", actor="t", steps=[
            call_step("slow", server.url, "T1", hold_until=str(gate)),
            call_step("next", server.url, "T2")]).id  # fmt: skip
    w1 = spawn("w1")
    wait_until(lambda: server.requests()["T1"] == 1, "step 1's effect")
    w1.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM received" in w1.log(), "the worker to take the SIGTERM")
    gate.touch()
    assert w1.wait() == 0
    run, steps = steps_of(engine, rid)
    assert [s.status for s in steps] == ["succeeded", "pending"]
    assert run.status == "pending" and run.owner is None  # no lease to wait for
    assert "SIGTERM received" in w1.log() and "worker stopped" in w1.log()
    worker = ledger.Worker(engine, name="next", lease=LEASE)
    try:
        assert worker.run_once()  # claimable at once
    finally:
        worker.close()
    assert run_status(engine, rid) == "succeeded"
    assert server.requests() == {"T1": 1, "T2": 1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_live_workers_the_holder_killed_the_other_takes_over(engine, server, spawn):
    with db.transaction(engine) as s:
        rid = ledger.start_run(s, kind="t", key="pair-1", target="rpc-1", actor="t", steps=[
            call_step(f"step {i}", server.url, f"P{i}") for i in range(1, 4)]).id  # fmt: skip
    workers = {"wa": spawn("wa", pause_after=1), "wb": spawn("wb", pause_after=1)}
    wait_until(lambda: any("PAUSED" in w.log() for w in workers.values()), "a worker to pause")
    run, _ = steps_of(engine, rid)
    holder = run.owner.split("/")[0]
    survivor = next(name for name in workers if name != holder)
    assert "PAUSED" in workers[holder].log() and "PAUSED" not in workers[survivor].log()
    workers[holder].kill()
    expire_leases(engine, f"{holder}/")

    wait_status(engine, rid, "succeeded")
    run, steps = steps_of(engine, rid)
    assert run.owner.startswith(f"{survivor}/") and run.takeovers == 1
    assert [s.attempts for s in steps] == [1, 1, 1]
    assert server.requests() == {"P1": 1, "P2": 1, "P3": 1}
    assert workers[survivor].proc.poll() is None
