"""Alertmanager webhook ingest throughput (alerts/s), on SQLite and on a throwaway PostgreSQL.

`incidentbot serve` runs in its own process (its own GIL) against the local Slack-compatible
server, with routing rules that match every alert; its ledger workers create the incidents'
channels while the alerts keep coming, as in production. A client posts Alertmanager
notifications concurrently over HTTP, in three phases over the same alerts:

1. first notifications: every alert new, each group declares its incident;
2. repeats: the same notifications again (Alertmanager's repeat_interval, HA peers);
3. resolves: every alert resolved.

Run: .venv/bin/python bench/alert_ingest.py [--groups 50] [--per-group 20] [--concurrency 16]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.served import served_bot
from tests.pgcluster import PgCluster, PgUnavailable
from tests.test_alerts_support import alert, notification, resolved

TOKEN = "bench-alertmanager-token"
RULES = [
    {
        "name": "nodes",
        "matchers": ['alertname="NodeLagging"'],
        "severity": "SEV3",
        "service": "nodes",
        "title": "{{ labels.alertname }} in {{ labels.cluster }}",
        "runbook": {"name": "restart-node", "params": {"node": "instance"}},
    }
]


@contextmanager
def served_alert_bot(url: str, tmp: str) -> Iterator[str]:
    """`incidentbot serve` on ``url`` with the routing rules; yields the webhook URL."""
    config = Path(tmp) / "incidentbot.yaml"
    config.write_text(yaml.safe_dump({"alerts": {"rules": RULES}}))
    extra = {"INCIDENTBOT_CONFIG": str(config), "INCIDENTBOT_ALERTMANAGER_TOKEN": TOKEN}
    with served_bot(url, **extra) as (_sandbox, base):
        yield f"{base}/webhooks/alertmanager"


def phases(groups: int, per_group: int) -> list[tuple[str, list[dict]]]:
    firing, resolving = [], []
    for g in range(groups):
        alerts = [
            alert("NodeLagging", cluster=f"c{g}", instance=f"node-{g}-{i}:8545")
            for i in range(per_group)
        ]
        firing.append(notification(alerts, group=f"NodeLagging/c{g}"))
        resolving.append(notification([resolved(a) for a in alerts], group=f"NodeLagging/c{g}"))
    return [("first notifications", firing), ("repeats", firing), ("resolves", resolving)]


async def _send(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async with httpx.AsyncClient(headers=headers, timeout=120) as client:

        async def one(body: dict) -> None:
            async with limit:
                start = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started, latencies


def run(name: str, url: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, served_alert_bot(url, tmp) as webhook:
        warm = notification([alert("Warmup", instance="w")], group="Warmup")
        asyncio.run(_send(webhook, [warm], 1))
        total_alerts, total_time = 0, 0.0
        for phase, bodies in phases(args.groups, args.per_group):
            elapsed, latencies = asyncio.run(_send(webhook, bodies, args.concurrency))
            n = sum(len(b["alerts"]) for b in bodies)
            total_alerts += n
            total_time += elapsed
            ordered = sorted(latencies)
            p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
            print(
                f"{name:<11} {phase:<20} {n / elapsed:7.0f} alerts/s   "
                f"{len(bodies) / elapsed:6.1f} requests/s   p50 "
                f"{statistics.median(ordered) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"
            )
        print(f"{name:<11} {'overall':<20} {total_alerts / total_time:7.0f} alerts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--per-group", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(
        f"{args.groups} groups × {args.per_group} alerts, {args.concurrency} concurrent "
        f"requests, `incidentbot serve` in its own process, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{tmp}/bench.db", args)
    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        print(f"PostgreSQL skipped: {exc}")
        return
    cluster.start()
    try:
        cluster.execute("CREATE DATABASE bench")
        run("PostgreSQL", cluster.url("bench"), args)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
