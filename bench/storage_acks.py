"""Ack latency in a burst, against a trivial endpoint given the same requests.

Ack p99 of 50 signed ``/incident declare`` sent at once, and of 50 mixed commands (declare,
list, note, timeline, summary in an incident channel), to ``incidentbot serve`` in its own
process, each burst while an alert storm arrives at the same moment (20 Alertmanager
notifications of 10 alerts, 8 senders), against the p99 of a trivial Starlette endpoint
(uvicorn, its own process) given the same 50 requests at once. SQLite, PostgreSQL with fsync on,
and PostgreSQL with group commit turned on. Each round starts from a fresh database; every ack
must be a 200, and every declare, note and alert must be stored (counted).

Run: bench/run storage_acks
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from bench.backends import count, fresh_databases
from bench.figures import BenchArgs, BenchFailed, Figure, median, pct
from bench.served import free_port, served_bot
from incidentbot import db
from tests.test_alerts_support import alert, notification

BURST = 50
STORM = (20, 10, 8)  # notifications, alerts in each, senders at once
TOKEN = "bench-alertmanager-token"
ACK_TARGET = 2.0  # × the trivial endpoint's p99
SLACK_WAITS_S = 3.0

TRIVIAL_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request):
        await request.body()
        return PlainTextResponse("")

    app = Starlette(routes=[Route("/slack/events", ok, methods=["POST"]),
                            Route("/healthz", ok)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


@contextmanager
def trivial_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", TRIVIAL_APP, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchFailed("the trivial endpoint did not come up")
            time.sleep(0.05)
        yield f"{url}/slack/events"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def _storm(webhook: str, round_: str) -> None:
    """The alert storm: STORM notifications, a few senders at a time, all answered 200."""
    notes, per, senders = STORM
    limit = asyncio.Semaphore(senders)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:

        async def one(n: int) -> None:
            body = notification(
                [
                    alert("NodeLagging", cluster=f"{round_}-{n}", instance=f"n{i}")
                    for i in range(per)
                ],
                group=f"NodeLagging/{round_}-{n}",
            )
            async with limit:
                resp = await client.post(webhook, json=body)
            if resp.status_code != 200:
                raise BenchFailed(f"the alert storm got {resp.status_code}: {resp.text[:200]}")

        await asyncio.gather(*(one(n) for n in range(notes)))


async def _send_all(  # type: ignore[no-untyped-def]
    sandbox, requests, url: str | None = None, storm: str | None = None, round_: str = ""
) -> list[float]:
    """Send ``requests`` at once (to ``url`` instead of the bot's when given), with the alert
    storm at the same moment to the ``storm`` webhook when given; ack seconds."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=len(requests))) as client:
        if url is None:
            sends = [sandbox.driver.send_async(r, client) for r in requests]
            if storm is not None:
                sends.append(_storm(storm, round_))
            acks = (await asyncio.gather(*sends))[: len(requests)]
            bad = [a for a in acks if a.status != 200]
            if bad:
                raise BenchFailed(
                    f"{len(bad)} of {len(acks)} not acked with 200: {bad[0].status} "
                    f"{getattr(bad[0], 'error', '')}"
                )
            return [a.elapsed_s for a in acks]

        async def post(req) -> float:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            resp = await client.post(url, content=req.body, headers=req.headers)
            if resp.status_code != 200:
                raise BenchFailed(f"trivial endpoint answered {resp.status_code}")
            return time.perf_counter() - t0

        return list(await asyncio.gather(*(post(r) for r in requests)))


def _wait_for_channel(url: str) -> str:
    engine = db.make_engine(url, pool_size=1)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                name = conn.execute(
                    sa.text("SELECT channel_name FROM incident WHERE number = 1")
                ).scalar()
            if name:
                return str(name)
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise BenchFailed("INC-1's channel was never created")


def _mixed(driver, channel: str, round_: int) -> tuple[list, int, int]:  # type: ignore[no-untyped-def]
    """50 commands: (requests, declares among them, notes among them)."""
    plan = ["declare"] * 10 + ["list"] * 10 + ["note"] * 15 + ["timeline"] * 10 + ["summary"] * 5
    reqs = []
    for i, what in enumerate(plan):
        if what == "declare":
            reqs.append(driver.slash_command_request(f"declare sev3 mixed {round_}-{i}"))
        elif what == "list":
            reqs.append(driver.slash_command_request("list"))
        elif what == "note":
            reqs.append(driver.slash_command_request(f"note finding {i}", channel=channel))
        else:
            reqs.append(driver.slash_command_request(what, channel=channel))
    order = list(range(len(reqs)))
    order = order[::2] + order[1::2]  # interleave kinds
    return [reqs[i] for i in order], plan.count("declare"), plan.count("note")


def ack_bursts(fresh, rounds: int, tmp: str) -> list[Figure]:  # type: ignore[no-untyped-def]
    figures: list[Figure] = []
    config = Path(tmp) / "incidentbot.yaml"
    config.write_text(yaml.safe_dump({"alerts": {"rules": []}}))
    env = {"INCIDENTBOT_CONFIG": str(config), "INCIDENTBOT_ALERTMANAGER_TOKEN": TOKEN}
    runs = [(b, {}) for b in fresh.backends]
    if "postgresql" in fresh.backends:
        runs.append(("postgresql", {"INCIDENTBOT_GROUP_COMMIT": "true"}))
    for backend, more in runs:
        declare_p99: list[float] = []
        mixed_p99: list[float] = []
        late = {"declare": 0, "mixed": 0}
        trivial_p99: list[float] = []
        label = ""
        for r in range(rounds):
            label, url = fresh(backend)
            if more:
                label += ", group commit"
            with served_bot(url, **env, **more) as (sandbox, base), trivial_endpoint() as trivial:
                webhook = f"{base}/webhooks/alertmanager"
                driver = sandbox.driver
                driver.ack_timeout = 60.0  # measure late acks too (Slack gives up at 3 s)
                warm = [driver.slash_command_request("list") for _ in range(4)]
                asyncio.run(_send_all(sandbox, warm))
                if driver.slash_command("declare sev3 warm-up").status != 200:
                    raise BenchFailed("the warm-up declare was not acked")
                channel = _wait_for_channel(url)
                declares = [
                    driver.slash_command_request(f"declare sev3 burst {r}-{i}")
                    for i in range(BURST)
                ]
                trivial_p99.append(pct(asyncio.run(_send_all(sandbox, declares, trivial)), 0.99))
                acks = asyncio.run(_send_all(sandbox, declares, storm=webhook, round_=f"d{r}"))
                late["declare"] += sum(a > SLACK_WAITS_S for a in acks)
                declare_p99.append(pct(acks, 0.99))
                stored = count(url, "SELECT count(*) FROM incident")
                if stored != BURST + 1:
                    raise BenchFailed(f"{label}: {stored - 1} of {BURST} declares stored")
                notes_before = count(url, "SELECT count(*) FROM timeline_event WHERE kind='note'")
                mixed, n_declares, n_notes = _mixed(driver, channel, r)
                acks = asyncio.run(_send_all(sandbox, mixed, storm=webhook, round_=f"m{r}"))
                late["mixed"] += sum(a > SLACK_WAITS_S for a in acks)
                mixed_p99.append(pct(acks, 0.99))
                stored = count(url, "SELECT count(*) FROM incident")
                notes = count(url, "SELECT count(*) FROM timeline_event WHERE kind='note'")
                if stored != BURST + 1 + n_declares or notes - notes_before != n_notes:
                    raise BenchFailed(f"{label}: mixed burst not all stored")
                if count(url, "SELECT count(*) FROM alert") != STORM[0] * STORM[1] * 2:
                    raise BenchFailed(f"{label}: the alert storms were not all stored")
        base = median(trivial_p99) * 1000
        for what, p99s in (("declare", declare_p99), ("mixed", mixed_p99)):
            figures.append(
                Figure(
                    f"ack p99, {BURST} concurrent {what} commands, {label}",
                    median(p99s) * 1000,
                    base,
                    target=ACK_TARGET,
                    baseline_name="trivial Starlette p99",
                    note=(
                        f"median of {rounds} rounds, worst {max(p99s) * 1000:.0f} ms; "
                        f"{late[what]} of {BURST * rounds} acks over 3 s; "
                        f"{STORM[0] * STORM[1]} alerts arriving at once"
                    ),
                )
            )
    return figures


def figures(args: BenchArgs) -> list[Figure]:
    with fresh_databases() as fresh, tempfile.TemporaryDirectory() as tmp:
        return ack_bursts(fresh, 1 if args.quick else args.rounds, tmp)
