"""The first command after start: ``incidentbot serve`` is started on a fresh database, and as
soon as ``/healthz`` says ready, three ``/incident declare`` commands are sent one after another
through the local Slack server; each waits until the previous incident's channel is furnished
(its header pinned), so that every declare is acked on an equally quiet bot. Each declare comes
on a new connection, as Slack's commands do: people type them seconds apart, longer than the
web server keeps an idle connection open (5 s), so a later declare never finds the first one's
connection still open. The first ack is compared with the later ones of the same start (median
over the starts); start → ready is reported beside it. On SQLite and, when its binaries exist,
PostgreSQL (fsync on).

    bench/run first_command
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import fresh_databases
from bench.figures import BenchArgs, BenchFailed, Figure
from bench.served import compile_bytecode, serving
from incidentbot.sandbox.slack.server import SlackSandbox

DECLARES = 3
FIRST_TARGET = 1.5  # the first ack at most 1.5x the later ones


def _pins(sandbox: SlackSandbox) -> int:
    return len(sandbox.requests("pins.add"))


def _furnished(sandbox: SlackSandbox, count: int, limit: float = 60) -> None:
    began = time.monotonic()
    while _pins(sandbox) < count:
        if time.monotonic() - began > limit:
            raise BenchFailed(f"incident {count}'s channel was not furnished within {limit} s")
        time.sleep(0.02)


def one_start(sandbox: SlackSandbox, url: str) -> tuple[float, list[float]]:
    """(start → ready s, the acks of DECLARES declares in s) for one fresh start."""
    sandbox.reset()
    with serving(sandbox, url) as (_proc, _base, ready):
        acks = []
        for n in range(1, DECLARES + 1):
            sandbox.driver.close()  # a new connection, as after an idle gap (module docstring)
            ack = sandbox.driver.slash_command(f"declare sev2 RPC node {n} lagging", user="alice")
            if ack.status != 200 or "INC-" not in ack.body:
                raise BenchFailed(f"declare {n} was not acknowledged: {ack.status} {ack.error}")
            acks.append(ack.elapsed_s)
            _furnished(sandbox, n)
    return ready, acks


def figures(args: BenchArgs) -> list[Figure]:
    rounds = 2 if args.quick else max(3, args.rounds)
    compile_bytecode()
    out: list[Figure] = []
    sandbox = SlackSandbox().start()
    try:
        with fresh_databases() as fresh:
            for backend in fresh.backends:  # type: ignore[attr-defined]
                starts = []
                for _ in range(rounds):
                    label, url = fresh(backend)
                    starts.append(one_start(sandbox, url))
                ready = statistics.median(s[0] for s in starts) * 1000
                first = [s[1][0] * 1000 for s in starts]
                later = [a * 1000 for s in starts for a in s[1][1:]]
                out.append(
                    Figure(
                        f"first declare ack after start, {label} — median of {rounds} starts "
                        f"(each {max(first):.0f} ms at worst); start → /healthz ready "
                        f"{ready:.0f} ms",
                        statistics.median(first),
                        statistics.median(later),
                        target=FIRST_TARGET,
                        baseline_name="the 2nd and 3rd declare of the same starts",
                    )
                )
    finally:
        sandbox.stop()
    return out


if __name__ == "__main__":
    for f in figures(BenchArgs(rounds=3)):
        print(f"{f.name}: {f.value:.1f} {f.unit} vs {f.baseline:.1f} ({f.ratio:.2f}x)")
