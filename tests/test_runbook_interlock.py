"""The double-sign interlock, checked by `runbook validate` and again by the engine at run time.

The validator clients here are a fleet object in the test process: a client that starts signing
with a key set another client still signs with is a double sign (what the chain slashes). The
actions declare what they do to a key set the way real validator actions do (``signs``,
``proves_stopped``, ``imports_protection``, ``verifies_protection``); the runs go through the
real ledger, workers and database on both back ends.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import BaseModel, ConfigDict
from sqlmodel import select

from incidentbot import db, ledger
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.ledger import control
from incidentbot.ledger.worker import WorkerPool
from incidentbot.runbooks import engine as rb_engine
from incidentbot.runbooks import planning, runtime
from incidentbot.runbooks.actions import Action, Services, registry
from incidentbot.runbooks.definition import Runbook
from incidentbot.runbooks.models import RunbookRun
from tests.lab_support import wait_for


class Fleet:
    """Validator clients: which key sets each one signs with, and its protection history (the
    highest epoch it signed per key set)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.signing: dict[str, set[str]] = {"a": {"ops"}, "b": set()}
        self.history: dict[str, dict[str, int]] = {"a": {"ops": 40}, "b": {}}
        self.double_signs: list[str] = []
        self.calls: list[str] = []

    def start(self, client: str, keys: str) -> None:
        with self.lock:
            self.calls.append(f"start {client}")
            others = [c for c, ks in self.signing.items() if c != client and keys in ks]
            if others:
                self.double_signs.append(f"{keys} on {client} and {', '.join(others)}")
            self.signing[client].add(keys)

    def stop(self, client: str, keys: str) -> None:
        with self.lock:
            self.calls.append(f"stop {client}")
            self.signing[client].discard(keys)


FLEET = Fleet()


class KeyInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_set: str
    client: str
    source: str | None = None


class _KeyAction(Action):
    Inputs = KeyInputs
    key_set_input = "key_set"
    client_input = "client"
    outputs: ClassVar[dict[str, str]] = {"client": "the client"}

    def plan(self, inputs: Any, ctx: Any) -> str:
        return f"{self.name} {inputs.client} ({inputs.key_set})"


class Start(_KeyAction):
    name = "test.vc.start"
    signs = True

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        FLEET.start(inputs.client, inputs.key_set)
        return {"client": inputs.client}


class Stop(_KeyAction):
    name = "test.vc.stop"
    proves_stopped = True
    idempotent = True

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        FLEET.stop(inputs.client, inputs.key_set)
        return {"client": inputs.client}


class Import(_KeyAction):
    name = "test.vc.import"
    imports_protection = True
    key_set_input = None  # like an EIP-3076 import: the keys are in the file, for any key set
    idempotent = True

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        with FLEET.lock:
            FLEET.calls.append(f"import {inputs.client}")
            if inputs.source is not None:
                FLEET.history[inputs.client] = dict(FLEET.history[inputs.source])
        return {"client": inputs.client}


class Verify(_KeyAction):
    name = "test.vc.verify"
    verifies_protection = True
    key_set_input = None
    idempotent = True

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        from incidentbot.ledger import PermanentError

        with FLEET.lock:
            have = FLEET.history[inputs.client].get(inputs.key_set)
            need = FLEET.history[inputs.source or "a"].get(inputs.key_set, 0)
        if have is None:
            raise PermanentError(f"{inputs.client} has no history for {inputs.key_set}")
        if have < need:
            raise PermanentError(f"{inputs.client} history ends at epoch {have}, source {need}")
        return {"client": inputs.client}


ACTIONS = (Start, Stop, Import, Verify)


@pytest.fixture(autouse=True)
def fleet():  # type: ignore[no-untyped-def]
    global FLEET
    FLEET = Fleet()
    for action in ACTIONS:
        registry.register(action, replace=True)
    yield FLEET
    for action in ACTIONS:
        registry.unregister(action.name)


def key(step_id: str, uses: str, client: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "uses": f"test.vc.{uses}",
        "with": {"key_set": "{{ params.key_set }}", "client": client, **extra},
    }


SRC, DST = "{{ params.source }}", "{{ params.target }}"
STOP_A = key("stop_a", "stop", SRC)
IMPORT_B = key("import_b", "import", DST, source=SRC)
VERIFY_B = key("verify_b", "verify", DST, source=SRC)
START_B = key("start_b", "start", DST)


def runbook(*steps: dict[str, Any], name: str = "move-keys") -> dict[str, Any]:
    return {
        "name": name,
        "params": {
            "key_set": {"type": "string"},
            "source": {"type": "string", "default": "a"},
            "target": {"type": "string", "default": "b"},
        },
        "target": "keys/{{ params.key_set }}",
        "steps": list(steps),
    }


SAFE = runbook(STOP_A, IMPORT_B, VERIFY_B, START_B)
UNSAFE = runbook(START_B, STOP_A, IMPORT_B, VERIFY_B, name="move-keys-unsafe")


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):  # type: ignore[no-untyped-def]
    from incidentbot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    monkeypatch.setenv("INCIDENTBOT_DATA_DIR", str(tmp_path / "data"))

    def run(data: dict[str, Any]) -> tuple[int, str]:
        path = tmp_path / "runbooks" / f"{data['name']}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        capsys.readouterr()
        code = main(["runbook", "validate", str(path)])
        out, _ = capsys.readouterr()
        return code, out.replace(str(path), "FILE")

    return run


# -- runbook validate ---------------------------------------------------------------------------


def test_validate_accepts_stop_import_verify_then_start(run_cli):
    assert run_cli(SAFE) == (0, "1 runbook OK (FILE)\n")


def test_validate_refuses_starting_b_before_a_is_proven_stopped(run_cli):
    code, out = run_cli(UNSAFE)
    assert code == 1
    assert out.splitlines() == [
        "FILE:13: steps[0]: step start_b starts signing with key set {{ params.key_set }} at "
        "{{ params.target }}, but no earlier step proves the source client stopped: a step "
        "that proves it stopped (e.g. validator.stop) must come first"
    ]


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ((STOP_A, VERIFY_B, START_B), "no step imports the slashing-protection history"),
        ((STOP_A, IMPORT_B, START_B), "no step verifies the imported slashing-protection"),
        ((IMPORT_B, VERIFY_B, STOP_A, START_B), "no step imports the slashing-protection"),
        ((STOP_A, IMPORT_B, VERIFY_B, key("start_b", "start", SRC)), "nothing proves that {{"),
    ],
    ids=["no-import", "no-verify", "import-before-stop", "restart-the-source"],
)
def test_validate_refuses_each_missing_proof(run_cli, steps, why):
    code, out = run_cli(runbook(*steps))
    assert code == 1
    assert "step start_b starts signing" in out and why in out


def test_a_rollback_that_restarts_the_source_must_prove_the_target_stopped(run_cli):
    restart_a = key("restart_a", "start", SRC)
    careless = dict(START_B, on_failure=[restart_a])
    code, out = run_cli(runbook(STOP_A, IMPORT_B, VERIFY_B, careless))
    assert code == 1
    assert "steps[3].on_failure[0]: step restart_a starts signing" in out
    assert "while {{ params.target }} may still sign with it (start_b started it" in out

    careful = dict(
        START_B,
        on_failure=[
            key("stop_b", "stop", DST),
            key("import_a", "import", SRC, source=DST),
            key("verify_a", "verify", SRC, source=DST),
            restart_a,
        ],
    )
    assert run_cli(runbook(STOP_A, IMPORT_B, VERIFY_B, careful))[0] == 0


# -- at run time --------------------------------------------------------------------------------


@pytest.fixture
def bot(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(runbooks={"dirs": [str(tmp_path)]})
    runtime.install(engine, settings)
    return engine, settings


def start(bot, data: dict[str, Any], *, force: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Start a run of ``data`` without `runbook validate`; ``force`` also drops what the plan
    refused (as a bot that did not check, or a row written by hand, would)."""
    engine, settings = bot
    book = Runbook.model_validate(data)
    p = planning.plan(book, {"key_set": "ops"}, services=Services(settings=settings))
    if force:
        for planned in p.steps:
            planned.problem = None
    with db.transaction(engine) as s:
        row = rb_engine.start(
            s, settings, p, key=str(uuid.uuid4()), requester="alice", incident=None, source="cli"
        )
        return row.run_id


def work(engine, rid: int) -> ledger.Run:  # type: ignore[no-untyped-def]
    def settled() -> bool:
        with db.transaction(engine) as s:
            return ledger.get_run(s, rid).status in ("succeeded", "failed", "needs_attention")

    pool = WorkerPool(engine, threads=1, poll=0.02, only_run=rid).start()
    try:
        wait_for(settled, "the run to settle")
    finally:
        pool.stop(timeout=10)
    with db.transaction(engine) as s:
        return ledger.get_run(s, rid)


def test_the_safe_order_moves_the_keys_with_one_signer(bot, fleet):
    engine, _ = bot
    run = work(engine, start(bot, SAFE))
    assert run.status == "succeeded", run.error
    assert fleet.signing == {"a": set(), "b": {"ops"}}
    assert fleet.double_signs == []


def test_the_plan_refuses_an_unsafe_order_and_a_source_that_is_the_target(bot, fleet):
    _, settings = bot
    with pytest.raises(DomainError) as refused:
        start(bot, UNSAFE)
    assert str(refused.value) == (
        "the runbook cannot run as asked: step start_b: the double-sign interlock refuses it: "
        "start_b starts signing with key set ops at b, but no earlier step proves the source "
        "client stopped: a step that proves it stopped (e.g. validator.stop) must come first"
    )
    same = planning.plan(
        Runbook.model_validate(SAFE),
        {"key_set": "ops", "target": "a"},
        services=Services(settings=settings),
    )
    assert same.problems == [
        "step start_b: the double-sign interlock refuses it: start_b starts signing with key "
        "set ops at a, but no earlier step proves the source client stopped: a step that "
        "proves it stopped (e.g. validator.stop) must come first"
    ]
    assert fleet.calls == []


def test_an_unsafe_runbook_forced_past_validation_is_stopped_before_b_signs(bot, fleet):
    engine, _ = bot
    run = work(engine, start(bot, UNSAFE, force=True))
    assert run.status == "needs_attention"
    assert run.error == (
        "step 1 'start_b': interlock refused: start_b starts signing with key set ops at b, "
        "but no earlier step proves the source client stopped: a step that proves it stopped "
        "(e.g. validator.stop) must come first. Nothing was started"
    )
    assert fleet.calls == []  # B never started; A signs on, alone
    assert fleet.signing == {"a": {"ops"}, "b": set()}
    with db.transaction(engine) as s:
        assert ledger.get_run(s, run.id).target == "keys/ops"  # the key set stays locked


def test_a_hand_edited_snapshot_cannot_skip_the_stop(bot, fleet):
    """The definition stored with the run is edited so the stop never runs: the signing step
    finds no proof among what the run recorded, whatever the snapshot says."""
    engine, _ = bot
    rid = start(bot, SAFE)
    with db.transaction(engine) as s:
        row = s.exec(select(RunbookRun).where(RunbookRun.run_id == rid)).one()
        edited = dict(row.definition)
        edited["steps"] = [dict(st) for st in edited["steps"]]
        edited["steps"][0]["when"] = "false"
        row.definition = edited
        row.digest = Runbook.model_validate(edited).digest
        s.add(row)
    run = work(engine, rid)
    assert run.status == "needs_attention"
    assert "no earlier step proves the source client stopped" in (run.error or "")
    assert fleet.double_signs == [] and "start b" not in fleet.calls


def test_a_history_older_than_the_source_stops_the_run_for_attention(bot, fleet):
    engine, _ = bot
    no_copy = key("import_b", "import", DST)  # imports nothing: B keeps its empty history
    run = work(engine, start(bot, runbook(STOP_A, no_copy, VERIFY_B, START_B)))
    assert run.status == "needs_attention"
    assert run.error == (
        "step 3 'verify_b': interlock: verify_b could not verify the slashing-protection "
        "history (b has no history for ops). The target must not start signing with a history "
        "that is missing or older than the source's: look at both clients, then resume the run "
        "(the check runs again) or cancel it"
    )
    assert "start b" not in fleet.calls

    # Resuming checks again: with the history now in place, the move completes.
    with fleet.lock:
        fleet.history["b"] = {"ops": 40}
    with db.transaction(engine) as s:
        control.resume(s, run.id, actor="carol")
    assert work(engine, run.id).status == "succeeded"
    assert fleet.signing == {"a": set(), "b": {"ops"}}


def test_a_rollback_that_restarts_the_source_first_proves_the_target_stopped(bot, fleet):
    """B starts, then fails; its rollback stops B, brings B's history to A, restarts A."""

    class Crash(Start):
        def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
            super().run(inputs, ctx)
            from incidentbot.ledger import PermanentError

            raise PermanentError("b started, then its beacon node went away")

    registry.register(type("CrashStart", (Crash,), {"name": "test.vc.crashstart"}))
    try:
        start_b = dict(key("start_b", "crashstart", DST))
        start_b["on_failure"] = [
            key("stop_b", "stop", DST),
            key("import_a", "import", SRC, source=DST),
            key("verify_a", "verify", SRC, source=DST),
            key("restart_a", "start", SRC),
        ]
        engine, _ = bot
        run = work(engine, start(bot, runbook(STOP_A, IMPORT_B, VERIFY_B, start_b)))
    finally:
        registry.unregister("test.vc.crashstart")
    assert run.status == "failed"
    assert fleet.calls == ["stop a", "import b", "start b", "stop b", "import a", "start a"]
    assert fleet.signing == {"a": {"ops"}, "b": set()}
    assert fleet.double_signs == []
