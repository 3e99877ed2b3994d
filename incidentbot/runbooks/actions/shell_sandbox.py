"""Running one ``shell.exec`` program in its sandbox: fixed environment, limits, its own
directory, its own session.

The program is started through a small trampoline: the bot's own Python in isolated mode
(``-I -S``: no ``PYTHON*`` variable, no site packages) sets the resource limits and then
``execve``-s the program's absolute path with the environment given, so nothing runs between
``fork`` and ``exec`` in the bot's process (``preexec_fn`` is not safe in a process with
threads: the child can deadlock on a lock another thread held). The program runs in a session
and process group of its own, in a fresh temporary directory that is removed afterwards with
everything in it; when its leader ends, the timeout passes, the run is stopped or the output
passes its limit, the whole group is killed.

This is a set of limits, not a container: the program sees the file system and the network
as the bot's user does (see docs/runbooks.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from incidentbot.runbooks.actions._common import truncate_bytes
from incidentbot.runbooks.shell_policy import ShellLimits, refused_variable

KEEP = 16 * 1024  # bytes of stdout and of stderr kept for the step's outputs
TAIL = 4096  # bytes of the end of stderr kept for the error message
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
POLL = 0.05
START_FAILED = "incidentbot shell.exec:"  # the trampoline's own error lines start so

# Runs in the child, in place of the bot, before the program: sets the limits, then becomes
# the program. argv: limits (JSON), the program's absolute path, the program's argv.
TRAMPOLINE = f"""
import json, os, resource, signal, sys
spec, program, argv = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
def tasks():
    uid, count = os.getuid(), 0
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat("/proc/" + pid).st_uid == uid:
                count += len(os.listdir("/proc/" + pid + "/task"))
        except OSError:
            pass
    return count
try:
    rlimits = [(getattr(resource, n), s, h) for n, s, h in spec["rlimits"]]
    if os.getuid() != 0:  # root is not held by RLIMIT_NPROC
        more = tasks() + spec["processes"]
        rlimits.append((resource.RLIMIT_NPROC, more, more))
    for which, soft, hard in rlimits:
        now = resource.getrlimit(which)[1]
        if now != resource.RLIM_INFINITY:
            soft, hard = min(soft, now), min(hard, now)
        resource.setrlimit(which, (soft, hard))
    # Python ignores these two, and an ignored signal stays ignored across exec.
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    os.execve(program, argv, dict(os.environ))
except OSError as exc:
    sys.stderr.write({START_FAILED!r} + " cannot start " + program + ": " + exc.strerror + "\\n")
    sys.stderr.flush()
    os._exit(127)
"""


def rlimits(limits: ShellLimits) -> list[tuple[str, int, int]]:
    """``(RLIMIT_name, soft, hard)`` for ``limits``. CPU: SIGXCPU at the limit, SIGKILL a
    second later; no core files (a core holds the program's memory, secrets included)."""
    return [
        ("RLIMIT_CPU", limits.cpu, limits.cpu + 1),
        ("RLIMIT_AS", limits.memory, limits.memory),
        ("RLIMIT_FSIZE", limits.file_size, limits.file_size),
        ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
        ("RLIMIT_CORE", 0, 0),
    ]


class _Capture:
    """Reads a pipe to its end, keeping the first KEEP bytes and the last TAIL; ``budget``
    (shared by stdout and stderr) is set once the program printed more than its limit."""

    def __init__(self, stream: Any, budget: _Budget) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._stream = stream
        self._budget = budget
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        fd = self._stream.fileno()
        try:
            while chunk := os.read(fd, 65536):
                self.total += len(chunk)
                self._budget.spend(len(chunk))
                room = KEEP - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                self.tail += chunk
                del self.tail[:-TAIL]
        except OSError:
            pass

    def close(self) -> None:
        self._stream.close()

    def text(self) -> str:
        return truncate_bytes(bytes(self.head), KEEP, self.total)

    def last_line(self) -> str:
        lines = bytes(self.tail).decode("utf-8", errors="replace").splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = threading.Event()
        self._lock = threading.Lock()

    def spend(self, count: int) -> None:
        with self._lock:
            self.used += count
            if self.used > self.limit:
                self.exceeded.set()


@dataclass
class Finished:
    """How the program ended. ``ended_by``: None (it exited), ``timeout``, ``stopped`` (the
    run was stopped) or ``output`` (it printed more than its limit)."""

    code: int
    ended_by: str | None
    stdout: str
    stderr: str
    last_error_line: str
    start_error: str | None = None  # the program could not be started (and why)


def base_environment(shell_path: list[str], workdir: str) -> dict[str, str]:
    """What every program gets before the step's ``env``."""
    return {
        "PATH": os.pathsep.join(shell_path),
        "HOME": os.environ.get("HOME") or "/",
        "LANG": "C.UTF-8",
        "TMPDIR": workdir,
    }


def run(
    executable: str,
    argv: list[str],
    *,
    env: dict[str, str],
    shell_path: list[str],
    limits: ShellLimits,
    timeout: float,
    should_stop: Callable[[], bool],
    cwd: str | None = None,
) -> Finished:
    """Run ``executable`` (an absolute path) with ``argv`` in the sandbox and wait for it."""
    for name in env:  # validated with the step's inputs; checked again for other callers
        why = refused_variable(name)
        if why:
            raise ValueError(why)
    spec = json.dumps({"rlimits": rlimits(limits), "processes": limits.processes})
    # A fresh 0700 directory per step, removed after it (whatever the program left there).
    with tempfile.TemporaryDirectory(
        prefix="incidentbot-step-", ignore_cleanup_errors=True
    ) as workdir:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", TRAMPOLINE, spec, executable, *argv],
                cwd=cwd or workdir,
                env={**base_environment(shell_path, workdir), **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return Finished(-1, None, "", "", "", start_error=exc.strerror or str(exc))
        return _wait(proc, limits, timeout, should_stop)


def _wait(
    proc: subprocess.Popen[bytes],
    limits: ShellLimits,
    timeout: float,
    should_stop: Callable[[], bool],
) -> Finished:
    """Capture the program's output until it ends, overflows, is stopped or times out; then
    kill whatever its process group left behind."""
    budget = _Budget(limits.output)
    out, err = _Capture(proc.stdout, budget), _Capture(proc.stderr, budget)
    deadline = time.monotonic() + timeout
    ended_by: str | None = None
    try:
        while True:
            try:
                proc.wait(timeout=POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            if budget.exceeded.is_set():
                ended_by = "output"
            elif should_stop():
                ended_by = "stopped"
            elif time.monotonic() >= deadline:
                ended_by = "timeout"
            if ended_by:
                kill_group(proc)
                break
    finally:
        if proc.returncode is None:  # interrupted by an exception: leave nothing running
            kill_group(proc)
        # What the program started and left behind dies with it: the step is over.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for capture in (out, err):
            capture.thread.join(timeout=1.0)
            # A reader still blocked means something outside the group (it left with a
            # session of its own) holds the pipe: leave it (closing the file under a blocked
            # read could hand its number to an unrelated file).
            if not capture.thread.is_alive():
                capture.close()
    if ended_by is None and budget.exceeded.is_set():
        ended_by = "output"
    code = proc.returncode
    last = err.last_line()
    start_error = None
    if code == 127 and last.startswith(START_FAILED):
        start_error = last.removeprefix(START_FAILED).strip()
    return Finished(code, ended_by, out.text(), err.text(), last, start_error)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the program's process group, SIGKILL it after KILL_GRACE seconds."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# A death by one of these signals is a limit reached (the setting's name under shell_limits).
LIMIT_SIGNALS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}
