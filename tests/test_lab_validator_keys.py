"""move-validator-keys and failover-validator on the consensus lab: a Lodestar devnet,
validator client A signing, B configured for the same keys and stopped.

The runbook with its start step put first (as a hand-edited or forced run would have it)
stops before B starts, saying why. The move from A to B, then the failover from B, its host
gone (SIGKILLed, its keymanager API unreachable), back to A with the history exported from B's
disk: each run with the worker SIGKILLed at every step and resumed, each ending with one client
signing, its slashing-protection history covering the other's for every key of the set, and
nothing in the beacon node's slashing pools. The runs are approved by two people (bob, the
incident's commander, and carol). Stops are proven over one epoch (what the proof needs on a
one-node devnet; the runbooks' default is two). The incident lists the keys as the validators
affected: chain impact is sampled from the lab's beacon node while the keys move, and its
postmortem adds the samples up.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidentbot import db
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.impact.sampler import sample
from incidentbot.incidents import service as svc
from incidentbot.ledger import service as ledger
from incidentbot.ledger.worker import WorkerPool
from incidentbot.policy_models import DEFAULT_FIELDS, FieldSpec
from incidentbot.postmortems.render import render
from incidentbot.runbooks import approvals, planning, recovery, run_context, runtime
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks.actions import ActionContext, Services, registry
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.loader import load_dirs
from incidentbot.sandbox.lab import Lab, consensus
from incidentbot.usecases import incidents as uc
from incidentbot.usecases.core import Actor, Core
from tests.consensus_support import (  # noqa: F401 - a fixture
    EPOCH_WAIT,
    beacon_data,
    egress,
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
        },
        # The incident lists the validators affected: chain impact is sampled from the lab.
        fields=[*DEFAULT_FIELDS, FieldSpec(name="validators", label="Validators")],
        impact={"beacon_url": found["vars"]["consensus"]["beacon"], "every": 16},
    )
    with db.transaction(engine) as s:
        svc.declare(s, settings, title="validators", severity="SEV1", actor="alice",
                    commander="bob")  # fmt: skip
    runtime.install(engine, settings)
    yield engine, settings
    engine.dispose()


MOVE = {"key_set": consensus.KEY_SET, "source": consensus.VALIDATOR_A,
        "target": consensus.VALIDATOR_B, "epochs": 1}  # fmt: skip
FAILOVER = {**MOVE, "source": consensus.VALIDATOR_B, "target": consensus.VALIDATOR_A}


def start(
    engine: Any,
    settings: Settings,
    book: Runbook,
    params: dict[str, Any] = MOVE,
    *,
    force: bool = False,
) -> int:
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, "INC-1"))
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


def shipped(settings: Settings, name: str = "move-validator-keys") -> Runbook:
    book = load_dirs(settings.runbooks.dirs, registry).get(name)
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


class Killer:
    """Real worker processes, each SIGKILLed right after a step was marked started (before its
    side effect), once per step; a fresh one takes the run over. While it waits it samples
    chain impact into the incident (what the ``impact.sample`` job does at its cadence)."""

    def __init__(self, lab: Lab, engine: Any, settings: Settings, zygote: Zygote, tmp_path: Path):
        self.lab, self.engine, self.settings = lab, engine, settings
        self.zygote, self.tmp_path = zygote, tmp_path
        self.children: list[Child] = []
        self.kills: list[str] = []
        self.samples = 0
        self.sampled_at = 0.0
        self.signing_when_stopped: list[str] | None = None
        # The clients running just after each kill of the bot (at most one, at every kill).
        self.signing_at_kills: list[tuple[str, list[str]]] = []
        # (run, step) -> what happens before the next worker takes the run over, and after.
        self.hooks: dict[tuple[int, int], tuple[Any, Any]] = {}

    def worker(self) -> Child:
        settings = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.update(
            INCIDENTBOT_DATABASE_URL=str(self.engine.url),
            INCIDENTBOT_RUNBOOKS__DIRS=json.dumps([str(d) for d in settings.runbooks.dirs]),
            INCIDENTBOT_RUNBOOKS__VARS=json.dumps(settings.runbooks.vars),
            INCIDENTBOT_RUNBOOKS__EGRESS=settings.runbooks.egress.model_dump_json(),
            INCIDENTBOT_RUNBOOKS__SHELL_ALLOW=json.dumps(settings.runbooks.shell_allow),
            ZYGOTE_PAUSE="started",
            ZYGOTE_PAUSE_STEPS="",
            ZYGOTE_PAUSE_DIR=str(self.tmp_path),
        )
        name = f"worker-{len(self.children) + 1}"
        # A lease long enough that a busy machine never loses one by accident; a killed
        # worker's lease is ended in the database instead (expire_leases), as the clock would.
        argv = ["worker", "--threads", "1", "--lease", "300", "--poll", "0.05",
                "--name", name, "--grace", "0"]  # fmt: skip
        child = self.zygote.spawn(env, self.tmp_path / f"{name}.log", argv)
        self.children.append(child)
        return child

    def _replace_paused(self) -> bool:
        paused = self.children[-1].paused()
        if paused:
            assert self.children[-1].kill() == -9
            expire_leases(self.engine, f"worker-{len(self.children)}/")
            self.kills.append(paused)
            self.signing_at_kills.append((paused, signing(self.lab)))
            run, step = (int(paused.split(f"{k}=")[1].split()[0]) for k in ("run", "step"))
            before, after = self.hooks.pop((run, step), (None, None))
            if before:
                before()
            self.worker()
            if after:
                after()
        if time.monotonic() - self.sampled_at > 2:  # a few reads, not one per poll
            self.sampled_at = time.monotonic()
            self.samples += sample(self.engine, self.settings, utcnow())
        return False

    def status(self, rid: int) -> str:
        with db.transaction(self.engine) as s:
            return ledger.get_run(s, rid).status

    def drive(self, done: Any, what: str, timeout: float) -> None:
        try:
            wait_for(lambda: done() or self._replace_paused(), what, timeout)
        except AssertionError:
            logs = "\n".join(f"--- {c.log_path.name}\n{c.log()}" for c in self.children)
            raise AssertionError(f"timed out waiting for {what}\n{logs}") from None

    def run_through(
        self, book: Runbook, params: dict[str, Any], hooks: dict[int, tuple[Any, Any]] | None = None
    ) -> ledger.Run:
        """Start, approve (bob and carol), expect the kill at the start of the target to stop
        the run for a person with no client started, resume, run to the end. ``hooks``: step
        number -> what to do before and after a fresh worker takes over at its kill."""
        rid = start(self.engine, self.settings, book, params)
        self.hooks.update({(rid, n): pair for n, pair in (hooks or {}).items()})
        self.drive(lambda: self.status(rid) == "parked", "the approval request", 120)
        for who in ("bob", "carol"):
            assert approvals.decide(self.engine, self.settings, rid, who, "approved").accepted
        settled = ("pending", "running")
        self.drive(lambda: self.status(rid) not in settled, "the kill at the start", RUN_WAIT)
        with db.transaction(self.engine) as s:
            run = ledger.get_run(s, rid)
        assert run.status == "needs_attention", run.error
        assert "Start the target" in (run.error or "")
        self.signing_when_stopped = signing(self.lab)
        with db.transaction(self.engine) as s:
            recovery.resume(s, rid, actor="bob")
        self.drive(lambda: self.status(rid) not in settled, "the run", RUN_WAIT)
        with db.transaction(self.engine) as s:
            return ledger.get_run(s, rid)

    def killed_steps(self, rid: int) -> set[int]:
        return {int(k.split("step=")[1].split()[0]) for k in self.kills if f"run={rid} " in k}

    def close(self) -> None:
        for child in self.children:
            child.kill()


def signing(lab: Lab) -> list[str]:
    """The validator clients running."""
    sup = lab.supervisor
    return [p for p in consensus.VALIDATORS if sup.state(p).running]


def test_killed_at_every_step_at_most_one_client_signs_and_the_run_resumes(
    consensus_lab: Lab,
    bot,
    zygote: Zygote,
    tmp_path: Path,
) -> None:
    """move-validator-keys from A to B, then failover-validator from B, its host gone
    (SIGKILLed, its keymanager API unreachable), back to A with B's history from a file. Each
    run is SIGKILLed at every step (before the step's side effect) and taken over by a fresh
    worker; the start of the target is not idempotent: its kill stops the run for a person
    with no client signing; resumed, the run ends. At most one client signs throughout, the
    slashing pools stay empty, and the incident, which lists the keys as the validators
    affected, gets chain-impact samples its postmortem adds up."""
    engine, settings = bot
    core = Core(settings, engine, chat=False)  # no Slack here: no header to refresh
    uc.set_field(core, Actor("bob", "cli"), "INC-1", "validators", "6-7")
    killer = Killer(consensus_lab, engine, settings, zygote, tmp_path)
    wait_for(lambda: a_signs(consensus_lab), "validator client A to sign", EPOCH_WAIT)
    killer.worker()
    try:
        moved = killer.run_through(shipped(settings), MOVE)
        assert moved.status == "succeeded", moved.error
        assert killer.signing_when_stopped == []  # A proven stopped, B not started yet
        assert signing(consensus_lab) == [consensus.VALIDATOR_B]
        assert slashings(consensus_lab) == ([], [])
        assert len(killer.killed_steps(moved.id)) >= 6, killer.kills  # approval and each step
        moved_cleanly(consensus_lab, engine, moved.id)

        # B's host dies as the failover begins, right before the worker that proves it gone
        # takes the run over (the client SIGKILLed, its keymanager API gone with it); its disk
        # survives: its history, exported offline while the chain is watched, is the file the
        # failover is given.
        b_vars = consensus_lab.runbook_vars()["consensus"]["validators"]["validator-b"]
        api = b_vars["api"]
        assert httpx.get(api + "/eth/v1/keystores", timeout=5).status_code == 401  # no token
        listed = act(consensus_lab, settings, "validator.keys_list",
                     {"url": api, "token_file": b_vars["token_file"]})  # fmt: skip
        assert listed["keys"] == 2 and listed["readonly"] == []
        token = Path(b_vars["token_file"]).read_text().strip()
        assert token.startswith("api-token-")
        backup = Path(consensus_lab.runbook_vars()["protection_dir"]) / "lab-backup-b.json"

        def b_dies() -> None:
            assert "killed" in consensus_lab.fault(consensus.VALIDATOR_B, "kill")
            sup = consensus_lab.supervisor
            wait_for(lambda: not sup.state(consensus.VALIDATOR_B).running, "B to be down", 30)
            with pytest.raises(httpx.ConnectError):
                httpx.get(api + "/eth/v1/keystores", timeout=5)

        params = {**FAILOVER, "protection_file": backup.name}
        failed_over = killer.run_through(
            shipped(settings, "failover-validator"),
            params,
            hooks={2: (b_dies, lambda: export_backup(consensus_lab, settings, backup))},
        )
        assert failed_over.status == "succeeded", failed_over.error
        assert killer.signing_when_stopped == []
        assert signing(consensus_lab) == [consensus.VALIDATOR_A]
        assert slashings(consensus_lab) == ([], [])
        assert len(killer.killed_steps(failed_over.id)) >= 6, killer.kills
        # Just after every kill of either run, at most one client was signing.
        assert len(killer.signing_at_kills) == len(killer.kills)
        assert all(len(running) <= 1 for _at, running in killer.signing_at_kills), (
            killer.signing_at_kills
        )
    finally:
        killer.close()
    failed_over_cleanly(engine, failed_over.id, backup, token)
    chain_impact_in_the_postmortem(engine, settings, killer.samples)


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


def act(lab: Lab, settings: Settings, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """An action run by hand (plan, then run) under the lab's egress policy."""
    ctx = ActionContext(run_id=0, step_id="by-hand",
                        services=Services(settings=settings, egress=egress(lab)))  # fmt: skip
    action = registry.get(name)
    assert action is not None
    inputs = action.validate(data)
    assert action.plan(inputs, ctx)
    return action.run(inputs, ctx)


def export_backup(lab: Lab, settings: Settings, file: Path) -> Path:
    """What an operator does with the dead host's disk: export its history offline into the
    protection directory (validator.protection_export, B's program stopped: EXITED)."""
    cl = lab.runbook_vars()["consensus"]
    b = cl["validators"][consensus.VALIDATOR_B]
    exported = act(lab, settings, "validator.protection_export",
                   {**cl["cli"], "socket": cl["supervisor"], "program": b["program"],
                    "data_dir": b["data_dir"], "file": str(file)})  # fmt: skip
    assert exported["keys"] == 2 and all(m["max_target_epoch"] for m in exported["marks"])
    return file


def failed_over_cleanly(engine: Any, rid: int, backup: Path, token: str) -> None:
    """B proven gone from the chain's side (its API did not answer, its keys quiet), the
    backup reaching the last epoch the chain may have seen B sign, A's history covering it;
    the token of B's keymanager API nowhere."""
    with db.transaction(engine) as s:
        steps = ledger.get_steps(s, rid)
        outputs = {(st.input or {}).get("step"): st.output or {} for st in steps}
        timeline = [e.summary for e in svc.timeline(s, svc.get(s, "INC-1"))]
    gone, checked = outputs["prove_gone"], outputs["check_history"]
    assert gone["api"] and len(gone["epochs_checked"]) >= 1
    assert checked["cover_epoch"] == gone["cover_epoch"] and checked["keys"] == 2
    assert checked["file"] == str(backup)
    for row in checked["reached"]:
        assert row["needed_epoch"] == gone["cover_epochs"][str(row["index"])]
        assert row["max_target_epoch"] >= row["needed_epoch"]
    assert outputs["verify"]["covered"] is True and outputs["verify"]["keys"] == 2
    assert outputs["import"]["file"] == str(backup)
    assert any("failed over from validator-b" in n for n in timeline)
    text = json.dumps([outputs, timeline, [st.error for st in steps]])
    assert token not in text and "api-token-" not in text


def chain_impact_in_the_postmortem(engine: Any, settings: Settings, recorded: int) -> None:
    """The samples taken while the keys moved, added up with where they came from: the epochs
    in which neither client signed (the proofs of the stops) are missed attestations."""
    assert recorded >= 3
    with db.transaction(engine) as s:
        incident = svc.get(s, "INC-1")
        samples = [e.data for e in svc.timeline(s, incident) if e.kind == "impact.sample"]
        text = render(s, settings, incident, "md").text
    assert len(samples) == recorded
    missed = sum(len(d["missed_attestations"]) for d in samples)
    assert missed >= 4  # two keys, at least one quiet epoch in each run
    where = re.search(r"\*\*Missed attestations\*\* \(validators not live, from liveness: "
                      r"(\d+) samples, epochs (\d+)–(\d+)[^;]*; beacon node 127\.0\.0\.1:\d+\): "
                      r"(\d+) of (\d+) validator-epochs", text)  # fmt: skip
    assert where, text
    assert int(where[1]) == recorded and int(where[4]) == missed
    assert int(where[5]) == 2 * recorded
    assert "**Missed proposals** (proposer duties without a block:" in text
    assert "**Max slots behind** (beacon node sync distance:" in text
    assert "**Finality delay**" in text
