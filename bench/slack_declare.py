"""Slack ack latency and the declare critical path, against the local Slack-compatible server.

1. 50 signed /incident slash commands sent at once (half `declare`, half `list`): the time
   until the bot acknowledges each one (p50, p99, max). Slack allows 3 s.
2. One declare with a fixed latency injected into every Slack Web API call: the time from the
   acknowledgement until the channel exists, responders are invited, the header is posted and
   pinned and the digest announcement is out, as a multiple of the per-call latency. Done one
   call after another, that is 11 calls; calls that do not depend on each other run
   concurrently.

Run: .venv/bin/python bench/slack_declare.py [--latency 0.2]. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.served import served_bot
from incidentbot import db
from incidentbot.incidents import service as svc
from tests.slack_harness import running_bot, settled


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


def critical_path(latency: float, rounds: int) -> None:
    results = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
            db.upgrade(engine)
            with running_bot(engine) as (_bot, sandbox):
                sandbox.driver.slash_command("list", user="alice")  # warm-up
                sandbox.set_latency(latency)
                ack = sandbox.driver.slash_command(f"declare sev2 round {r}", user="alice")
                acked = time.perf_counter()
                settled(engine)
                done = time.perf_counter()
                with db.transaction(engine) as s:
                    inc = svc.get(s, "INC-1")
                    assert inc.header_ts and inc.digest_ts and inc.channel_id
                sandbox.set_latency(0)
            engine.dispose()
        results.append((done - acked) / latency)
        print(
            f"  round {r + 1}: ack {ack.elapsed_s * 1000:.0f} ms, effects done "
            f"{(done - acked) * 1000:.0f} ms = {(done - acked) / latency:.1f} × latency"
        )
    print(
        f"declare critical path with {latency * 1000:.0f} ms per Slack call: median "
        f"{statistics.median(results):.1f} × the per-call latency (11 calls in sequence "
        "would be 11 ×)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ack_latency(args.concurrent)
    critical_path(args.latency, args.rounds)


if __name__ == "__main__":
    main()
