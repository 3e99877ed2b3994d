"""Ledger overhead per step: a 100-step run of no-op actions on SQLite and on PostgreSQL.

Prints, for each back end, the time per step spent by the ledger (marking the step started,
recording its result, claiming, fencing) next to the time the no-op action itself takes. Uses a
temporary SQLite file and a throwaway PostgreSQL cluster (tests/pgcluster.py). No assertions.

    .venv/bin/python bench/ledger_overhead.py [--steps 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import drive, each_backend
from incidentbot import db, ledger
from incidentbot.ledger.actions import StepContext


def one_run(engine, steps: int, key: str) -> float:
    """Seconds to drive one run of ``steps`` no-op steps, start to end, in one worker."""
    with db.transaction(engine) as s:
        rid = ledger.start_run(
            s, kind="bench", key=key, actor="bench", target=f"bench-{key}",
            steps=[{"name": f"noop {i}", "action": "ledger.noop", "input": {"i": i}}
                   for i in range(steps)],
        ).id  # fmt: skip
    return drive(engine, rid)


def action_cost(steps: int) -> float:
    """Seconds the no-op action itself takes per call (the baseline to subtract)."""
    info = ledger.registry.get("ledger.noop")
    assert info is not None
    ctx = StepContext(1, "bench", 0, "noop", 1, None, None)
    began = time.perf_counter()
    for i in range(steps):
        info.fn(ctx, {"i": i})
    return (time.perf_counter() - began) / steps


def measure(name: str, url: str, steps: int, repeat: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    one_run(engine, 5, f"{name}-warmup")
    per_step = [one_run(engine, steps, f"{name}-{i}") / steps for i in range(repeat)]
    engine.dispose()
    base = action_cost(steps)
    best, median = min(per_step), statistics.median(per_step)
    print(
        f"{name:<11} {steps}-step no-op run: ledger overhead per step "
        f"{(median - base) * 1000:6.2f} ms median, {(best - base) * 1000:6.2f} ms best "
        f"(of {repeat} runs; the action itself: {base * 1e6:.1f} µs)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    each_backend(lambda name, url: measure(name, url, args.steps, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
