"""How fast the command line starts: ``incidentbot --version`` and ``--help`` against the bare
interpreter (``python -c pass``), and ``incidentbot serve`` until ``/healthz`` answers against
``python -c "import slack_bolt"`` (the least a Slack bot built on Bolt imports), with the
resident memory of ``serve`` at that moment.

Each command runs several times, interleaved with its baseline; the medians are compared (wall
time; the CPU time of the process is printed too). ``serve`` runs on a fresh SQLite database
against the local Slack server; its CPU time and RSS are read from /proc when /healthz first
answers 200. The code measured is the one the child processes import (set PYTHONPATH to
measure another checkout).

    bench/run cli_startup
    python bench/cli_startup.py [--runs 10] [--serve-runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import BenchArgs, Figure
from incidentbot.sandbox.slack.server import SlackSandbox

CLI = [sys.executable, "-m", "incidentbot.cli"]
BOLT = [sys.executable, "-c", "import slack_bolt"]
SERVE_TARGET = 3.0  # serve ready at most 3x `import slack_bolt` (and under 1.5 s)
RSS_LIMIT_MIB = 120.0


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``argv``."""
    cpu = _cpu_children()
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu_children() - cpu


def medians(argv: list[str], runs: int) -> tuple[float, float]:
    walls, cpus = zip(*(run_once(argv) for _ in range(runs)), strict=True)
    return statistics.median(walls), statistics.median(cpus)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve_ready(tmp: Path, sandbox: SlackSandbox) -> tuple[float, float, float]:
    """(wall s, cpu s, RSS MiB) from starting ``serve`` to the first 200 from /healthz."""
    port = _free_port()
    env = {
        **os.environ,
        "INCIDENTBOT_DATABASE_URL": f"sqlite:///{tmp}/serve.db",
        "INCIDENTBOT_SLACK_BOT_TOKEN": sandbox.bot_token,
        "INCIDENTBOT_SLACK_SIGNING_SECRET": sandbox.signing_secret,
        "INCIDENTBOT_SLACK__API_URL": sandbox.base_url,
        "INCIDENTBOT_HTTP__PORT": str(port),
        "INCIDENTBOT_LOG_LEVEL": "WARNING",
    }
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=1) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        wall = time.perf_counter() - start
                        return wall, _proc_cpu(proc.pid), _proc_rss_mib(proc.pid)
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"incidentbot serve exited with {proc.returncode}")
                if time.perf_counter() - start > 60:
                    raise RuntimeError("incidentbot serve did not answer /healthz within 60 s")
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _line(label: str, wall: float, cpu: float) -> str:
    return f"{label:<25} wall {wall * 1000:6.0f} ms  cpu {cpu * 1000:6.0f} ms"


def serve_figures(runs: int) -> list[Figure]:
    """``serve`` ready against ``import slack_bolt``, interleaved; and its RSS when ready."""
    sandbox = SlackSandbox().start()
    served, bolt = [], []
    try:
        for _ in range(runs):
            bolt.append(run_once(BOLT)[0])
            with tempfile.TemporaryDirectory() as tmp:
                served.append(serve_ready(Path(tmp), sandbox))
    finally:
        sandbox.stop()
    wall = statistics.median(r[0] for r in served) * 1000
    cpu = statistics.median(r[1] for r in served) * 1000
    rss = statistics.median(r[2] for r in served)
    return [
        Figure(
            f"serve to /healthz ready (median of {runs})",
            wall,
            statistics.median(bolt) * 1000,
            target=SERVE_TARGET,
            baseline_name="python -c 'import slack_bolt'",
            note=f"{cpu:.0f} ms CPU; the target also asks for under 1.5 s",
        ),
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
            results = []
            for _ in range(args.serve_runs):
                with tempfile.TemporaryDirectory() as tmp:
                    results.append(serve_ready(Path(tmp), sandbox))
        finally:
            sandbox.stop()
        wall = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        rss = statistics.median(r[2] for r in results)
        print(_line("serve to /healthz ready", wall, cpu) + f"  RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
