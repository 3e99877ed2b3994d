"""Storage under load: acks in a burst, and requests that must not grow with history.

1. Ack p99 of 50 signed ``/incident declare`` sent at once, and of 50 mixed commands (declare,
   list, note, timeline, summary in an incident channel), to ``incidentbot serve`` in its own
   process, against the p99 of a trivial Starlette endpoint (uvicorn, its own process) given
   the same 50 requests at once. SQLite, and PostgreSQL with fsync on. Each round starts from a
   fresh database; every ack must be a 200 and the declares and notes must all be stored.
2. An in-channel command (``sev``, ``note``, ``timeline``) on an incident with 10,000 timeline
   events against the same on an incident with none; ``list`` with 10,000 open incidents against
   an empty database. In-process (the command handler the Slack listener calls), both back ends;
   each measured command's change is checked stored.

Run: bench/run storage_load (table), or .venv/bin/python bench/storage_load.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from bench.figures import BenchArgs, BenchFailed, Figure, median, pct
from bench.served import free_port, served_bot
from incidentbot import db
from incidentbot.config import Settings
from incidentbot.ledger.actions import registry
from incidentbot.slack.commands import CommandHandler
from tests.pgcluster import PgCluster, PgUnavailable

BURST = 50
HISTORY = 10_000
ACK_TARGET = 2.0  # × the trivial endpoint's p99
HISTORY_TARGET = 1.5  # × the same on an empty database
SLACK_WAITS_S = 3.0
PAGE = 40  # incidents in one Slack `list` reply

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


# -- back ends -------------------------------------------------------------------------------


@contextmanager
def backends() -> Iterator[Callable[[str], tuple[str, str]]]:
    """Yield ``fresh(name)`` -> (back end label, URL of a new empty database); PostgreSQL is a
    throwaway cluster with durable settings (fsync and synchronous commit on)."""
    tmp = tempfile.TemporaryDirectory()
    cluster: PgCluster | None = None
    try:
        cluster = PgCluster(durable=True).start()
    except PgUnavailable as exc:
        print(f"   PostgreSQL skipped: {exc}")
    made = iter(range(1_000_000))

    def fresh(backend: str) -> tuple[str, str]:
        n = next(made)
        if backend == "sqlite":
            return "SQLite", f"sqlite:///{tmp.name}/bench{n}.db"
        assert cluster is not None
        cluster.execute(f"CREATE DATABASE bench{n}")
        return "PostgreSQL (fsync on)", cluster.url(f"bench{n}")

    fresh.backends = ["sqlite"] + (["postgresql"] if cluster else [])  # type: ignore[attr-defined]
    try:
        yield fresh
    finally:
        if cluster is not None:
            cluster.stop()
        tmp.cleanup()


def _count(url: str, sql: str) -> int:
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


# -- 1. acks in a burst ----------------------------------------------------------------------


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


async def _send_all(sandbox, requests, url: str | None = None) -> list[float]:  # type: ignore[no-untyped-def]
    """Send ``requests`` at once (to ``url`` instead of the bot's when given); ack seconds."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=len(requests))) as client:
        if url is None:
            acks = await asyncio.gather(*(sandbox.driver.send_async(r, client) for r in requests))
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


def ack_bursts(fresh, rounds: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    figures: list[Figure] = []
    for backend in fresh.backends:
        declare_p99: list[float] = []
        mixed_p99: list[float] = []
        late = {"declare": 0, "mixed": 0}
        trivial_p99: list[float] = []
        label = ""
        for r in range(rounds):
            label, url = fresh(backend)
            with served_bot(url) as (sandbox, _base), trivial_endpoint() as trivial:
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
                acks = asyncio.run(_send_all(sandbox, declares))
                late["declare"] += sum(a > SLACK_WAITS_S for a in acks)
                declare_p99.append(pct(acks, 0.99))
                stored = _count(url, "SELECT count(*) FROM incident")
                if stored != BURST + 1:
                    raise BenchFailed(f"{label}: {stored - 1} of {BURST} declares stored")
                notes_before = _count(url, "SELECT count(*) FROM timeline_event WHERE kind='note'")
                mixed, n_declares, n_notes = _mixed(driver, channel, r)
                acks = asyncio.run(_send_all(sandbox, mixed))
                late["mixed"] += sum(a > SLACK_WAITS_S for a in acks)
                mixed_p99.append(pct(acks, 0.99))
                stored = _count(url, "SELECT count(*) FROM incident")
                notes = _count(url, "SELECT count(*) FROM timeline_event WHERE kind='note'")
                if stored != BURST + 1 + n_declares or notes - notes_before != n_notes:
                    raise BenchFailed(f"{label}: mixed burst not all stored")
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
                        f"{late[what]} of {BURST * rounds} acks over 3 s"
                    ),
                )
            )
    return figures


# -- 2. history ------------------------------------------------------------------------------


def _seed(url: str, incidents: int, events_on_first: int) -> None:
    """``incidents`` open incidents (INC-1 in channel C1 with ``events_on_first`` notes)."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    try:
        _insert(engine, incidents, events_on_first)
    finally:
        engine.dispose()


def _insert(engine: sa.Engine, incidents: int, events_on_first: int) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM counter WHERE name = 'incident'"))
        conn.execute(
            sa.text("INSERT INTO counter (name, value) VALUES ('incident', :n)"), {"n": incidents}
        )
        rows = [
            {
                "number": n, "title": f"seeded {n}", "severity": "SEV3", "status": "triage",
                "fields": "{}", "commander": "U1", "declared_by": "U1",
                "channel_id": "C1" if n == 1 else None, "at": now,
            }
            for n in range(1, incidents + 1)
        ]  # fmt: skip
        if not rows:
            return
        conn.execute(
            sa.text(
                "INSERT INTO incident (number, title, severity, status, fields, commander, "
                "declared_by, channel_id, created_at, updated_at, declared_at) VALUES "
                "(:number, :title, :severity, :status, :fields, :commander, :declared_by, "
                ":channel_id, :at, :at, :at)"
            ).bindparams(sa.bindparam("at", type_=db.UTCDateTime())),
            rows,
        )
        first = conn.execute(sa.text("SELECT id FROM incident WHERE number = 1")).scalar_one()
        events = [
            {"i": first, "at": now - timedelta(seconds=events_on_first - k), "s": f"event {k}"}
            for k in range(events_on_first)
        ]
        if events:
            conn.execute(
                sa.text(
                    "INSERT INTO timeline_event (incident_id, occurred_at, recorded_at, kind, "
                    "actor, summary, data) VALUES (:i, :at, :at, 'note', 'U1', :s, '{}')"
                ).bindparams(sa.bindparam("at", type_=db.UTCDateTime())),
                events,
            )


def _time_commands(url: str, texts: list[str], channel: str, repeats: int) -> dict[str, float]:
    """Median ms per command text over ``repeats`` (each after one warm-up)."""
    engine = db.make_engine(url)
    handler = CommandHandler(Settings(), engine)
    out: dict[str, float] = {}
    try:
        for text in texts:
            times = []
            for k in range(repeats + 1):
                arg = text.format(sev=("2", "3")[k % 2], k=k)
                t0 = time.perf_counter()
                reply = handler.handle(user_id="U1", channel_id=channel, text=arg, trigger_id="t")
                if k:
                    times.append(time.perf_counter() - t0)
                if "Usage" in reply.text:
                    raise BenchFailed(f"`{arg}` was refused: {reply.text}")
            out[text] = median(times) * 1000
        notes = _count(url, "SELECT count(*) FROM timeline_event WHERE summary LIKE 'bench %'")
        if any("note" in t for t in texts) and notes != repeats + 1:
            raise BenchFailed(f"{notes} of {repeats + 1} notes stored")
    finally:
        engine.dispose()
    return out


def _queue_only_chat_actions() -> None:
    """In-process, no worker runs the header and digest refreshes the commands queue; the
    actions they name must still be known for the runs to be recorded."""
    for name in ("chat.open_channel", "chat.furnish_channel", "chat.header", "chat.digest"):
        if registry.get(name) is None:
            registry.register(name, lambda *a, **k: None, idempotent=True)


def history(fresh, rounds: int, size: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    _queue_only_chat_actions()
    figures: list[Figure] = []
    texts = ["sev {sev}", "note bench {k}", "timeline"]
    repeats = 10 * rounds
    for backend in fresh.backends:
        label, empty = fresh(backend)
        _seed(empty, 1, 0)
        _, full = fresh(backend)
        _seed(full, 1, size)
        base = _time_commands(empty, texts, "C1", repeats)
        big = _time_commands(full, texts, "C1", repeats)
        for text in texts:
            figures.append(
                Figure(
                    f"`{text.split()[0]}` on an incident with {size:,} events, {label}",
                    big[text],
                    base[text],
                    target=HISTORY_TARGET,
                    baseline_name="no events",
                    note=f"median of {repeats}",
                )
            )
        timed: dict[int, float] = {}
        for incidents in (0, PAGE, size):
            _, url = fresh(backend)
            _seed(url, incidents, 0)
            timed[incidents] = _time_commands(url, ["list"], "D1", repeats)["list"]
        for base, name in ((0, "empty database"), (PAGE, f"{PAGE} open incidents, one page")):
            figures.append(
                Figure(
                    f"`list` with {size:,} open incidents, {label}",
                    timed[size],
                    timed[base],
                    target=HISTORY_TARGET,
                    baseline_name=name,
                    note=f"median of {repeats}",
                )
            )
    return figures


def figures(args: BenchArgs) -> list[Figure]:
    with backends() as fresh:
        out = history(fresh, args.rounds, 1_000 if args.quick else HISTORY)
        out += ack_bursts(fresh, 1 if args.quick else args.rounds)
    return out


if __name__ == "__main__":
    from bench.runner import table

    os.environ.setdefault("INCIDENTBOT_LOG_LEVEL", "WARNING")
    print("\n".join(table([("storage_load", f) for f in figures(BenchArgs())])))
