"""The declare fan-out: its critical path against one Slack round trip, and its Slack calls.

A bot runs against the local Slack-compatible server with a fixed latency injected into every
Web API call. For each round, ``/incident declare`` is sent (after one declare that warms the
bot's one-time lookups: the digest channel's id, the bot's own id) and the figure is the time
from the acknowledgement until Slack answered the last call of the fan-out (channel, topic,
purpose, invitation, header, pin, digest announcement), taken from the server's own record of
every request. The baseline is one plain Web API call with the same latency, in the same run.
The fan-out is checked before anything is reported: the channel exists with the declarer in
it, the header is posted and pinned, the announcement is out, and each is on the timeline.

The calls a declare makes are counted from the server's record, per method.

Measured both ways, each in a bot of its own, in the same run: creating the incident's channel
(the default), and with standby channels (``channels.standby``: the incident takes a channel
made before it and renames it). With standby channels, refilling the pool (a new spare created
and described) follows each take off the critical path: those calls are counted apart and left
out of the critical path, which ends with the fan-out's last answer.

Also the CPU the fan-out costs the bot's process: declares sent one after another (no latency
injected), each waited for until every run has ended, and the CPU time of the threads the
worker pool runs in and of the threads they start (the channel is furnished by concurrent
calls), those that ended meanwhile included. The baseline is the Slack client's own CPU for as
many calls (the bot's kept-alive client, ``chat.postMessage`` to the same server, measured in
the same run): what the fan-out would cost if the ledger, the database and the rendering were
free. Each incident is checked as above, and every run to have succeeded.

Run: .venv/bin/python bench/declare_fanout.py [--latency 0.2] [--rounds 3] [--cpu]
or through ``bench/run``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import BenchArgs, BenchFailed, Figure, median
from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.incidents import standby
from incidentbot.ledger.models import SUCCEEDED, Run
from incidentbot.slack.web_client import PooledWebClient
from tests.slack_harness import running_bot, settled

LATENCY = 0.2
TARGET = 2.6  # two dependent round trips plus 30%
EFFECTS = ("channel.created", "responders.invited", "header.posted", "digest.announced")


def _one_round_trip(sandbox, latency: float) -> float:  # type: ignore[no-untyped-def]
    client = sandbox.web_client()
    client.auth_test()  # connection and code paths warm
    started = time.perf_counter()
    client.auth_test()
    return time.perf_counter() - started


def _check(engine, sandbox, ref: str, use_standby: bool) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(engine) as s:
        inc = svc.get(s, ref)
        kinds = Counter(e.kind for e in svc.timeline(s, inc))
        took = s.exec(
            select(standby.StandbyChannel).where(standby.StandbyChannel.incident_id == inc.id)
        ).first()
    if use_standby and ref != "INC-1" and (took is None or took.channel_id != inc.channel_id):
        raise BenchFailed(f"{ref}: no standby channel was taken (the pool was not refilled)")
    if not use_standby and took is not None:
        raise BenchFailed(f"{ref}: a standby channel was taken with the setting off")
    missing = [k for k in EFFECTS if kinds[k] != 1]
    if missing or not (inc.channel_id and inc.header_ts and inc.digest_ts):
        raise BenchFailed(f"{ref}: fan-out incomplete (timeline lacks {missing})")
    pinned = [
        r for r in sandbox.requests("pins.add") if r.ok and r.args.get("channel") == inc.channel_id
    ]
    if not pinned:
        raise BenchFailed(f"{ref}: the header was not pinned")


def _refill(call, spares: set[str]) -> bool:  # type: ignore[no-untyped-def]
    """A call that refills the standby pool (a spare created, described or looked up)."""
    if call.method == "conversations.create":
        return str(call.args.get("name", "")).startswith(standby.NAME_PREFIX)
    return call.args.get("channel") in spares


def _spares(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with db.read(engine) as s:
        rows = s.exec(select(standby.StandbyChannel)).all()
    return {r.channel_id for r in rows if r.channel_id and r.state in standby.SPARE}


def measure(
    latency: float, rounds: int, *, use_standby: bool = False
) -> tuple[list[float], float, Counter[str], Counter[str], Counter[str]]:
    """Critical paths (s), one round trip (s), calls of the warm-up declare, calls per declare
    after it (summed over the rounds), and the refill calls after it (likewise)."""
    paths: list[float] = []
    trips: list[float] = []
    first: Counter[str] = Counter()
    steady: Counter[str] = Counter()
    refills: Counter[str] = Counter()
    overrides = {"channels": {"standby": True}} if use_standby else {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
        db.upgrade(engine)
        with running_bot(engine, **overrides) as (_bot, sandbox):
            settled(engine)  # with standby channels: the spares made at start
            sandbox.set_latency(latency)
            for r in range(rounds + 1):
                trips.append(_one_round_trip(sandbox, latency))
                before = len(sandbox.requests())
                sandbox.driver.slash_command(f"declare sev2 node {r} lagging", user="alice")
                acked = time.time()
                settled(engine)
                spares = _spares(engine)
                calls = sandbox.requests()[before:]
                _check(engine, sandbox, f"INC-{r + 1}", use_standby)
                if r == 0:
                    first.update(c.method for c in calls)
                    continue
                fanout = [c for c in calls if not _refill(c, spares)]
                steady.update(c.method for c in fanout)
                refills.update(c.method for c in calls if _refill(c, spares))
                paths.append(max(c.started_at + c.duration_s for c in fanout) - acked)
            sandbox.set_latency(0)
        engine.dispose()
    return paths, median(trips), first, steady, refills


def _figure(paths, trip, first, steady, refills, rounds, use_standby):  # type: ignore[no-untyped-def]
    per_declare = sum(steady.values()) / rounds
    calls = ", ".join(f"{m} {n / rounds:g}" for m, n in sorted(steady.items()))
    way = (
        "a standby channel taken and renamed (channels.standby: on)"
        if use_standby
        else "the channel created (channels.standby: off, the default)"
    )
    refill = (
        f"; refilling the pool after each take, off the critical path: "
        f"{sum(refills.values()) / rounds:g} calls "
        f"({', '.join(f'{m} {n / rounds:g}' for m, n in sorted(refills.items()))})"
        if use_standby
        else ""
    )
    return Figure(
        f"declare critical path (ack → channel, invites, header, pin, digest out), {way}",
        median(paths) * 1000,
        trip * 1000,
        target=TARGET,
        baseline_name=f"one Slack call, {LATENCY * 1000:.0f} ms injected",
        note=f"median of {rounds} ({min(paths) / trip:.2f}–{max(paths) / trip:.2f}×); "
        f"Slack calls per declare: {per_declare:g} ({calls}){refill}; "
        f"the first declare of a process also makes {sum(first.values())}",
    )


class PoolThreads:
    """CPU time of the threads whose names start with ``prefix`` (a worker pool's) and of every
    thread they start, in turn; those that ended meanwhile included (their CPU time is read
    as they end). Counts the threads started while it is entered."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ended = 0.0
        self.lock = threading.Lock()
        self.alive: set[threading.Thread] = set()

    def __enter__(self) -> PoolThreads:
        counted = self
        start, inner = threading.Thread.start, threading.Thread._bootstrap_inner  # type: ignore[attr-defined]
        self._saved = start, inner

        def started(thread: threading.Thread) -> None:
            parent = threading.current_thread()
            if thread.name.startswith(counted.prefix) or parent in counted.alive:
                with counted.lock:
                    counted.alive.add(thread)
            start(thread)

        def run(thread: threading.Thread) -> None:
            try:
                inner(thread)
            finally:
                with counted.lock:
                    if thread in counted.alive:
                        counted.alive.discard(thread)
                        counted.ended += time.thread_time()

        threading.Thread.start = started  # type: ignore[method-assign]
        threading.Thread._bootstrap_inner = run  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start, threading.Thread._bootstrap_inner = self._saved  # type: ignore[attr-defined]

    def cpu(self) -> float:
        with self.lock:
            total, alive = self.ended, list(self.alive)
        for thread in alive:
            # One that ended just now was counted as it ended (or, a race, not at all).
            with suppress(OSError, ProcessLookupError):
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
        return total


def _client_cpu_per_call(sandbox, calls: int = 40) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds per ``chat.postMessage`` of the bot's kind of client (kept-alive
    connections) to the same server, in a thread of its own."""
    client = PooledWebClient(token=sandbox.bot_token, base_url=sandbox.base_url)
    channel = sandbox.driver.ws.channel("incidents").id
    spent: list[float] = []

    def send() -> None:
        client.chat_postMessage(channel=channel, text="warm")
        began = time.thread_time()
        for i in range(calls):
            client.chat_postMessage(channel=channel, text=f"message {i}")
        spent.append(time.thread_time() - began)

    thread = threading.Thread(target=send)
    thread.start()
    thread.join()
    return spent[0] / calls


def measure_cpu(declares: int) -> tuple[float, float, float]:
    """(fan-out CPU per declare, the Slack client's CPU for its calls, Slack calls per
    declare), in seconds, after one declare that warms the one-time lookups."""
    with tempfile.TemporaryDirectory() as tmp, PoolThreads("bot/") as pool:
        engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
        db.upgrade(engine)
        with running_bot(engine) as (_bot, sandbox):
            sandbox.driver.slash_command("declare sev2 warm-up", user="alice")
            settled(engine)
            before, sent = pool.cpu(), len(sandbox.requests())
            for r in range(declares):
                sandbox.driver.slash_command(f"declare sev2 node {r} lagging", user="alice")
                settled(engine)
            spent = pool.cpu() - before
            calls = len(sandbox.requests()) - sent
            for r in range(declares + 1):
                _check(engine, sandbox, f"INC-{r + 1}", use_standby=False)
            with db.read(engine) as s:
                runs = s.exec(select(Run.status)).all()
            if len(runs) != 2 * (declares + 1) or set(runs) != {SUCCEEDED}:
                raise BenchFailed(f"not every run succeeded: {sorted(runs)}")
            per_call = _client_cpu_per_call(sandbox)
        engine.dispose()
    return spent / declares, per_call * calls / declares, calls / declares


def _cpu_figure(declares: int) -> Figure:
    fanout, client, calls = measure_cpu(declares)
    return Figure(
        f"declare fan-out: CPU of the bot's process per declare (the ledger's workers and "
        f"the threads they start; {declares} declares one after another, every run ended)",
        fanout * 1000,
        client * 1000,
        baseline_name=f"the Slack client's own CPU for its {calls:g} calls",
        note="no target: the part of the fan-out that is not the Slack client's own work",
    )


def figures(args: BenchArgs) -> list[Figure]:
    rounds = 2 if args.quick else max(3, args.rounds)
    out = []
    for use_standby in (False, True):
        measured = measure(LATENCY, rounds, use_standby=use_standby)
        out.append(_figure(*measured, rounds, use_standby))
    out.append(_cpu_figure(8 if args.quick else 10 * rounds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=LATENCY)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--standby", action="store_true", help="with standby channels")
    parser.add_argument("--cpu", type=int, metavar="DECLARES", help="only the CPU per declare")
    args = parser.parse_args()
    if args.cpu:
        fanout, client, calls = measure_cpu(args.cpu)
        print(f"fan-out CPU per declare: {fanout * 1000:.2f} ms; the Slack client's own CPU")
        print(f"for its {calls:g} calls: {client * 1000:.2f} ms ({fanout / client:.2f}×)")
        return
    paths, trip, first, steady, refills = measure(
        args.latency, args.rounds, use_standby=args.standby
    )
    for i, p in enumerate(paths, 1):
        print(f"  declare {i}: critical path {p * 1000:.0f} ms = {p / trip:.2f} × one round trip")
    print(f"one round trip: {trip * 1000:.0f} ms; median ratio {median(paths) / trip:.2f}")
    print(
        f"first declare of the process: {sum(first.values())} calls {dict(sorted(first.items()))}"
    )
    print(
        f"each later declare: {sum(steady.values()) / args.rounds:g} calls "
        f"{ {m: n / args.rounds for m, n in sorted(steady.items())} }"
    )
    if args.standby:
        print(f"refilling the pool, per declare: {sum(refills.values()) / args.rounds:g} calls")


if __name__ == "__main__":
    main()
