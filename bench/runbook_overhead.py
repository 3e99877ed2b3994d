"""Runbook engine cost per step: a runbook of no-op steps against a bare ledger run of as many
no-op steps, in the same database and the same run, on SQLite and PostgreSQL.

A runbook step is a ledger step plus what the engine does: read the run's definition, params
and earlier outputs, evaluate ``with:``, validate the inputs, mask the outputs, write the step
to the incident's timeline. The target is the runbook step at most 2 ms over the ledger step.
Every run is checked to have succeeded and every runbook step to be on the timeline.

    bench/run runbook_overhead
    python bench/runbook_overhead.py [--steps 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import select

from bench.backends import drive
from bench.figures import BenchArgs, BenchFailed, Figure
from bench.ledger_overhead import databases
from bench.ledger_overhead import one_run as ledger_run
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from incidentbot.incidents.models import TimelineEvent
from incidentbot.runbooks import engine, planning, runtime
from incidentbot.runbooks.actions import Action, registry
from incidentbot.runbooks.loader import load_text


class NoopInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    i: int
    node: str


class Noop(Action):
    name: ClassVar[str] = "bench.noop"
    description: ClassVar[str] = "does nothing"
    idempotent: ClassVar[bool] = True
    Inputs: ClassVar[type[BaseModel]] = NoopInputs

    def plan(self, inputs: Any, ctx: Any) -> str:
        return "nothing"

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        return {"i": inputs.i}


def runbook_text(steps: int) -> str:
    lines = [
        "name: bench",
        "params:",
        "  node: {type: string, default: rpc-1}",
        "target: node",
        "steps:",
    ]
    for i in range(steps):
        lines += [
            f"  - id: s{i}",
            "    uses: bench.noop",
            f"    with: {{i: {i}, node: '{{{{ params.node }}}}'}}",
        ]
    return "\n".join(lines) + "\n"


def one_runbook(eng, settings: Settings, runbook: Any, incident: Any, key: str) -> float:
    plan = planning.plan(runbook, {"node": key})
    with db.transaction(eng) as s:
        row = engine.start(
            s, settings, plan, key=key, requester="bench", incident=incident, source="cli"
        )
        rid = row.run_id
    return drive(eng, rid)


OVER_LEDGER_MS = 2.0


def measure(label: str, url: str, steps: int, rounds: int) -> list[Figure]:
    eng = db.make_engine(url)
    db.upgrade(eng)
    settings = Settings()
    runtime.install(eng, settings)  # the runbook actions and the timeline hook
    runbook = load_text(runbook_text(steps), "bench.yaml", registry)
    with db.transaction(eng) as s:
        incident = svc.declare(s, settings, title="bench", severity="SEV3", actor="bench")
    try:
        one_runbook(eng, settings, load_text(runbook_text(5), "w.yaml", registry), incident, "w")
        ledger_run(eng, 5, "ledger-warm")
        rb, bare = [], []
        for i in range(rounds):  # interleaved, so that the machine's load hits both alike
            rb.append(one_runbook(eng, settings, runbook, incident, f"r{i}") / steps)
            bare.append(ledger_run(eng, steps, f"l{i}") / steps)
        with db.transaction(eng) as s:
            on_timeline = s.exec(
                select(func.count())
                .select_from(TimelineEvent)
                .where(
                    TimelineEvent.incident_id == incident.id,
                    TimelineEvent.kind == "runbook.step_succeeded",
                )
            ).one()
    finally:
        eng.dispose()
    expected = steps * rounds + 5
    if on_timeline != expected:
        raise BenchFailed(f"{on_timeline} runbook steps on the timeline, expected {expected}")
    rb_ms, bare_ms = statistics.median(rb) * 1000, statistics.median(bare) * 1000
    return [
        Figure(
            f"{label}: runbook step ({steps}-step no-op runbook, median of {rounds})",
            rb_ms,
            bare_ms,
            over=OVER_LEDGER_MS,
            baseline_name="a ledger step",
            note=f"{rb_ms - bare_ms:.2f} ms over",
        )
    ]


def figures(args: BenchArgs) -> list[Figure]:
    registry.register(Noop, replace=True)
    steps = 20 if args.quick else 100
    out: list[Figure] = []
    for label, url in databases():
        out += measure(label, url, steps, args.rounds)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    registry.register(Noop, replace=True)
    for label, url in databases():
        for f in measure(label, url, args.steps, args.rounds):
            print(f"{f.name}: {f.value:.2f} ms, {f.baseline:.2f} ms {f.baseline_name}, {f.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
