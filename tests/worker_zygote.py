"""Ledger workers and bots for kill tests, forked from one process that imported the bot once.

Starting ``incidentbot worker`` or ``incidentbot serve`` costs a Python start and every import
(seconds on a loaded machine); a kill matrix starts dozens. :class:`Zygote` runs
``python -m tests.worker_zygote``, which imports the bot and then, single-threaded, forks a
fresh process per request: the child gets its own environment, working directory and log file
and runs the command it is given (so it opens its own database engine, threads and sockets).
The test SIGKILLs a child by its pid.

``LEDGER_HARNESS_PAUSE_AFTER`` in a child's environment stops it after a step, as it stops a
process that imported ``tests.ledger_harness`` with it set.

A child stops dead (blocks until killed, after printing ``PAUSED run=<id> step=<n> at=<what>``)
at the points ``ZYGOTE_PAUSE`` names (of the steps ``ZYGOTE_PAUSE_STEPS`` numbers, or all),
each point at most once across all children sharing ``ZYGOTE_PAUSE_DIR``:

- ``started``: right after a step was marked started (committed), before its side effect;
- ``remembered``: right after a step kept what it read before its first attempt (committed),
  before its side effect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class Zygote:
    """The forking process, driven over its stdin/stdout."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
        env.pop("LEDGER_HARNESS_PAUSE_AFTER", None)  # for the children to set, each its own
        env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_zygote"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._ask({"op": "ping"})

    def _ask(self, request: dict[str, Any]) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the worker zygote died (exit {self.proc.poll()})")
        return line.strip()

    def spawn(
        self, env: dict[str, str], log: Path, argv: list[str], cwd: Path | None = None
    ) -> Child:
        request = {"op": "spawn", "env": env, "log": str(log), "argv": argv}
        if cwd is not None:
            request["cwd"] = str(cwd)
        pid = int(self._ask(request))
        return Child(self, pid, log)

    def poll(self, pid: int) -> int | None:
        """The child's exit code once it has ended (it is reaped then), else None."""
        answer = self._ask({"op": "poll", "pid": pid})
        return None if answer == "running" else int(answer)

    def reap(self, pid: int) -> int:
        return int(self._ask({"op": "reap", "pid": pid}))

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class Child:
    """One forked worker process."""

    def __init__(self, zygote: Zygote, pid: int, log: Path):
        self.zygote = zygote
        self.pid = pid
        self.log_path = log
        self.exit: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def paused(self) -> str | None:
        marker = "PAUSED "
        found = [line for line in self.log().splitlines() if line.startswith(marker)]
        return found[-1] if found else None

    def kill(self) -> int:
        if self.exit is None:
            os.kill(self.pid, signal.SIGKILL)
            self.exit = self.zygote.reap(self.pid)
        return self.exit

    def poll(self) -> int | None:
        if self.exit is None:
            self.exit = self.zygote.poll(self.pid)
        return self.exit


# -- the forking process -------------------------------------------------------------------------


def _install_pauses(points: list[str], folder: Path) -> None:
    """In the child: stop dead at the named points, each (run, step, point) once."""
    from incidentbot import ledger
    from incidentbot.runbooks import executor

    steps = {int(n) for n in os.environ.get("ZYGOTE_PAUSE_STEPS", "").split(",") if n}

    def once(what: str, run_id: int, index: int) -> None:
        if steps and index + 1 not in steps:
            return
        marker = folder / f"{what}-{run_id}-{index}"
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return
        print(f"PAUSED run={run_id} step={index + 1} at={what}", file=sys.stderr, flush=True)
        threading.Event().wait()  # until SIGKILL

    if "started" in points:

        def on_started(ev: ledger.LedgerEvent) -> None:
            if ev.kind == "step.started" and ev.step_index is not None:
                once("started", ev.run_id, ev.step_index)

        ledger.subscribe(on_started)

    if "remembered" in points:
        original = executor.RunbookActions._remember

        def remember(self: Any, ctx: Any, *args: Any) -> Any:
            kept = original(self, ctx, *args)
            if kept is not None:
                once("remembered", ctx.run_id, ctx.step_index)
            return kept

        executor.RunbookActions._remember = remember  # type: ignore[method-assign]


def _child(request: dict[str, Any]) -> None:
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("cwd"):
        os.chdir(request["cwd"])
    sys.stdin.close()
    code = 1
    try:
        pause = os.environ.get("ZYGOTE_PAUSE", "")
        if pause:
            _install_pauses(pause.split(","), Path(os.environ["ZYGOTE_PAUSE_DIR"]))
        after = os.environ.get("LEDGER_HARNESS_PAUSE_AFTER")
        if after:
            from tests import ledger_harness

            ledger_harness._install_pause(after)
        from incidentbot.cli import main

        code = main(request["argv"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve() -> int:
    import tests.ledger_harness  # noqa: F401 - what a worker imports anyway
    from incidentbot import cli  # noqa: F401 - every import paid once, here
    from incidentbot.bot import Bot  # noqa: F401 - and what ``serve`` imports

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "ping":
            answer = "ok"
        elif op == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer = str(pid)
        elif op == "reap":
            _, status = os.waitpid(int(request["pid"]), 0)
            answer = str(os.waitstatus_to_exitcode(status))
        elif op == "poll":
            pid, status = os.waitpid(int(request["pid"]), os.WNOHANG)
            answer = "running" if pid == 0 else str(os.waitstatus_to_exitcode(status))
        else:
            answer = f"unknown op {op!r}"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
