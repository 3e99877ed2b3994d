"""Slack ack latency against the local Slack-compatible server.

50 signed /incident slash commands sent at once (half `declare`, half `list`): the time until
the bot acknowledges each one (p50, p99, max). Slack allows 3 s. (The declare's critical path
and its Slack calls are measured by bench/declare_fanout.py.)

Run: .venv/bin/python bench/slack_declare.py. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.served import served_bot


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _burst(sandbox, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    requests = [
        sandbox.driver.slash_command_request(
            f"declare sev3 node {i} lagging" if i % 2 == 0 else "list", user="alice"
        )
        for i in range(n)
    ]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n)) as client:
        acks = await asyncio.gather(*(sandbox.driver.send_async(r, client) for r in requests))
    bad = [a for a in acks if a.status != 200]
    if bad:
        print(f"  {len(bad)} of {n} not acknowledged with 200: {bad[0].status} {bad[0].error}")
    return [a.elapsed_s for a in acks]


def ack_latency(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, served_bot(f"sqlite:///{tmp}/b.db") as (sandbox, _):
        asyncio.run(_burst(sandbox, 4))  # warm up connections and code paths
        times = asyncio.run(_burst(sandbox, n))
    ms = [t * 1000 for t in times]
    print(f"ack latency, {n} concurrent slash commands to `incidentbot serve` (SQLite):")
    print(
        f"  p50 {statistics.median(ms):.1f} ms   p99 {_pct(ms, 0.99):.1f} ms   max {max(ms):.1f} ms"
    )
    single = []
    with tempfile.TemporaryDirectory() as tmp, served_bot(f"sqlite:///{tmp}/b.db") as (sandbox, _):
        for i in range(20):
            single.append(sandbox.driver.slash_command(f"declare node {i} lagging").elapsed_s)
    ms = [t * 1000 for t in single]
    print(f"ack latency, 20 declares one after another: p50 {statistics.median(ms):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    ack_latency(args.concurrent)


if __name__ == "__main__":
    main()
