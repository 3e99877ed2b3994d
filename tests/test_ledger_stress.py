"""200 runs over 20 targets, started from several threads and a second process, executed by
several workers: the target locks never overlap, no run is lost and none runs twice."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections import defaultdict

from sqlalchemy import func
from sqlmodel import select

from incidentbot import db, ledger
from incidentbot.ledger.models import Run
from tests.conftest import count
from tests.ledger_harness import REPO, EffectServer, WorkerProcess, start_all, wait_until

RUNS = 200
TARGETS = 20
STARTERS = 4  # three threads here, one separate process


def test_two_hundred_runs_over_twenty_targets(engine, database_url, tmp_path):
    server = EffectServer().start()
    items = [(f"stress-{i:03d}", f"node-{i % TARGETS:02d}") for i in range(RUNS)]
    shares = [items[k::STARTERS] for k in range(STARTERS)]
    postgres = engine.dialect.name == "postgresql"
    # SQLite: one process, several worker threads. PostgreSQL: a second worker process too.
    pool = ledger.WorkerPool(engine, threads=2 if postgres else 4, lease=10, poll=0.1).start()
    other = None
    if postgres:
        other = WorkerProcess(database_url, tmp_path / "worker.log", name="other", lease=10,
                              threads=2)  # fmt: skip
    starter = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_harness", "start", "--url", database_url,
         "--server", server.url, "--items", json.dumps(shares[-1])],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    refusals: list[int] = []
    threads = [
        threading.Thread(
            target=lambda share=share: refusals.append(start_all(engine, share, server.url))
        )
        for share in shares[:-1]
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err
        from_process = json.loads(out)
        assert from_process["started"] == len(shares[-1])

        def all_done() -> bool:
            with db.transaction(engine) as s:
                statuses = dict(s.exec(select(Run.status, func.count()).group_by(Run.status)).all())
            unexpected = set(statuses) - {"pending", "running", "succeeded"}
            assert not unexpected, f"unexpected run statuses: {statuses}"
            return statuses.get("succeeded") == RUNS

        wait_until(all_done, "all runs to succeed", timeout=120, interval=0.2)
    finally:
        pool.stop(timeout=10)
        if other is not None:
            other.kill()
        server.stop()

    with db.transaction(engine) as s:
        runs = list(s.exec(select(Run)))
        steps = {r.id: ledger.get_steps(s, r.id) for r in runs}
    # No run lost, none duplicated, none run twice.
    assert sorted(r.idempotency_key for r in runs) == [key for key, _ in items]
    assert all(r.takeovers == 0 for r in runs)
    assert all([st.attempts for st in steps[r.id]] == [1] for r in runs)
    assert server.requests() == {key: 1 for key, _ in items}
    # The lock held by each run covers its whole execution, and on one target never overlaps.
    by_target: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        assert run.lock_acquired_at <= run.started_at <= run.finished_at == run.lock_released_at
        by_target[run.target].append(run)
    assert len(by_target) == TARGETS
    for target, held in by_target.items():
        held.sort(key=lambda r: r.lock_acquired_at)
        for before, after in itertools.pairwise(held):
            assert after.lock_acquired_at >= before.lock_released_at, (
                f"{target}: run {after.id} took the lock before run {before.id} released it"
            )
    assert count(engine, "ledger_lock") == 0
    # The starters really did contend for the locks.
    assert sum(refusals) + from_process["refusals"] > 0
    if postgres:
        owners = {r.owner.split("/")[0] for r in runs}
        assert len(owners) == 2, f"both worker processes should have taken runs: {owners}"
