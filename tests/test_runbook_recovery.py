"""The decisions after a crash on both back ends: skip gives later steps the outputs they read
(or is refused, changing nothing), abort runs the step's on_failure steps, and a step that
remembers what it read keeps the first attempt's reading.

A crash is made the ledger's way: worker-a marks the step started and its lease runs out
before it finishes; worker-b finds the step in doubt. Nothing is guessed, and every side
effect is a request counted by a server in the test process.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from incidentbot import db, ledger
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents import service as svc
from incidentbot.ledger import control, memory, transitions
from incidentbot.ledger.leases import claim_next
from incidentbot.ledger.models import Run
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import planning, recovery, run_context, runtime
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.loader import RunbookError, load_text
from tests.egress_support import LOOPBACK
from tests.lab_support import wait_for
from tests.ledger_harness import EffectServer, call_step

POKE = """
name: poke
description: Poke a node, then say what it answered
params:
  url: {type: string}
steps:
  - id: poke
    name: Poke it
    uses: http.request
    with: {method: POST, url: "{{ params.url }}", json: {token: poke}}
SKIPPED
    on_failure:
      - id: unpoke
        name: Take the poke back
        uses: http.request
        idempotent: true
        with: {method: POST, url: "{{ params.url }}", json: {token: unpoke}}
  - id: note
    name: Say what it answered
    uses: incident.note
    with: {text: "poked: {{ steps.poke.outputs.status }}"}
"""
IF_SKIPPED = '    if_skipped: {status: "unknown (the poke was skipped)"}'


@pytest.fixture
def bot(engine, tmp_path: Path):
    settings = Settings(runbooks={"dirs": [str(tmp_path)], "egress": LOOPBACK})
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="RPC", severity="SEV2", actor="alice", commander="bob")
    runtime.install(engine, settings)
    return engine, settings


def in_doubt(bot, server: EffectServer, text: str) -> int:
    """Start the run and leave its first step started by a worker that died."""
    engine, settings = bot
    runbook = load_text(text, "poke.yaml", registry)
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, "INC-1"))
    plan = planning.plan(
        runbook, {"url": server.url}, incident=info, services=Services(settings=settings)
    )
    with db.transaction(engine) as s:
        row = rb_engine.start(s, settings, plan, key=str(uuid.uuid4()), requester="alice",
                              incident=svc.get(s, "INC-1"), source="cli")  # fmt: skip
        rid = row.run_id
    with db.transaction(engine) as s:
        assert claim_next(s, "worker-a", 30).id == rid
    with db.transaction(engine) as s:
        assert transitions.begin_step(s, rid, "worker-a", 30, ledger.registry) is not None
    with db.transaction(engine) as s:
        now = db.db_now(s)
        s.execute(update(Run).where(Run.id == rid)
                  .values(lease_expires_at=now - timedelta(seconds=1)))  # fmt: skip
    with db.transaction(engine) as s:
        assert claim_next(s, "worker-b", 30).id == rid
        assert transitions.begin_step(s, rid, "worker-b", 30, ledger.registry) is None
    assert status(engine, rid) == "needs_attention"
    return rid


def status(engine, rid: int) -> str:
    with db.transaction(engine) as s:
        return ledger.get_run(s, rid).status


def work(engine, rid: int) -> Run:
    pool = WorkerPool(engine, threads=1, poll=0.02, only_run=rid).start()
    try:
        wait_for(lambda: status(engine, rid) in ("succeeded", "failed", "cancelled"), "the end")
    finally:
        pool.stop(timeout=10)
    with db.transaction(engine) as s:
        return ledger.get_run(s, rid)


def notes(engine) -> list[str]:
    with db.transaction(engine) as s:
        return [e.summary for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "note"]


def test_a_skip_that_would_leave_later_steps_without_outputs_is_refused(bot, server):
    engine, _ = bot
    rid = in_doubt(bot, server, POKE.replace("SKIPPED\n", ""))
    with pytest.raises(DomainError) as refused, db.transaction(engine) as s:
        recovery.resume(s, rid, actor="bob", skip=True)
    message = str(refused.value)
    assert "step 1 'Poke it' cannot be skipped" in message, message
    assert "note reads steps.poke.outputs.status" in message, message
    assert "Resume it (run it again) or abort the run" in message, message
    assert status(engine, rid) == "needs_attention"  # nothing changed

    with db.transaction(engine) as s:  # running it again is fine
        recovery.resume(s, rid, actor="bob")
    run = work(engine, rid)
    assert run.status == "succeeded", run.error
    assert server.requests() == Counter({"poke": 1})
    assert notes(engine)[-1] == "poked: 200"


def test_a_skipped_step_gives_later_steps_its_if_skipped_outputs(bot, server):
    engine, _ = bot
    rid = in_doubt(bot, server, POKE.replace("SKIPPED", IF_SKIPPED))
    with db.transaction(engine) as s:
        said = recovery.resume(s, rid, actor="bob", skip=True)
    assert "step 1 'Poke it' skipped by bob" in said
    run = work(engine, rid)
    assert run.status == "succeeded", run.error
    assert server.requests() == Counter()  # it happened (a person said so): not done again
    assert notes(engine)[-1] == "poked: unknown (the poke was skipped)"


def test_abort_runs_the_steps_on_failure_then_the_run_fails(bot, server):
    engine, _ = bot
    rid = in_doubt(bot, server, POKE.replace("SKIPPED", IF_SKIPPED))
    with db.transaction(engine) as s:
        said = control.cancel(s, rid, actor="bob", reason="in Slack")
    assert said == (
        f"run {rid}: cancelled by bob: in Slack at step 1 'Poke it'; running its on_failure "
        "steps first (Take the poke back), then it ends failed"
    )
    with db.transaction(engine) as s:  # it keeps its lock until they ran
        assert ledger.get_run(s, rid).status == "pending"
    run = work(engine, rid)
    assert run.status == "failed"
    assert run.error.startswith("cancelled by bob: in Slack (step 1 'Poke it'")
    assert run.error.endswith("; rolled back")
    assert server.requests() == Counter({"unpoke": 1})  # the undo ran; the poke did not
    assert not any(n.startswith("poked") for n in notes(engine))


def test_abort_at_a_step_without_on_failure_ends_the_run(bot, server):
    engine, _ = bot
    text = (
        POKE.replace("SKIPPED", IF_SKIPPED).split("    on_failure:")[0]
        + POKE.split("json: {token: unpoke}}\n")[1]
    )
    rid = in_doubt(bot, server, text)
    with db.transaction(engine) as s:
        said = control.cancel(s, rid, actor="bob")
    assert said.startswith(f"run {rid}: cancelled (step 1 'Poke it' was left in an unknown")
    assert status(engine, rid) == "cancelled"
    assert server.requests() == Counter()


def test_what_the_first_attempt_read_is_kept_for_the_attempts_after_it(engine, server):
    with db.transaction(engine) as s:
        move = call_step("move", server.url, "M1", idempotent=True)
        run = ledger.start_run(s, kind="test", key="remember", actor="alice", steps=[move])
        rid = run.id
        assert claim_next(s, "worker-a", 30).id == rid
    with db.transaction(engine) as s:
        assert transitions.begin_step(s, rid, "worker-a", 30, ledger.registry).attempt == 1
    with db.transaction(engine) as s:
        assert memory.recall(s, rid, 0) is None
        kept = memory.keep(s, rid, 0, 1, {"previous": {"node-1": "UP"}})
    assert kept == {"previous": {"node-1": "UP"}}
    with db.transaction(engine) as s:  # a second reading never replaces the first
        assert memory.keep(s, rid, 0, 1, {"previous": {"node-1": "DRAIN"}}) == kept
        assert memory.recall(s, rid, 0) == kept
        with pytest.raises(ledger.RetryableError, match="no longer the running one"):
            memory.keep(s, rid, 0, 2, {"previous": {}})  # not the attempt started
    with db.transaction(engine) as s:
        assert memory.recall(s, rid, 0) == kept


def test_the_checker_holds_if_skipped_to_what_later_steps_read(tmp_path):
    wrong = POKE.replace(
        "SKIPPED", '    if_skipped: {code: 200, status: "{{ steps.note.status }}"}'
    )
    with pytest.raises(RunbookError) as found:
        load_text(wrong, "poke.yaml", registry)
    text = str(found.value)
    assert "steps[0].if_skipped.code: http.request has no output 'code'" in text, text
    assert "step 'note' runs later" in text, text

    missing = POKE.replace("SKIPPED", "    if_skipped: {elapsed_ms: 0}")
    with pytest.raises(RunbookError) as found:
        load_text(missing, "poke.yaml", registry)
    text = str(found.value)
    assert (
        "steps[0].if_skipped: misses outputs later steps read after a skip: "
        "note reads steps.poke.outputs.status"
    ) in text, text
    assert load_text(POKE.replace("SKIPPED", IF_SKIPPED), "poke.yaml", registry).name == "poke"
