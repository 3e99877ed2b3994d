"""How long the schedule stops when the scheduler's leader dies, on PostgreSQL.

Starts two ``incidentbot scheduler`` processes (the production default: standbys try to lead
every ``scheduler.retry`` = 1 s) running a job every second, then ``--kills`` times: SIGKILLs
the leader, measures the time until the other process has run a slot, and starts a new
standby in place of the dead one. Prints each takeover, the median and the worst, and how
many slots fired more than once (none should) or were skipped. No assertions.

    .venv/bin/python bench/scheduler_takeover.py [--kills 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.scheduler.builtin import builtin_jobs
from tests.ledger_harness import REPO, EffectServer
from tests.pgcluster import PgCluster, PgUnavailable


def start(url: str, config: Path, effect_url: str, name: str, tmp: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
    env.update(INCIDENTBOT_DATABASE_URL=url, INCIDENTBOT_CONFIG=str(config),
               SCHEDULER_HARNESS_URL=effect_url, PYTHONPATH=str(REPO))  # fmt: skip
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from incidentbot.cli import main; sys.exit(main())",
         "scheduler", "--import", "tests.scheduler_harness", "--name", name],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        print(f"PostgreSQL  skipped: {exc}")
        return 0
    cluster.start()
    server = EffectServer().start()
    procs: dict[str, subprocess.Popen] = {}
    try:
        cluster.execute("CREATE DATABASE bench")
        url = cluster.url("bench")
        engine = db.make_engine(url)
        db.upgrade(engine)
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            config = tmp / "incidentbot.yaml"
            off = [{"name": n, "enabled": False} for n in builtin_jobs(Settings(), None)]
            config.write_text(yaml.safe_dump({"scheduler": {
                "jobs": [{"name": "harness.effect", "every": 1, "grace": 30}, *off]}}))  # fmt: skip

            def leader_since(since: float) -> str | None:
                with engine.connect() as conn:
                    return conn.execute(text(
                        "SELECT claimed_by FROM scheduler_run WHERE outcome = 'ok' AND "
                        "extract(epoch FROM started_at) > :t ORDER BY slot DESC LIMIT 1"
                    ), {"t": since}).scalar()  # fmt: skip

            for n in range(2):
                procs[f"s{n}"] = start(url, config, server.url, f"s{n}", tmp)
            takeovers = []
            count = 2
            for _ in range(args.kills):
                time.sleep(3)  # a few slots in the steady state first
                while (leader := leader_since(time.time() - 1.5)) is None:
                    time.sleep(0.05)
                killed_at = time.time()
                procs.pop(leader).send_signal(signal.SIGKILL)
                while (now_leader := leader_since(killed_at)) in (None, leader):
                    time.sleep(0.02)
                takeovers.append(time.time() - killed_at)
                print(f"  killed {leader}; {now_leader} ran the next slot after "
                      f"{takeovers[-1]:.2f} s")  # fmt: skip
                procs[f"s{count}"] = start(url, config, server.url, f"s{count}", tmp)
                count += 1
            with engine.connect() as conn:
                twice = conn.execute(text(
                    "SELECT count(*) FROM (SELECT slot FROM scheduler_run "
                    "GROUP BY job, slot HAVING count(*) > 1) AS d")).scalar_one()  # fmt: skip
                skipped = conn.execute(
                    text("SELECT count(*) FROM scheduler_run WHERE outcome = 'skipped'")
                ).scalar_one()
                ok = conn.execute(
                    text("SELECT count(*) FROM scheduler_run WHERE outcome = 'ok'")
                ).scalar_one()
            engine.dispose()
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        server.stop()
        cluster.stop()
    print(
        f"PostgreSQL  {len(takeovers)} leader kills, a job every second, standbys retry "
        f"every 1 s: takeover median {statistics.median(takeovers):.2f} s, worst "
        f"{max(takeovers):.2f} s; {ok} slots ran, {twice} more than once, {skipped} skipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
