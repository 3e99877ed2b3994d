"""Resident memory of ``incidentbot serve``: when it is ready (idle), and after 1,000
``/incident declare`` commands sent through the local Slack server (``CONCURRENCY`` at a time)
once every incident's channel is furnished (its header pinned), read from /proc. The incidents
stored and the pins made are counted before the figure is reported. SQLite, and PostgreSQL
(fsync on) when its binaries exist.

    bench/run serve_memory
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import count, fresh_databases
from bench.figures import BenchArgs, BenchFailed, Figure
from bench.served import compile_bytecode, proc_rss_mib, serving
from incidentbot.sandbox.slack.server import SlackSandbox

DECLARES = 1000
CONCURRENCY = 10
LIMIT_MIB = 120.0


async def _declares(sandbox: SlackSandbox, first: int, n: int) -> None:
    requests = [
        sandbox.driver.slash_command_request(f"declare sev3 RPC node {i} lagging", user="alice")
        for i in range(first, first + n)
    ]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n)) as client:
        acks = await asyncio.gather(*(sandbox.driver.send_async(r, client) for r in requests))
    bad = [a for a in acks if a.status != 200]
    if bad:
        raise BenchFailed(f"{len(bad)} of {n} declares not acknowledged: {bad[0].status}")


def _furnished(sandbox: SlackSandbox, total: int, limit: float) -> None:
    began = time.monotonic()
    while len(sandbox.requests("pins.add")) < total:
        if time.monotonic() - began > limit:
            done = len(sandbox.requests("pins.add"))
            raise BenchFailed(f"{done} of {total} channels furnished after {limit:.0f} s")
        time.sleep(0.5)


def measure(sandbox: SlackSandbox, url: str, declares: int) -> tuple[float, float]:
    """(idle RSS MiB when ready, RSS MiB after ``declares`` declares were carried out)."""
    sandbox.reset()
    with serving(sandbox, url) as (proc, _base, _ready):
        idle = proc_rss_mib(proc.pid)
        for first in range(0, declares, CONCURRENCY):
            asyncio.run(_declares(sandbox, first, min(CONCURRENCY, declares - first)))
        _furnished(sandbox, declares, limit=max(600.0, declares * 2.0))
        after = proc_rss_mib(proc.pid)
    stored = count(url, "SELECT count(*) FROM incident")
    if stored != declares:
        raise BenchFailed(f"{stored} incidents stored for {declares} declares")
    return idle, after


def figures(args: BenchArgs) -> list[Figure]:
    declares = 100 if args.quick else DECLARES
    compile_bytecode()
    out: list[Figure] = []
    # Memory is measured here, not speed: a loaded machine must not turn slow acks into
    # Slack's retries (the count of incidents stored is checked instead).
    sandbox = SlackSandbox(ack_timeout=60).start()
    try:
        with fresh_databases() as fresh:
            for backend in fresh.backends:  # type: ignore[attr-defined]
                label, url = fresh(backend)
                idle, after = measure(sandbox, url, declares)
                out.append(
                    Figure(
                        f"serve RSS after {declares:,} declares (channels furnished), {label} — "
                        f"idle when ready {idle:.0f} MiB, grew {after - idle:.0f} MiB",
                        after,
                        LIMIT_MIB,
                        unit="MiB",
                        target=1.0,
                        baseline_name="the limit",
                    )
                )
    finally:
        sandbox.stop()
    return out


if __name__ == "__main__":
    for f in figures(BenchArgs()):
        print(f"{f.name}: {f.value:.1f} MiB ({f.ratio:.2f}x {f.baseline_name})")
