"""`incidentbot serve` in a process of its own (its own GIL), against the local Slack server.

Shared by the benchmarks that measure the bot as deployed rather than in-process.

As deployed (the container image installs a wheel, and pip compiles its bytecode), the bot's
modules load from ``.pyc`` files; a source checkout run with ``PYTHONDONTWRITEBYTECODE`` would
compile every module on each start instead. :func:`bot_env` therefore points the children at a
bytecode cache of their own (``PYTHONPYCACHEPREFIX``, outside the checkout) filled once by
:func:`compile_bytecode`, as the third-party packages they import already are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from incidentbot.sandbox.slack.server import SlackSandbox

CLI = [sys.executable, "-m", "incidentbot.cli"]
PYCACHE = Path(tempfile.gettempdir()) / "incidentbot-bench-pycache"
PACKAGE = Path(__file__).resolve().parent.parent / "incidentbot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compiled_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the bytecode cache of :func:`compile_bytecode` (writes allowed)."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return out


def compile_bytecode() -> None:
    """Compile the bot's modules into :data:`PYCACHE` (as a wheel install does)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(PACKAGE)],
        env=compiled_env(dict(os.environ)),
        check=True,
        capture_output=True,
    )


def bot_env(sandbox: SlackSandbox, database_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of ``serve`` against ``sandbox`` (HTTP mode) on ``port``."""
    return compiled_env(
        {
            **os.environ,
            "INCIDENTBOT_DATABASE_URL": database_url,
            "INCIDENTBOT_SLACK_BOT_TOKEN": sandbox.bot_token,
            "INCIDENTBOT_SLACK_SIGNING_SECRET": sandbox.signing_secret,
            "INCIDENTBOT_SLACK__API_URL": sandbox.base_url,
            "INCIDENTBOT_HTTP__PORT": str(port),
            "INCIDENTBOT_LOG_LEVEL": "WARNING",
            **extra,
        }
    )


def upgrade(env: dict[str, str]) -> None:
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)


def wait_ready(proc: subprocess.Popen[bytes], base: str, began: float, limit: float = 120) -> float:
    """Seconds from ``began`` (perf_counter) to the first 200 from ``/healthz``."""
    with httpx.Client(timeout=5) as client:
        while True:
            try:
                if client.get(f"{base}/healthz").status_code == 200:
                    return time.perf_counter() - began
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"incidentbot serve exited with {proc.returncode}")
            if time.perf_counter() - began > limit:  # a loaded machine starts slowly
                raise RuntimeError(f"incidentbot serve did not answer /healthz within {limit} s")
            time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def serving(
    sandbox: SlackSandbox, database_url: str, **env_extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """Start ``serve`` (database upgraded first); yield (process, base URL, seconds from its
    start to the first 200 from /healthz). The sandbox's driver sends to it; SIGTERM at the end.

    Unless ``INCIDENTBOT_DATA_DIR`` is given, the data directory is a new empty one: the start
    is a first one (the runbook check results kept there are not yet), and nothing is written
    into the checkout."""
    with contextlib.ExitStack() as stack:
        if "INCIDENTBOT_DATA_DIR" not in env_extra:
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="incidentbot-data-"))
            env_extra = {**env_extra, "INCIDENTBOT_DATA_DIR": data}
        port = free_port()
        env = bot_env(sandbox, database_url, port, **env_extra)
        upgrade(env)
        base = f"http://127.0.0.1:{port}"
        began = time.perf_counter()
        proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=subprocess.DEVNULL)
        try:
            ready = wait_ready(proc, base, began)
            sandbox.driver.bot_url = f"{base}/slack/events"
            yield proc, base, ready
        finally:
            stop(proc)


@contextmanager
def served_bot(database_url: str, **env_extra: str) -> Iterator[tuple[SlackSandbox, str]]:
    """Yield (the Slack sandbox wired to the bot, the bot's base URL); SIGTERM at the end."""
    compile_bytecode()
    sandbox = SlackSandbox().start()
    try:
        with serving(sandbox, database_url, **env_extra) as (_proc, base, _ready):
            yield sandbox, base
    finally:
        sandbox.stop()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_waited(pid: int) -> float:
    """Seconds the threads of ``pid`` still alive spent ready to run but waiting for a CPU
    (the kernel's run-queue delay, /proc/PID/task/*/schedstat): on a loaded machine, where
    the wall time goes beyond the CPU time."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def proc_rss_mib(pid: int) -> float:
    """Resident memory of the process ``pid`` now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
