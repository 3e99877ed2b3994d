"""``shell.exec``: run one allow-listed program with an argument list (never through a shell).

Only programs listed in ``runbooks.shell_allow`` may run. An entry is a program name
(``systemctl``: runs as found on the bot's ``PATH``; an absolute path given in ``argv`` is
accepted when it is that name in one of the ``PATH`` directories) or an absolute path
(``/usr/local/bin/geth-ctl``: ``argv`` may give the path or its bare name, and that very file
runs). The process gets a minimal environment (``PATH``, ``HOME``, ``LANG``) plus ``env``, runs
in its own process group, and the whole group is killed when the timeout passes or the run is
stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown, truncate_bytes
from incidentbot.runbooks.actions.base import Action, ActionContext

OUTPUT_LIMIT = 16 * 1024  # bytes of stdout and of stderr kept
TAIL = 4096  # bytes of the end of stderr kept for the error message
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
POLL = 0.05


class ShellExecInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = 60.0
    check: bool = True

    @field_validator("argv", mode="before")
    @classmethod
    def _not_a_shell_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                example = json.dumps(shlex.split(value))
            except ValueError:
                example = '["systemctl", "restart", "geth"]'
            raise ValueError(
                "argv must be a list of arguments, not a shell string: "
                f"write {example} (no shell runs, so pipes, globs and $VARS are not expanded)"
            )
        return value

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("argv[0], the program to run, is empty")
        if any("\0" in arg for arg in value):
            raise ValueError("arguments must not contain NUL characters")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not key or "=" in key or "\0" in key or "\0" in item:
                raise ValueError(f"{key!r} is not a valid environment variable name or value")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the timeout must be longer than 0 seconds")
        return value


def search_path() -> str:
    """The PATH programs are looked up in (the bot's own, not the step's ``env``)."""
    return os.environ.get("PATH") or os.defpath


def allowed_program(program: str, allow: list[str], path: str) -> str | None:
    """The program to execute for ``argv[0] == program`` if ``allow`` permits it: the
    allow-list entry when it is a path, ``program`` otherwise; None when not allowed. Pure
    string comparison (no file system access)."""
    dirs = {os.path.normpath(d) for d in path.split(os.pathsep) if d}
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        if "/" in entry:
            if os.path.normpath(program) == os.path.normpath(entry) or (
                "/" not in program and program == os.path.basename(entry)
            ):
                return entry
        elif program == entry or (
            os.path.isabs(program)
            and os.path.basename(program) == entry
            and os.path.normpath(os.path.dirname(program)) in dirs
        ):
            return program
    return None


def refusal(program: str, settings: Any) -> str | None:
    """Why ``program`` may not run under ``settings`` (None: it may)."""
    runbooks = getattr(settings, "runbooks", None)
    allow = list(getattr(runbooks, "shell_allow", None) or [])
    if allowed_program(program, allow, search_path()) is None:
        return _not_allowed(program)
    return None


def _not_allowed(program: str) -> str:
    return f"{program!r} is not allowed: add it to runbooks.shell_allow"


class _Capture:
    """Reads a pipe to its end, keeping the first OUTPUT_LIMIT bytes and the last TAIL."""

    def __init__(self, stream: Any) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._stream = stream
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        fd = self._stream.fileno()
        try:
            while chunk := os.read(fd, 65536):
                self.total += len(chunk)
                room = OUTPUT_LIMIT - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                self.tail += chunk
                del self.tail[:-TAIL]
        except OSError:
            pass

    def close(self) -> None:
        self._stream.close()

    def text(self) -> str:
        return truncate_bytes(bytes(self.head), OUTPUT_LIMIT, self.total)

    def last_line(self) -> str:
        lines = bytes(self.tail).decode("utf-8", errors="replace").splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # The leader is gone; make sure nothing it started lingers in the group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


class ShellExec(Action):
    name = "shell.exec"
    description = (
        "Run an allow-listed program (runbooks.shell_allow) with an argument list; no shell."
    )
    idempotent = False
    Inputs = ShellExecInputs
    outputs: ClassVar[dict[str, str]] = {
        "exit_code": "the program's exit status (negative: killed by that signal)",
        "stdout": f"what it printed (at most {OUTPUT_LIMIT // 1024} KiB, secrets masked)",
        "stderr": f"its error output (at most {OUTPUT_LIMIT // 1024} KiB, secrets masked)",
    }

    def plan(self, inputs: ShellExecInputs, ctx: ActionContext) -> str:
        where = f" in {inputs.cwd}" if inputs.cwd else ""
        line = f"run: {shlex.join(inputs.argv)}{where} (timeout {fmt_seconds(inputs.timeout)})"
        why = refusal(inputs.argv[0], ctx.services.settings)
        if why:
            line += f" — would be refused: {why}"
        return shown(ctx, line)

    def run(self, inputs: ShellExecInputs, ctx: ActionContext) -> dict[str, Any]:
        program = inputs.argv[0]
        runbooks = getattr(ctx.services.settings, "runbooks", None)
        allow = list(getattr(runbooks, "shell_allow", None) or [])
        path = search_path()
        chosen = allowed_program(program, allow, path)
        if chosen is None:
            raise PermanentError(_not_allowed(program))
        executable = chosen if os.path.isabs(chosen) else shutil.which(chosen, path=path)
        if executable is None or not os.path.exists(executable):
            raise PermanentError(f"{program!r} was not found (searched {path})")
        if inputs.cwd is not None and not os.path.isdir(inputs.cwd):
            raise PermanentError(shown(ctx, f"working directory {inputs.cwd!r} does not exist"))
        env = {"PATH": path, "HOME": os.environ.get("HOME", "/"), "LANG": "C.UTF-8"}
        env.update(inputs.env)
        try:
            proc = subprocess.Popen(
                inputs.argv,
                executable=executable,
                cwd=inputs.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise PermanentError(shown(ctx, f"{program!r} could not start: {exc}")) from None
        out, err = _Capture(proc.stdout), _Capture(proc.stderr)
        deadline = time.monotonic() + inputs.timeout
        ended_by: str | None = None
        try:
            while True:
                try:
                    proc.wait(timeout=POLL)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if ctx.should_stop():
                    ended_by = "stopped"
                elif time.monotonic() >= deadline:
                    ended_by = "timeout"
                if ended_by:
                    _kill_group(proc)
                    break
        finally:
            if proc.returncode is None:  # interrupted by an exception: leave nothing running
                _kill_group(proc)
            for capture in (out, err):
                capture.thread.join(timeout=1.0)
                # A reader still blocked means something the program started in the
                # background holds the pipe: leave it to finish on its own (closing the file
                # under a blocked read could hand its number to an unrelated file).
                if not capture.thread.is_alive():
                    capture.close()
        code = proc.returncode
        last = shown(ctx, err.last_line())
        detail = f": {last}" if last else ""
        if ended_by == "timeout":
            raise OutcomeUnknownError(
                f"{program!r} did not finish within {fmt_seconds(inputs.timeout)} and was "
                f"killed{detail}"
            )
        if ended_by == "stopped":
            raise OutcomeUnknownError(f"{program!r} was killed before it finished (run stopped)")
        if inputs.check and code != 0:
            if code < 0:
                raise PermanentError(f"{program!r} was killed by {_signal_name(-code)}{detail}")
            raise PermanentError(f"{program!r} exited with code {code}{detail}")
        return {
            "exit_code": code,
            "stdout": shown(ctx, out.text()),
            "stderr": shown(ctx, err.text()),
        }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
