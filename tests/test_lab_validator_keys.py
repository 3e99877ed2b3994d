"""move-validator-keys on the consensus lab: a Lodestar devnet, validator client A signing,
B configured for the same keys and stopped.

The runbook with its start step put first (as a hand-edited or forced run would have it)
stops before B starts, saying why. The move from A to B, with the worker SIGKILLed at every
step and the run resumed, ends with B signing, A stopped, B's slashing-protection history
covering A's for every key of the set, and nothing in the beacon node's slashing pools. The run
is approved by two people (bob, the incident's commander, and carol). The stop is proven over
one epoch (what the proof needs on a one-node devnet; the runbook's default is two).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.ledger import service as ledger
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import approvals, planning, recovery, run_context, runtime
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks.actions import Services, registry
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.lab import Lab, consensus
from tests.consensus_support import (  # noqa: F401 - a fixture
    EPOCH_WAIT,
    beacon_data,
    head_slot,
    healthy_consensus,
    needs_consensus,
    slashings,
)
from tests.lab_support import wait_for
from tests.ledger_harness import expire_leases
from tests.worker_zygote import Child, Zygote

REPO = Path(__file__).resolve().parent.parent
pytestmark = needs_consensus
RUN_WAIT = 12 * EPOCH_WAIT / 4  # stop proof, CLI runs, doppelgänger wait: about ten epochs


@pytest.fixture
def bot(
    consensus_lab: Lab,
    sqlite_template: Path,
    tmp_path: Path,
) -> Iterator[tuple[Any, Settings]]:
    """SQLite only: the run ledger's back ends are covered elsewhere; this is about the lab."""
    path = tmp_path / "incidentbot.db"
    path.write_bytes(sqlite_template.read_bytes())
    engine = db.make_engine(f"sqlite:///{path}")
    found = consensus_lab.runbook_settings()  # `lab vars`: all the runbook reads
    settings = Settings(
        runbooks={
            "dirs": [str(REPO / "runbooks")],
            "access": [{"runbooks": ["*"], "approvers": ["carol"]}],
            **found,
        }
    )
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="validators", severity="SEV1", actor="alice",
                    commander="bob")  # fmt: skip
    runtime.install(engine, settings)
    yield engine, settings
    engine.dispose()


def start(engine: Any, settings: Settings, book: Runbook, *, force: bool = False) -> int:
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, "INC-1"))
    params = {"key_set": consensus.KEY_SET, "source": consensus.VALIDATOR_A,
              "target": consensus.VALIDATOR_B, "epochs": 1}  # fmt: skip
    plan = planning.plan(
        book,
        params,
        incident=info,
        variables=settings.runbooks.vars,
        services=Services(settings=settings),
    )
    if force:
        for planned in plan.steps:
            planned.problem = None
    with db.transaction(engine) as s:
        row = rb_engine.start(s, settings, plan, key=str(uuid.uuid4()), requester="alice",
                              incident=svc.get(s, "INC-1"), source="cli")  # fmt: skip
        return row.run_id


def approve_and_work(engine: Any, settings: Settings, rid: int) -> ledger.Run:
    def status() -> str:
        with db.transaction(engine) as s:
            return ledger.get_run(s, rid).status

    pool = WorkerPool(engine, threads=1, poll=0.05, only_run=rid).start()
    try:
        wait_for(lambda: status() == "parked", "the approval request", 60)
        for who in ("bob", "carol"):
            assert approvals.decide(engine, settings, rid, who, "approved").accepted
        wait_for(
            lambda: status() in ("succeeded", "failed", "needs_attention"), "the run", RUN_WAIT
        )
    finally:
        pool.stop(timeout=30)
    with db.transaction(engine) as s:
        return ledger.get_run(s, rid)


def a_signs(lab: Lab) -> bool:
    """The key set attested in the last complete epoch: the lab starts A alone, with
    doppelgänger protection, so it signs nothing in its first epochs and has no history to
    carry over before this holds."""
    slot = head_slot(lab)
    if slot is None or slot // consensus.SLOTS_PER_EPOCH < 1:
        return False
    epoch = slot // consensus.SLOTS_PER_EPOCH - 1
    indices = [str(i) for i in consensus.indices(consensus.VC_INDICES)]
    data = beacon_data(lab, "/eth/v1/validator/liveness", epoch=str(epoch), indices=indices)
    return bool(data) and all(item["is_live"] for item in data)


def shipped(settings: Settings) -> Runbook:
    book = load_dirs(settings.runbooks.dirs, registry).get("move-validator-keys")
    assert book is not None
    return book


def test_a_run_told_to_start_b_while_a_signs_refuses(consensus_lab: Lab, bot) -> None:
    engine, settings = bot
    wait_for(lambda: a_signs(consensus_lab), "validator client A to sign", EPOCH_WAIT)
    data = shipped(settings).model_dump(mode="json", by_alias=True)
    first = next(st for st in data["steps"] if st["id"] == "start_target")
    data["steps"] = [first, *(st for st in data["steps"] if st["id"] != "start_target")]
    book = Runbook.model_validate(data)
    with pytest.raises(Exception, match="the double-sign interlock refuses it"):
        start(engine, settings, book)
    run = approve_and_work(engine, settings, start(engine, settings, book, force=True))
    assert run.status == "needs_attention"
    assert "interlock refused: start_target starts signing" in (run.error or "")
    assert "no earlier step proves the source client stopped" in (run.error or "")
    sup = consensus_lab.supervisor
    assert sup.state(consensus.VALIDATOR_A).running
    assert not sup.state(consensus.VALIDATOR_B).running
    assert slashings(consensus_lab) == ([], [])


# -- SIGKILL at every step ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    forker = Zygote()
    yield forker
    forker.close()


def test_killed_at_every_step_at_most_one_client_signs_and_the_run_resumes(
    consensus_lab: Lab,
    bot,
    zygote: Zygote,
    tmp_path: Path,
) -> None:
    """Real worker processes, each SIGKILLed right after a step was marked started (before its
    side effect); a fresh one takes the run over. The start of B is not idempotent: its kill
    stops the run for a person, with A stopped and B not started; resumed, the move ends."""
    engine, settings = bot
    url = str(engine.url)
    children: list[Child] = []
    kills: list[str] = []

    def worker() -> Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.update(
            INCIDENTBOT_DATABASE_URL=url,
            INCIDENTBOT_RUNBOOKS__DIRS=json.dumps([str(d) for d in settings.runbooks.dirs]),
            INCIDENTBOT_RUNBOOKS__VARS=json.dumps(settings.runbooks.vars),
            INCIDENTBOT_RUNBOOKS__EGRESS=settings.runbooks.egress.model_dump_json(),
            INCIDENTBOT_RUNBOOKS__SHELL_ALLOW=json.dumps(settings.runbooks.shell_allow),
            ZYGOTE_PAUSE="started",
            ZYGOTE_PAUSE_STEPS="",
            ZYGOTE_PAUSE_DIR=str(tmp_path),
        )
        name = f"worker-{len(children) + 1}"
        # A lease long enough that a busy machine never loses one by accident; a killed
        # worker's lease is ended in the database instead (expire_leases), as the clock would.
        argv = ["worker", "--threads", "1", "--lease", "30", "--poll", "0.05",
                "--name", name, "--grace", "0"]  # fmt: skip
        child = zygote.spawn(env, tmp_path / f"{name}.log", argv)
        children.append(child)
        return child

    def replace_paused() -> bool:
        paused = children[-1].paused()
        if paused:
            assert children[-1].kill() == -9
            expire_leases(engine, f"worker-{len(children)}/")
            kills.append(paused)
            worker()
        return False

    def status(rid: int) -> str:
        with db.transaction(engine) as s:
            return ledger.get_run(s, rid).status

    def drive(done: Any, what: str, timeout: float) -> None:
        try:
            wait_for(lambda: done() or replace_paused(), what, timeout)
        except AssertionError:
            logs = "\n".join(f"--- {c.log_path.name}\n{c.log()}" for c in children)
            raise AssertionError(f"timed out waiting for {what}\n{logs}") from None

    wait_for(lambda: a_signs(consensus_lab), "validator client A to sign", EPOCH_WAIT)
    worker()
    try:
        rid = start(engine, settings, shipped(settings))
        drive(lambda: status(rid) == "parked", "the approval request", 120)
        for who in ("bob", "carol"):
            assert approvals.decide(engine, settings, rid, who, "approved").accepted
        drive(lambda: status(rid) not in ("pending", "running"), "the kill at the start", RUN_WAIT)
        with db.transaction(engine) as s:
            run = ledger.get_run(s, rid)
        assert run.status == "needs_attention", run.error
        assert "Start the target" in (run.error or "")
        sup = consensus_lab.supervisor
        # At most one client signs: here none (A proven stopped, B not started yet).
        assert not sup.state(consensus.VALIDATOR_A).running
        assert not sup.state(consensus.VALIDATOR_B).running
        with db.transaction(engine) as s:
            recovery.resume(s, rid, actor="bob")
        drive(lambda: status(rid) not in ("pending", "running"), "the move", RUN_WAIT)
        with db.transaction(engine) as s:
            run = ledger.get_run(s, rid)
        assert run.status == "succeeded", run.error
        assert sup.state(consensus.VALIDATOR_B).running
        assert not sup.state(consensus.VALIDATOR_A).running
        assert slashings(consensus_lab) == ([], [])
        numbers = sorted({int(k.split("step=")[1].split()[0]) for k in kills})
        assert len(numbers) >= 6, kills  # the approval and every step of the move
    finally:
        for child in children:
            child.kill()
    moved_cleanly(consensus_lab, engine, run.id)


def moved_cleanly(lab: Lab, engine: Any, rid: int) -> None:
    """The end of a clean move: A's whole key set exported (public keys and signing roots
    only), B's history covering A's key by key, and the incident told where the keys sign."""
    with db.transaction(engine) as s:
        outputs = {(st.input or {}).get("step"): st.output or {} for st in ledger.get_steps(s, rid)}
    keys = len(consensus.indices(consensus.VC_INDICES))
    exported, verified = outputs["export"], outputs["verify"]
    assert exported["keys"] == keys and exported["dropped"] == 2  # Lodestar 1.5's metadata rows
    assert all(m["max_target_epoch"] is not None for m in exported["marks"])
    source = Path(exported["file"])
    assert source.parent == Path(lab.runbook_vars()["protection_dir"])
    assert len(json.loads(source.read_text())["data"]) == keys
    text = json.dumps(outputs) + source.read_text()
    assert not re.search(r"secret|private|password|keystore", text, re.IGNORECASE)
    assert verified["covered"] is True and verified["keys"] == keys
    for key in verified["checked"]:
        have, had = key["target"], key["source"]
        assert key["covered"] and have is not None
        for mark in ("max_block_slot", "max_source_epoch", "max_target_epoch"):
            assert had[mark] is None or (have[mark] is not None and have[mark] >= had[mark]), key
    with db.transaction(engine) as s:
        notes = [e.summary for e in svc.timeline(s, svc.get(s, "INC-1")) if e.kind == "note"]
    assert any("moved from validator-a to validator-b" in n for n in notes)
