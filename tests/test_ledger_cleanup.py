"""Clean-up steps (``always: true``): they run when a run fails, or is cancelled while it runs,
waits or needs attention, before the run ends and releases its lock; a worker killed during
one resumes it. On SQLite and PostgreSQL, with real workers and the side-effect counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentbot import db, ledger
from incidentbot.errors import DomainError
from tests.conftest import count
from tests.ledger_harness import (
    WorkerProcess,
    call_step,
    wait_status,
    wait_until,
)


def start(engine, steps, key="cu", target="node-2") -> int:
    with db.transaction(engine) as s:
        return ledger.start_run(
            s, kind="test", key=key, steps=steps, target=target, actor="test:alice"
        ).id


def detail(engine, run_id):
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id), ledger.get_steps(s, run_id)


def cancel(engine, run_id, actor="alice") -> str:
    with db.transaction(engine) as s:
        return ledger.cancel(s, run_id, actor=actor)


def always(step: dict) -> dict:
    return {**step, "always": True}


def step_status(engine, run_id, index) -> str:
    return detail(engine, run_id)[1][index].status


def test_a_clean_up_step_runs_in_order_when_nothing_fails(engine, server, pools):
    rid = start(
        engine,
        [
            call_step("drain", server.url, "D"),
            always(call_step("undrain", server.url, "U")),
            call_step("note", server.url, "N"),
        ],
    )
    pools()
    wait_status(engine, rid, "succeeded")
    assert server.applied() == {"D": 1, "U": 1, "N": 1}


def test_a_failure_runs_the_clean_up_steps_after_it_then_the_run_fails(engine, server, pools):
    server.script("R", (400, {}))
    rid = start(
        engine,
        [
            call_step("drain", server.url, "D"),
            call_step("restart", server.url, "R"),
            call_step("wait", server.url, "W"),
            always(call_step("Put it back", server.url, "U")),
            call_step("note", server.url, "N"),
        ],
    )
    pools()
    wait_status(engine, rid, "failed")
    run, steps = detail(engine, rid)
    assert [s.status for s in steps] == [
        "succeeded", "failed", "skipped", "succeeded", "skipped"
    ]  # fmt: skip
    assert server.applied() == {"D": 1, "U": 1}
    assert run.error.startswith("step 2 'restart' failed")
    assert run.error.endswith("; ran the clean-up steps: Put it back")
    assert count(engine, "ledger_lock") == 0


def test_clean_up_steps_run_after_rollback_steps_and_despite_a_failing_one(engine, server, pools):
    server.script("R", (400, {}))
    server.script("RB", (400, {}))
    server.script("U1", (400, {}))
    rid = start(
        engine,
        [
            call_step("restart", server.url, "R"),
            always(call_step("first clean-up", server.url, "U1")),
            always(call_step("second clean-up", server.url, "U2")),
            {**call_step("undo", server.url, "RB"), "rollback_for": 0},
            {**call_step("undo more", server.url, "RB2"), "rollback_for": 0},
        ],
    )
    pools()
    wait_status(engine, rid, "failed")
    run, steps = detail(engine, rid)
    # clean-up steps come first in the list; the failed rollback stops the next rollback step
    assert [s.status for s in steps] == ["failed", "failed", "succeeded", "failed", "skipped"]
    assert server.applied() == {"U2": 1}
    assert "rollback step 4 'undo' failed" in run.error
    assert "ran the clean-up steps: second clean-up" in run.error
    assert "clean-up step 2 'first clean-up' failed" in run.error


def test_cancelling_a_running_run_runs_its_clean_up_steps_keeping_the_lock(
    engine, server, pools, tmp_path: Path
):
    gate, cleanup_gate = tmp_path / "gate", tmp_path / "cleanup-gate"
    rid = start(
        engine,
        [
            call_step("drain", server.url, "D"),
            call_step("catch up", server.url, "C", hold_until=str(gate)),
            call_step("undrain early", server.url, "X"),
            always(call_step("Put it back", server.url, "U", hold_until=str(cleanup_gate))),
            call_step("note", server.url, "N"),
        ],
    )
    pools()
    wait_until(lambda: server.applied().get("C"), "the catch-up step to be under way")
    said = cancel(engine, rid)
    assert said == (
        f"run {rid}: cancel requested; it stops before its next step, "
        "then runs its clean-up steps (Put it back)"
    )
    gate.touch()
    wait_until(lambda: server.applied().get("U"), "the clean-up step to run")
    run, steps = detail(engine, rid)
    assert run.status == "running" and count(engine, "ledger_lock") == 1  # still locked
    assert steps[2].status == "skipped"
    cleanup_gate.touch()
    wait_status(engine, rid, "cancelled")
    run, steps = detail(engine, rid)
    assert run.error == "cancelled by alice; ran the clean-up steps: Put it back"
    assert [s.status for s in steps] == [
        "succeeded", "succeeded", "skipped", "succeeded", "skipped"
    ]  # fmt: skip
    assert server.applied() == {"D": 1, "C": 1, "U": 1}
    assert count(engine, "ledger_lock") == 0


def test_cancelling_a_waiting_run_hands_it_to_a_worker_for_the_clean_up(engine, server, pools):
    rid = start(
        engine,
        [
            call_step("drain", server.url, "D"),
            always(call_step("Put it back", server.url, "U")),
        ],
    )
    said = cancel(engine, rid)  # no worker yet: the run is pending
    assert said == (
        f"run {rid}: cancelled by alice; running its clean-up steps first (Put it back), "
        "then it ends cancelled"
    )
    run, _ = detail(engine, rid)
    assert run.status == "pending" and count(engine, "ledger_lock") == 1
    pools()
    wait_status(engine, rid, "cancelled")
    run, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["skipped", "succeeded"]
    assert server.applied() == {"U": 1}
    assert run.error == "cancelled by alice; ran the clean-up steps: Put it back"
    assert count(engine, "ledger_lock") == 0


def test_a_run_without_clean_up_steps_is_cancelled_at_once(engine, server):
    rid = start(engine, [call_step("drain", server.url, "D")])
    assert cancel(engine, rid) == f"run {rid}: cancelled; lock on 'node-2' released"
    run, _ = detail(engine, rid)
    assert run.status == "cancelled" and run.error == "cancelled by alice"


def test_aborting_a_run_in_doubt_runs_the_clean_up_steps_after_the_step(
    engine, server, pools, database_url, tmp_path: Path
):
    """The step in doubt is not run again; the clean-up steps after it are."""
    rid = start(
        engine,
        [
            call_step("restart", server.url, "R", hold_on_attempt=1),
            always(call_step("Put it back", server.url, "U")),
        ],
    )
    worker = WorkerProcess(database_url, tmp_path / "w1.log", name="w1", lease=1.0)
    try:
        wait_until(lambda: server.applied().get("R"), "the restart to happen", timeout=60)
    finally:
        worker.kill()
    pools()
    wait_status(engine, rid, "needs_attention", timeout=60)
    said = cancel(engine, rid)
    assert "running its clean-up steps first (Put it back)" in said
    wait_status(engine, rid, "cancelled")
    run, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["skipped", "succeeded"]
    assert server.applied() == {"R": 1, "U": 1}
    assert run.error.startswith("cancelled by alice (step 1 'restart' was left in an unknown")
    assert run.error.endswith("; ran the clean-up steps: Put it back")


def test_a_worker_killed_during_the_clean_up_step_resumes_it(
    engine, server, database_url, tmp_path: Path, pools
):
    """SIGKILL after the clean-up step's effect, before its result is recorded: another worker
    runs it again (idempotent: the effect is deduplicated) and the run ends cancelled."""
    gate = tmp_path / "gate"
    rid = start(
        engine,
        [
            call_step("catch up", server.url, "C", hold_until=str(gate)),
            call_step("undrain early", server.url, "X"),
            always(call_step("Put it back", server.url, "U", idempotent=True, hold_on_attempt=1)),
        ],
    )
    first = WorkerProcess(database_url, tmp_path / "w1.log", name="w1", lease=1.0)
    try:
        wait_until(lambda: server.applied().get("C"), "the catch-up step", timeout=60)
        cancel(engine, rid)
        gate.touch()
        wait_until(lambda: server.applied().get("U"), "the clean-up step's effect", timeout=60)
        assert step_status(engine, rid, 2) == "started"
    finally:
        first.kill()
    pools()
    wait_status(engine, rid, "cancelled", timeout=60)
    run, steps = detail(engine, rid)
    assert steps[2].status == "succeeded" and steps[2].attempts == 2
    assert server.requests()["U"] == 2 and server.applied() == {"C": 1, "U": 1}
    assert run.error == "cancelled by alice; ran the clean-up steps: Put it back"
    assert count(engine, "ledger_lock") == 0


def test_a_rollback_step_cannot_be_a_clean_up_step(engine):
    with pytest.raises(DomainError, match="a rollback step cannot also be always"):
        start(
            engine,
            [
                {"name": "a", "action": "ledger.noop"},
                {"name": "b", "action": "ledger.noop", "rollback_for": 0, "always": True},
            ],
        )
