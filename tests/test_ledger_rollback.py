"""Rollback steps, resuming or skipping past a step in doubt, and in-transaction hooks — on
SQLite and PostgreSQL, with real workers and the side-effect counter."""

from __future__ import annotations

import pytest

from incidentbot import db, ledger
from incidentbot.errors import DomainError
from tests.conftest import count
from tests.ledger_harness import RELEASE, call_step, wait_status


def start(engine, steps, key="rb", target="rpc-1") -> int:
    with db.transaction(engine) as s:
        return ledger.start_run(
            s, kind="test", key=key, steps=steps, target=target, actor="test:alice"
        ).id


def detail(engine, run_id):
    with db.transaction(engine) as s:
        return ledger.get_run(s, run_id), ledger.get_steps(s, run_id)


def rollback(step: dict, for_index: int) -> dict:
    return {**step, "rollback_for": for_index}


def test_a_failed_step_runs_its_own_rollback_steps_then_the_run_fails(engine, server, pools):
    server.script("B-drain-fails", (400, {}))
    rid = start(
        engine,
        [
            call_step("check", server.url, "A"),
            call_step("drain", server.url, "B-drain-fails"),
            call_step("restart", server.url, "C"),
            rollback(call_step("undo check", server.url, "A-undo"), 0),
            rollback(call_step("undrain", server.url, "B-undo"), 1),
            rollback(call_step("say so", server.url, "B-undo-2"), 1),
        ],
    )
    pools()
    wait_status(engine, rid, "failed")
    run, steps = detail(engine, rid)
    assert [s.status for s in steps] == [
        "succeeded", "failed", "skipped", "skipped", "succeeded", "succeeded"
    ]  # fmt: skip
    assert server.applied() == {"A": 1, "B-undo": 1, "B-undo-2": 1}
    assert "step 2 'drain' failed" in run.error and run.error.endswith("rolled back")
    assert count(engine, "ledger_lock") == 0


def test_rollback_steps_are_skipped_when_nothing_failed(engine, server, pools):
    rid = start(
        engine,
        [call_step("drain", server.url, "D"), rollback(call_step("undrain", server.url, "U"), 0)],
    )
    pools()
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["succeeded", "skipped"]
    assert server.applied() == {"D": 1}


def test_a_failing_rollback_fails_the_run_and_says_both(engine, server, pools):
    server.script("F1", (400, {}))
    server.script("F2", (400, {}))
    rid = start(
        engine,
        [call_step("drain", server.url, "F1"), rollback(call_step("undrain", server.url, "F2"), 0)],
    )
    pools()
    wait_status(engine, rid, "failed")
    run, _ = detail(engine, rid)
    assert "step 1 'drain' failed" in run.error
    assert "rollback step 2 'undrain' failed" in run.error


def test_rollback_must_name_an_earlier_main_step(engine):
    with pytest.raises(DomainError, match="rollback_for must name an earlier step"):
        start(engine, [{"name": "a", "action": "ledger.noop", "rollback_for": 0}])


def _needs_attention(engine, server, pools, key="H"):
    """A run whose first step hung and timed out. The timeout also bounds the step when it is
    run again (resume), so it leaves room for a busy machine; the hung attempt costs it."""
    rid = start(
        engine,
        [
            {**call_step("restart geth", server.url, key, hang_on_attempt=1), "timeout": 2.0},
            call_step("after", server.url, f"{key}-after"),
        ],
    )
    pools()
    wait_status(engine, rid, "needs_attention")
    return rid


def test_resume_runs_the_step_in_doubt_again_and_keeps_the_lock(engine, server, pools):
    rid = _needs_attention(engine, server, pools)
    RELEASE.set()  # the hung first attempt returns; its late result is not recorded
    with db.transaction(engine) as s:
        message = ledger.resume(s, rid, actor="slack:UCMDR")
    assert message == f"run {rid}: step 1 'restart geth' to run again, resumed by slack:UCMDR"
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["succeeded", "succeeded"]
    assert steps[0].attempts == 2
    assert server.applied()["H-after"] == 1


def test_skip_marks_the_step_skipped_and_goes_on(engine, server, pools):
    rid = _needs_attention(engine, server, pools, key="S")
    with db.transaction(engine) as s:
        message = ledger.resume(s, rid, actor="slack:UCMDR", skip=True)
    assert message == f"run {rid}: step 1 'restart geth' skipped by slack:UCMDR"
    wait_status(engine, rid, "succeeded")
    _, steps = detail(engine, rid)
    assert [s.status for s in steps] == ["skipped", "succeeded"]
    assert "skipped by slack:UCMDR" in steps[0].error
    assert server.applied() == {"S-after": 1}


def test_resume_is_refused_unless_the_run_needs_attention(engine, server, pools):
    rid = start(engine, [call_step("a", server.url, "R")])
    pools()
    wait_status(engine, rid, "succeeded")
    with db.transaction(engine) as s, pytest.raises(DomainError, match="has succeeded: only"):
        ledger.resume(s, rid, actor="x")


@pytest.mark.parametrize("savepoint", [True, False], ids=["savepoint", "no-savepoint"])
def test_transition_hooks_write_in_the_same_transaction(engine, server, pools, savepoint):
    """A hook's write commits with the transition; a failing hook changes nothing else (a
    hook without a savepoint fails before its one write)."""
    seen: list[str] = []

    def failing(session, ev):
        seen.append(ev.kind)
        if ev.kind == "step.started":
            raise RuntimeError("hook bug")

    def writing(session, ev):
        if ev.kind == "run.succeeded":
            session.execute(
                ledger.Run.__table__.update()
                .where(ledger.Run.__table__.c.id == ev.run_id)
                .values(created_by="hooked")
            )

    removers = [
        ledger.on_transition(failing, savepoint=savepoint),
        ledger.on_transition(writing, savepoint=savepoint),
    ]
    try:
        rid = start(engine, [call_step("a", server.url, "T")], target=None)
        pools()
        wait_status(engine, rid, "succeeded")
    finally:
        for remove in removers:
            remove()
    assert {"run.created", "step.started", "step.succeeded", "run.succeeded"} <= set(seen)
    assert seen.count("step.started") == 1  # each event once, not again at a later commit
    run, steps = detail(engine, rid)
    assert run.created_by == "hooked" and steps[0].status == "succeeded"
