"""Ledger cost per step: a run of no-op steps driven by one worker, on SQLite and PostgreSQL,
against a bare write transaction (one ``UPDATE`` of one row, committed) in the same database
and the same run.

A step is marked started (committed) before its action and finished with its result; between
two steps of idempotent no-ops the finish and the next start are one commit, so the floor is
as many bare write transactions as a step makes commits (counted); the target is the step at
most 2 ms over one. Also counts what a step costs in statements and commits on both back ends
and in Python calls on SQLite (one counted run driven by one worker; the calls are those of the
worker's thread). Every run is checked to have succeeded, every step to have run once.

A run of one step (what most of a declare's and an alert's effects are) also pays its claim:
the same worker drains a batch of one-step no-op runs without a target, started in one
transaction; the time per run is compared with one bare write transaction, and with as many of
them as a run makes commits (counted, with its statements). Each batch starts from the same
state: its runs pending, every earlier run ended.

    bench/run ledger_overhead            # in the table of every benchmark
    python bench/ledger_overhead.py [--steps 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from bench.backends import drive
from bench.figures import BenchArgs, BenchFailed, Figure
from incidentbot import db, ledger
from incidentbot.ledger.models import STEP_SUCCEEDED

OVER_BARE_MS = 2.0  # the target: a step at most this much over one bare write transaction


def databases() -> Iterator[tuple[str, str]]:
    """(label, URL) of a temporary SQLite file, then of a throwaway PostgreSQL cluster when its
    binaries are installed (durable settings when tests/pgcluster.py offers them)."""
    from tests.pgcluster import PgCluster, PgUnavailable

    with tempfile.TemporaryDirectory() as tmp:
        yield "SQLite", f"sqlite:///{tmp}/bench.db"
    try:
        try:
            cluster = PgCluster(durable=True)  # type: ignore[call-arg]
            label = "PostgreSQL (fsync on)"
        except TypeError:
            cluster = PgCluster()
            label = "PostgreSQL (fsync off)"
    except PgUnavailable as exc:
        print(f"   PostgreSQL skipped: {exc}")
        return
    try:
        cluster.start()
        cluster.execute("CREATE DATABASE bench")
        yield label, cluster.url("bench")
    finally:
        cluster.stop()


def start(engine: Engine, steps: int, key: str) -> int:
    """A run of ``steps`` no-op steps, started (not yet driven)."""
    with db.transaction(engine) as s:
        rid = ledger.start_run(
            s, kind="bench", key=key, actor="bench", target=f"bench-{key}",
            steps=[{"name": f"noop {i}", "action": "ledger.noop", "input": {"i": i}}
                   for i in range(steps)],
        ).id  # fmt: skip
    assert rid is not None
    return rid


def check(engine: Engine, rid: int) -> None:
    """Every step of run ``rid`` succeeded, each at its first attempt."""
    with db.transaction(engine) as s:
        done = ledger.get_steps(s, rid)
    if any(st.status != STEP_SUCCEEDED or st.attempts != 1 for st in done):
        raise BenchFailed(f"run {rid}: not every step ran exactly once")


def one_run(engine: Engine, steps: int, key: str) -> float:
    """Seconds to drive one run of ``steps`` no-op steps, start to end, in one worker; checks
    that every step ran exactly once."""
    rid = start(engine, steps, key)
    elapsed = drive(engine, rid)
    check(engine, rid)
    return elapsed


def bare_write(engine: Engine, n: int) -> float:
    """Seconds per bare write transaction through the same session machinery."""
    with db.transaction(engine) as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS bench_bare (id INTEGER PRIMARY KEY, v INT)"))
        s.execute(text("DELETE FROM bench_bare"))
        s.execute(text("INSERT INTO bench_bare (id, v) VALUES (1, 0)"))
    began = time.perf_counter()
    for _ in range(n):
        with db.transaction(engine) as s:
            s.execute(text("UPDATE bench_bare SET v = v + 1 WHERE id = 1"))
    return (time.perf_counter() - began) / n


def step_cost(engine: Engine, steps: int, profiled: bool) -> tuple[float, float, float | None]:
    """(statements, commits, Python calls or None) per step of one counted run, driving it
    only (the run's start, its insert of every step, is not counted)."""
    statements = commits = 0

    def count(*_a: object) -> None:
        nonlocal statements
        statements += 1

    def committed(*_a: object) -> None:
        nonlocal commits
        commits += 1

    rid = start(engine, steps, "counted")
    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", committed)
    profile = cProfile.Profile() if profiled else None
    if profile is not None:
        profile.enable()
    try:
        drive(engine, rid)
    finally:
        if profile is not None:
            profile.disable()
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", committed)
    check(engine, rid)
    calls = None
    if profile is not None:
        calls = pstats.Stats(profile).total_calls / steps  # type: ignore[attr-defined]
    return statements / steps, commits / steps, calls


def start_batch(engine: Engine, runs: int, key: str) -> list[int]:
    """``runs`` one-step no-op runs without a target, started in one transaction."""
    with db.transaction(engine) as s:
        ids = [
            ledger.start_run(s, kind="bench", key=f"{key}-{i}", actor="bench",
                             steps=[{"name": "noop", "action": "ledger.noop"}]).id
            for i in range(runs)
        ]  # fmt: skip
    assert all(rid is not None for rid in ids)
    return [rid for rid in ids if rid is not None]


def drain(engine: Engine, ids: list[int]) -> float:
    """Seconds one worker takes to claim and drive each of ``ids`` (see :func:`checked`)."""
    worker = ledger.Worker(engine, name="bench", lease=30)
    try:
        began = time.perf_counter()
        for _ in ids:
            if not worker.run_once():
                raise BenchFailed("a one-step run was not due")
        return time.perf_counter() - began
    finally:
        worker.close()


def checked(engine: Engine, ids: list[int], elapsed: float) -> float:
    """``elapsed``, once each of ``ids`` is checked to have run its step once."""
    for rid in ids:
        check(engine, rid)
    return elapsed


def run_cost(engine: Engine, runs: int) -> tuple[float, float]:
    """(statements, commits) per one-step run of one counted batch, driving it only."""
    seen = {"statements": 0, "commits": 0}

    def count(*_a: object) -> None:
        seen["statements"] += 1

    def committed(*_a: object) -> None:
        seen["commits"] += 1

    ids = start_batch(engine, runs, "counted")
    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", committed)
    try:
        elapsed = drain(engine, ids)
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", committed)
    checked(engine, ids, elapsed)
    return seen["statements"] / runs, seen["commits"] / runs


def measure_runs(engine: Engine, label: str, runs: int, rounds: int) -> list[Figure]:
    warm = start_batch(engine, 5, "warm-up")
    checked(engine, warm, drain(engine, warm))
    bare, per_run = [], []
    for i in range(rounds):  # interleaved, so that the machine's load hits both alike
        bare.append(bare_write(engine, runs))
        ids = start_batch(engine, runs, f"b{i}")
        per_run.append(checked(engine, ids, drain(engine, ids)) / runs)
    statements, commits = run_cost(engine, runs)
    bare_ms, run_ms = statistics.median(bare) * 1000, statistics.median(per_run) * 1000
    floor = round(commits, 2)
    return [
        Figure(
            f"{label}: one-step run, claimed to ended ({runs} runs, median of {rounds})",
            run_ms,
            bare_ms,
            baseline_name="one bare write transaction",
            note=f"{statements:.1f} statements, {commits:.2f} commits per run",
        ),
        Figure(
            f"{label}: one-step run against its floor",
            run_ms,
            floor * bare_ms,
            baseline_name=f"{floor:g} bare write transactions (its commits)",
        ),
    ]


def measure(label: str, url: str, steps: int, rounds: int) -> list[Figure]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    try:
        one_run(engine, 5, "warm-up")
        bare_write(engine, 20)
        bare, step = [], []
        for i in range(rounds):  # interleaved, so that the machine's load hits both alike
            bare.append(bare_write(engine, steps))
            step.append(one_run(engine, steps, f"r{i}") / steps)
        statements, commits, calls = step_cost(engine, steps, profiled=label == "SQLite")
        by_run = measure_runs(engine, label, steps, rounds)
    finally:
        engine.dispose()
    bare_ms, step_ms = statistics.median(bare) * 1000, statistics.median(step) * 1000
    per_step = f"; {statements:.1f} statements, {commits:.2f} commits"
    per_step += "" if calls is None else f", {calls:,.0f} Python calls"
    floor = round(commits, 2)
    figures = [
        Figure(
            f"{label}: ledger step ({steps}-step no-op run, median of {rounds})",
            step_ms,
            bare_ms,
            over=OVER_BARE_MS,
            baseline_name="one bare write transaction",
            note=f"{step_ms - bare_ms:.2f} ms over{per_step} per step",
        ),
        Figure(
            f"{label}: ledger step against its floor",
            step_ms,
            floor * bare_ms,
            baseline_name=f"{floor:g} bare write transactions (its commits)",
        ),
    ]
    return figures + by_run


def figures(args: BenchArgs) -> list[Figure]:
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
    for label, url in databases():
        for f in measure(label, url, args.steps, args.rounds):
            print(
                f"{f.name}: {f.value:.2f} ms, {f.baseline:.2f} ms {f.baseline_name}, "
                f"{f.ratio:.2f}x {f.note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
