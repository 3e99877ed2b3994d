"""Alertmanager webhook ingest throughput (alerts/s), on SQLite and on a throwaway PostgreSQL.

`incidentbot serve` runs in its own process (its own GIL) against the local Slack-compatible
server, with routing rules that match every alert; its ledger workers create the incidents'
channels while the alerts keep coming, as in production. A client posts Alertmanager
notifications concurrently over HTTP, in three phases over the same alerts:

1. first notifications: every alert new, each group declares its incident;
2. repeats: the same notifications again (Alertmanager's repeat_interval, HA peers);
3. resolves: every alert resolved.

The figure is the time per 1,000 alerts over the three phases, held to the target as it is
stated: ≥ 2,000 alerts/s, that is under 500 ms per 1,000 alerts, on each back end. The JSON
floor, measured in the same run from the same client with the same bodies (a bare Starlette
endpoint in its own process that parses each body and answers 200), is shown beside it for
context: what the client and the machine allow at most.

A second figure per back end, with no target, is the CPU time the bot's process spent per
1,000 alerts against the floor process's (on a shared machine, wall-clock figures of two runs
differ with the other load, CPU time much less). It is split in two: the request threads'
own, decoding and ingesting the notifications (the bot's
``incidentbot_alert_ingest_cpu_seconds_total``), and the rest of the process, mostly the
ledger workers creating and furnishing the storm's incidents' channels and posting the groups'
messages, which run while the alerts keep coming (the note says how many of the channels were
done when the clock stopped) and the web server.

Nothing is assumed from a 200: the stored alerts, their repeat counts, the resolved ones, the
deliveries (none failed), the incidents (one per group) and the alerts' firing and resolved
timeline entries are counted in the database before a figure is reported. PostgreSQL runs
with durable settings (fsync, synchronous commit on).

Run: .venv/bin/python bench/alert_ingest.py [--groups 50] [--per-group 20] [--concurrency 16]
or through ``bench/run``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from sqlalchemy import func
from sqlmodel import col, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import BenchArgs, BenchFailed, Figure
from bench.served import free_port, served_bot
from incidentbot import db
from incidentbot.alerts.models import RESOLVED, AlertDelivery, AlertRecord
from incidentbot.incidents.models import Incident, TimelineEvent
from incidentbot.ledger.models import SUCCEEDED, Run
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


FLOOR_APP = """
import json, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def parse(request):
    data = json.loads(await request.body())
    return JSONResponse({"ok": True, "alerts": len(data["alerts"])})

app = Starlette(routes=[Route("/webhooks/alertmanager", parse, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served_pid() -> int | None:
    """The `incidentbot serve` this process started (served_bot keeps its Popen to itself)."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"incidentbot.cli" in command and b"serve" in command:
            return int(entry.name)
    return None


@contextmanager
def json_floor() -> Iterator[tuple[str, int]]:
    """A bare endpoint that parses the body and answers, in its own process: (URL, pid)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(url, json={"alerts": []})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the JSON floor endpoint did not come up") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _send_all(url: str, groups: int, per_group: int, concurrency: int) -> tuple[int, float]:
    """Every phase, one after another: (alerts sent, seconds)."""
    total, elapsed = 0, 0.0
    for _phase, bodies in phases(groups, per_group):
        took, _ = asyncio.run(_send(url, bodies, concurrency))
        total += sum(len(b["alerts"]) for b in bodies)
        elapsed += took
    return total, elapsed


def _check_stored(url: str, groups: int, per_group: int) -> None:
    """What the three phases must have left in the database (plus the warm-up alert)."""
    n = groups * per_group
    engine = db.make_engine(url)
    try:
        with db.transaction(engine) as s:
            stored = s.exec(select(func.count()).select_from(AlertRecord)).one()
            repeats = s.exec(select(func.sum(AlertRecord.received_count))).one()
            done = s.exec(select(func.count()).where(AlertRecord.status == RESOLVED)).one()
            deliveries = s.exec(select(func.count()).select_from(AlertDelivery)).one()
            failed = s.exec(select(func.count()).where(col(AlertDelivery.failed).is_(True))).one()
            incidents = s.exec(select(func.count()).select_from(Incident)).one()
            events = dict(
                s.exec(
                    select(TimelineEvent.kind, func.count())
                    .where(col(TimelineEvent.kind).in_(["alert.firing", "alert.resolved"]))
                    .group_by(TimelineEvent.kind)
                ).all()
            )
    finally:
        engine.dispose()
    firing, ended = events.get("alert.firing", 0), events.get("alert.resolved", 0)
    want = (n + 1, 3 * n + 1, n, 3 * groups + 1, 0, groups, n, n)
    got = (stored, repeats, done, deliveries, failed, incidents, firing, ended)
    if got != want:
        raise BenchFailed(
            "stored (alerts, receipts, resolved, deliveries, failed, incidents, firing and "
            f"resolved on the timeline) {got}, expected {want}"
        )


INGEST_CPU = "incidentbot_alert_ingest_cpu_seconds_total"


def ingest_cpu(webhook: str) -> float:
    """The request threads' CPU seconds on the notifications so far, from the bot's /metrics."""
    base = webhook.removesuffix("/webhooks/alertmanager")
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith(INGEST_CPU + " "):
            return float(line.split()[1])
    raise BenchFailed(f"/metrics has no {INGEST_CPU}")


def channels_done(url: str) -> int:
    """How many incident channels the ledger workers have created and furnished so far."""
    engine = db.make_engine(url)
    try:
        with db.read(engine) as s:
            done = select(func.count()).where(
                Run.kind == "incident.channel", Run.status == SUCCEEDED
            )
            return int(s.exec(done).one())
    finally:
        engine.dispose()


@dataclass
class Measured:
    """One back end's run: alerts/s, and per 1,000 alerts the CPU seconds of the bot's process
    and of its request threads' ingest (None without /proc), the channels done at the stop."""

    rate: float
    cpu: float | None
    ingest_cpu: float
    channels: int


def ingest_rate(url: str, groups: int, per_group: int, concurrency: int) -> Measured:
    """Alerts per second through `incidentbot serve` on ``url``, and the CPU its process used
    meanwhile, after checking the store."""
    with tempfile.TemporaryDirectory() as tmp, served_alert_bot(url, tmp) as webhook:
        warm = notification([alert("Warmup", instance="w")], group="Warmup")
        asyncio.run(_send(webhook, [warm], 1))
        pid = _served_pid()
        before, ingest_before = cpu_seconds(pid) if pid else None, ingest_cpu(webhook)
        total, elapsed = _send_all(webhook, groups, per_group, concurrency)
        after, ingest_after = cpu_seconds(pid) if pid else None, ingest_cpu(webhook)
        channels = channels_done(url)
    _check_stored(url, groups, per_group)
    cpu = (after - before) / total * 1000 if before is not None and after is not None else None
    return Measured(total / elapsed, cpu, (ingest_after - ingest_before) / total * 1000, channels)


def figures(args: BenchArgs) -> list[Figure]:
    groups, per_group, concurrency = (10, 20, 16) if args.quick else (50, 20, 16)
    with json_floor() as (floor_url, floor_pid):
        asyncio.run(_send(floor_url, [notification([alert("Warmup")], group="w")], 1))
        floor_before = cpu_seconds(floor_pid)
        sent, took = _send_all(floor_url, groups, per_group, concurrency)
        floor_after = cpu_seconds(floor_pid)
    floor = sent / took
    floor_cpu = None
    if floor_before is not None and floor_after is not None:
        floor_cpu = (floor_after - floor_before) / sent * 1000
    out = []
    backends: list[tuple[str, Measured | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        backends.append(
            ("SQLite", ingest_rate(f"sqlite:///{tmp}/b.db", groups, per_group, concurrency))
        )
    try:
        cluster = PgCluster(durable=True)
    except PgUnavailable as exc:
        backends.append(("PostgreSQL", f"skipped: {exc}"))
    else:
        try:
            cluster.start()
            cluster.execute("CREATE DATABASE bench")
            backends.append(
                ("PostgreSQL", ingest_rate(cluster.url("bench"), groups, per_group, concurrency))
            )
        finally:
            cluster.stop()
    shape = f"{groups * per_group} alerts in {groups} groups, {concurrency} senders, 3 phases"
    for name, measured in backends:
        if isinstance(measured, str):
            print(f"alert ingest, {name}: {measured}")
            continue
        out.append(
            Figure(
                f"Alertmanager ingest, {name} ({shape})",
                1000 / measured.rate * 1000,
                1000 / floor * 1000,
                unit="ms/1k alerts",
                under=1000 / TARGET_RATE * 1000,
                baseline_name="parsing the JSON only, for context",
                note=f"{measured.rate:.0f} alerts/s; target ≥ {TARGET_RATE:,} alerts/s "
                f"(under {1000 / TARGET_RATE * 1000:.0f} ms/1k); the JSON floor "
                f"{floor:.0f}/s; stored alerts, receipts, resolves, incidents and timeline "
                "entries counted, 0 failed",
            )
        )
        if measured.cpu is not None and floor_cpu:
            rest = measured.cpu - measured.ingest_cpu
            out.append(
                Figure(
                    f"Alertmanager ingest, {name}: CPU time of the bot's process ({shape})",
                    measured.cpu * 1000,
                    floor_cpu * 1000,
                    unit="ms CPU/1k alerts",
                    baseline_name="CPU time of the JSON floor's process",
                    note=f"no target; of it, the request threads' ingest "
                    f"{measured.ingest_cpu * 1000:.0f} ms, the rest {rest * 1000:.0f} ms: "
                    "mostly the ledger workers' channel work for the storm's incidents "
                    f"({measured.channels} of {groups} channels done when the clock stopped) "
                    "and the web server",
                )
            )
    return out


TARGET_RATE = 2000  # alerts/s, on each back end


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
