"""Runbook engine overhead per step: a 100-step runbook of no-op actions, SQLite and PostgreSQL.

For each back end, prints the time per step of the runbook run (the ledger's two commits, the
runbook step reading the run's definition, params and earlier outputs, rendering ``with:``,
validating inputs, masking outputs, writing the step to the timeline) beside a bare ledger run
of the same number of no-op steps, and the difference: what the runbook engine adds. Uses a
temporary SQLite file and a throwaway PostgreSQL cluster (tests/pgcluster.py). No assertions.

    .venv/bin/python bench/runbook_overhead.py [--steps 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, ConfigDict

from bench.backends import drive, each_backend
from bench.ledger_overhead import one_run as ledger_run
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
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


def measure(name: str, url: str, steps: int, repeat: int) -> None:
    eng = db.make_engine(url)
    db.upgrade(eng)
    settings = Settings()
    runtime.install(eng, settings)  # the runbook actions and the timeline hook, as the bot
    runbook = load_text(runbook_text(steps), "bench.yaml", registry)
    with db.transaction(eng) as s:
        incident = svc.declare(s, settings, title="bench", severity="SEV3", actor="bench")
    try:
        one_runbook(eng, settings, load_text(runbook_text(5), "w.yaml", registry), incident, "w")
        ledger_run(eng, 5, f"{name}-warm")
        rb = [one_runbook(eng, settings, runbook, incident, f"r{i}") / steps for i in range(repeat)]
        bare = [ledger_run(eng, steps, f"{name}-{i}") / steps for i in range(repeat)]
    finally:
        eng.dispose()
    rb_ms, bare_ms = statistics.median(rb) * 1000, statistics.median(bare) * 1000
    print(
        f"{name:<11} {steps}-step no-op runbook: {rb_ms:6.2f} ms per step "
        f"(best {min(rb) * 1000:.2f}); bare ledger {bare_ms:6.2f} ms; "
        f"the runbook engine adds {rb_ms - bare_ms:6.2f} ms per step (median of {repeat})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry.register(Noop, replace=True)
    each_backend(lambda name, url: measure(name, url, args.steps, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
