"""How fast the command line starts: ``incidentbot --version`` and ``--help`` against the bare
interpreter (``python -c pass``), and ``incidentbot serve`` until ``/healthz`` answers against
``python -c "import slack_bolt"`` (the least a Slack bot built on Bolt imports), with the
resident memory of ``serve`` at that moment.

Each command runs several times, interleaved with its baseline; the medians are compared (wall
time; the CPU time of the process is printed too). ``serve`` runs on a fresh SQLite database
against the local Slack server, with the shipped runbooks; its CPU time and RSS are read from
/proc when /healthz first answers 200 (which it does only once warmed up, see
incidentbot.web.warmup). Each repeat starts ``serve`` twice from the same state, an empty data
directory: a first start (every runbook file checked, the results kept in the data directory)
and a later one (another fresh database, the same data directory: the files that passed are
not checked again, see incidentbot.runbooks.check_cache); both are reported. Every child
loads the bot's modules from bytecode compiled beforehand, as the installed wheel does (see
bench/served.py). The code measured is the one the child processes import (set PYTHONPATH to
measure another checkout).

    bench/run cli_startup
    python bench/cli_startup.py [--runs 10] [--serve-runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import BenchArgs, BenchFailed, Figure
from bench.served import (
    CLI,
    compile_bytecode,
    compiled_env,
    proc_cpu,
    proc_rss_mib,
    proc_waited,
    serving,
)
from incidentbot.sandbox.slack.server import SlackSandbox

BOLT = [sys.executable, "-c", "import slack_bolt"]
# What serve cannot answer a Slack request without: Bolt, the ORM over pydantic, the web server
# and the settings. Importing these alone is the floor of serve's start, whatever the bot does.
FLOOR_MODULES = "slack_bolt, sqlmodel, uvicorn, starlette.applications, pydantic_settings"
FLOOR = [sys.executable, "-c", f"import {FLOOR_MODULES}"]
SERVE_TARGET = 3.0  # serve ready at most 3x `import slack_bolt` (and under 1.5 s)
RSS_LIMIT_MIB = 120.0


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``argv``."""
    cpu = _cpu_children()
    env = compiled_env(dict(os.environ))
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start, _cpu_children() - cpu


def medians(argv: list[str], runs: int) -> tuple[float, float]:
    walls, cpus = zip(*(run_once(argv) for _ in range(runs)), strict=True)
    return statistics.median(walls), statistics.median(cpus)


Start = tuple[float, float, float, float]  # wall s, cpu s, RSS MiB, s waiting for a CPU


def serve_ready(tmp: Path, sandbox: SlackSandbox, name: str) -> Start:
    """(wall s, cpu s, RSS MiB, s waiting for a CPU) from starting ``serve`` to the first 200
    from /healthz, on a new database ``name`` and with the data directory ``tmp/data``."""
    data = {"INCIDENTBOT_DATA_DIR": str(tmp / "data")}
    with serving(sandbox, f"sqlite:///{tmp}/{name}.db", **data) as (proc, _base, ready):
        return ready, proc_cpu(proc.pid), proc_rss_mib(proc.pid), proc_waited(proc.pid)


def serve_twice(sandbox: SlackSandbox) -> tuple[Start, Start]:
    """A first start and a later one (see the module), from an empty data directory."""
    with tempfile.TemporaryDirectory() as tmp:
        first = serve_ready(Path(tmp), sandbox, "first")
        if not (Path(tmp) / "data" / "runbook-checks.json").exists():
            raise BenchFailed("the first start kept no runbook check results")
        return first, serve_ready(Path(tmp), sandbox, "later")


def _line(label: str, wall: float, cpu: float) -> str:
    return f"{label:<25} wall {wall * 1000:6.0f} ms  cpu {cpu * 1000:6.0f} ms"


def serve_figures(runs: int) -> list[Figure]:
    """``serve`` ready against ``import slack_bolt``, interleaved; and its RSS when ready."""
    compile_bytecode()
    sandbox = SlackSandbox().start()
    firsts, laters, bolt, floor = [], [], [], []
    try:
        for _ in range(runs):
            bolt.append(run_once(BOLT)[0])
            floor.append(run_once(FLOOR)[0])
            first, later = serve_twice(sandbox)
            firsts.append(first)
            laters.append(later)
    finally:
        sandbox.stop()
    out = []
    for label, served in (
        ("first start: every runbook checked", firsts),
        ("later start: runbook checks kept", laters),
    ):
        wall = statistics.median(r[0] for r in served) * 1000
        cpu = statistics.median(r[1] for r in served) * 1000
        waited = statistics.median(r[3] for r in served) * 1000
        out.append(
            Figure(
                f"serve to /healthz ready, {label} (median of {runs})",
                wall,
                statistics.median(bolt) * 1000,
                target=SERVE_TARGET,
                baseline_name="python -c 'import slack_bolt'",
                note=f"{cpu:.0f} ms CPU, {waited:.0f} ms waiting for a CPU; the target also "
                "asks for under 1.5 s",
            )
        )
    out.append(
        Figure(
            f"python -c 'import {FLOOR_MODULES}' (median of {runs})",
            statistics.median(floor) * 1000,
            statistics.median(bolt) * 1000,
            baseline_name="python -c 'import slack_bolt'",
            note="the libraries serve needs before it can answer a request: its floor",
        )
    )
    rss = statistics.median(r[2] for r in firsts)
    return [
        *out,
        Figure(
            "serve resident memory when ready (before any declare)",
            rss,
            RSS_LIMIT_MIB,
            unit="MiB",
            target=1.0,
            baseline_name="the limit",
            note="the limit is set for RSS after 1,000 declares, not measured here",
        ),
    ]


def figures(args: BenchArgs) -> list[Figure]:
    runs = 3 if args.quick else max(5, args.rounds)
    bare = [sys.executable, "-c", "pass"]
    out: list[Figure] = []
    for label, argv in (
        ("incidentbot --version", [*CLI, "--version"]),
        ("incidentbot --help", [*CLI, "--help"]),
    ):
        base, value = [], []
        for _ in range(runs):
            base.append(run_once(bare)[0])
            value.append(run_once(argv)[0])
        out.append(
            Figure(
                f"{label} (median of {runs})",
                statistics.median(value) * 1000,
                statistics.median(base) * 1000,
                baseline_name="python -c pass",
            )
        )
    return out + serve_figures(1 if args.quick else max(3, args.rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--serve-runs", type=int, default=3)
    args = parser.parse_args()

    compile_bytecode()
    bare_wall, bare_cpu = medians([sys.executable, "-c", "pass"], args.runs)
    print(_line("python -c pass", bare_wall, bare_cpu))
    for label, argv in (
        ("incidentbot --version", [*CLI, "--version"]),
        ("incidentbot --help", [*CLI, "--help"]),
    ):
        wall, cpu = medians(argv, args.runs)
        ratio = f"  ({wall / bare_wall:.1f}x the bare interpreter, {cpu / bare_cpu:.1f}x its cpu)"
        print(_line(label, wall, cpu) + ratio)
    if args.serve_runs:
        sandbox = SlackSandbox().start()
        try:
            results = [serve_twice(sandbox) for _ in range(args.serve_runs)]
        finally:
            sandbox.stop()
        for index, label in ((0, "serve ready, first start"), (1, "serve ready, later start")):
            wall = statistics.median(r[index][0] for r in results)
            cpu = statistics.median(r[index][1] for r in results)
            rss = statistics.median(r[index][2] for r in results)
            waited = statistics.median(r[index][3] for r in results)
            print(_line(label, wall, cpu) + f"  RSS {rss:.0f} MiB, {waited * 1000:.0f} ms waited")


if __name__ == "__main__":
    main()
