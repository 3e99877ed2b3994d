"""Declares per second from concurrent threads, on SQLite and on a throwaway PostgreSQL.

Run: .venv/bin/python bench/declare_throughput.py [--threads 8] [--count 400]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incidentbot import db
from incidentbot.config import Settings
from incidentbot.incidents import service as svc
from tests.pgcluster import PgCluster, PgUnavailable


def run(url: str, threads: int, total: int) -> tuple[float, list[float]]:
    engine = db.make_engine(url, pool_size=threads)
    db.upgrade(engine)
    settings = Settings()
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = total // threads

    def worker(t: int) -> None:
        for i in range(per_thread):
            start = time.perf_counter()
            with db.transaction(engine) as s:
                svc.declare(s, settings, title=f"node {t}-{i} down", severity="3", actor="bench")
            with lock:
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(latencies) / elapsed, latencies


def report(name: str, rate: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(
        f"{name:<11} {rate:8.1f} declares/s   p50 {statistics.median(ordered) * 1000:6.1f} ms"
        f"   p99 {p99 * 1000:6.1f} ms   ({len(ordered)} declares)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    print(f"declare throughput, {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        report("sqlite", *run(f"sqlite:///{tmp}/bench.db", args.threads, args.count))
    try:
        cluster = PgCluster().start()
    except PgUnavailable as exc:
        print(f"postgresql  skipped: {exc}")
        return
    try:
        cluster.execute("CREATE DATABASE bench")
        report("postgresql", *run(cluster.url("bench"), args.threads, args.count))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
