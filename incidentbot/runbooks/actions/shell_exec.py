"""``shell.exec``: run one allow-listed program with an argument list (never through a shell).

Only programs listed in ``runbooks.shell_allow`` may run. An entry is a program name
(``systemctl``: runs as found in ``runbooks.shell_path``; an absolute path given in ``argv`` is
accepted when it is that name in one of those directories) or an absolute path
(``/usr/local/bin/geth-ctl``: ``argv`` may give the path or its bare name, and that very file
runs). The name is resolved to an absolute path once, before the program starts, and that path
is what runs. The program runs in the sandbox of :mod:`.shell_sandbox`: a fixed environment
plus ``env`` (variables the loader, interpreters, shells or common tools read to run code are
refused when the inputs are validated), resource limits, a fresh directory of its own, and
its own process group, killed as a whole at the timeout or when the run is stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions import shell_sandbox
from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.shell_policy import (
    DEFAULT_SHELL_PATH,
    ShellLimits,
    find_program,
    format_size,
    not_in_allowed_env,
    refused_variable,
)

OUTPUT_LIMIT = shell_sandbox.KEEP


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

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str | None) -> str | None:
        if value is not None and (not os.path.isabs(value) or "\0" in value):
            raise ValueError(
                f"cwd {value!r} must be an absolute path (without cwd the program runs in a "
                "fresh directory of its own)"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            why = refused_variable(key)
            if why:
                # Not a ValueError: its message would read "Value error, ..." in refusals.
                raise PydanticCustomError("refused_variable", "{why}", {"why": why})
            if "\0" in item:
                raise ValueError(f"the value of env {key} must not contain NUL characters")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the timeout must be longer than 0 seconds")
        return value


def _runbook_settings(settings: Any) -> Any:
    return getattr(settings, "runbooks", None)


def shell_path(settings: Any) -> list[str]:
    """The directories allow-listed names are looked up in (``runbooks.shell_path``): never
    the bot's own ``PATH`` nor the step's ``env``."""
    return list(getattr(_runbook_settings(settings), "shell_path", None) or DEFAULT_SHELL_PATH)


def shell_limits(settings: Any) -> ShellLimits:
    limits = getattr(_runbook_settings(settings), "shell_limits", None)
    return limits if isinstance(limits, ShellLimits) else ShellLimits()


def allowed_program(program: str, allow: list[str], dirs: Iterable[str]) -> str | None:
    """The program to execute for ``argv[0] == program`` if ``allow`` permits it: the
    allow-list entry when it is a path, ``program`` otherwise; None when not allowed. Pure
    string comparison (no file system access)."""
    normalised = {os.path.normpath(d) for d in dirs if d}
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
            and os.path.normpath(os.path.dirname(program)) in normalised
        ):
            return program
    return None


def refusal(program: str, settings: Any, env: Iterable[str] = ()) -> str | None:
    """Why ``program`` (with the variables ``env``) may not run under ``settings`` (None: it
    may). Pure: reads no file."""
    runbooks = _runbook_settings(settings)
    allow = list(getattr(runbooks, "shell_allow", None) or [])
    if allowed_program(program, allow, shell_path(settings)) is None:
        return _not_allowed(program)
    return not_in_allowed_env(list(env), getattr(runbooks, "shell_env", None))


def resolve(program: str, settings: Any) -> str:
    """The absolute path that runs for ``argv[0] == program`` (PermanentError if it is not
    allowed or not found). Looked up once, here; the program is started by this path."""
    dirs = shell_path(settings)
    allow = list(getattr(_runbook_settings(settings), "shell_allow", None) or [])
    chosen = allowed_program(program, allow, dirs)
    if chosen is None:
        raise PermanentError(_not_allowed(program))
    executable = chosen if os.path.isabs(chosen) else find_program(chosen, dirs)
    if executable is None:
        searched = os.pathsep.join(dirs)
        raise PermanentError(
            f"{program!r} was not found (searched {searched}: runbooks.shell_path)"
        )
    if not os.path.isfile(executable) or not os.access(executable, os.X_OK):
        raise PermanentError(f"{program!r} was not found: {executable} is not an executable file")
    return executable


def _not_allowed(program: str) -> str:
    return f"{program!r} is not allowed: add it to runbooks.shell_allow"


class ShellExec(Action):
    name = "shell.exec"
    description = (
        "Run an allow-listed program (runbooks.shell_allow) with an argument list; no shell, "
        "a fixed environment, resource limits."
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
        why = refusal(inputs.argv[0], ctx.services.settings, inputs.env)
        if why:
            line += f" — would be refused: {why}"
        return shown(ctx, line)

    def describe(self, outputs: dict[str, Any]) -> str:
        code = outputs.get("exit_code")
        if code == 0:
            return "The command exited 0"
        if isinstance(code, int) and code < 0:
            return f"The command was killed by signal {-code}"
        return f"The command exited {code}"

    def run(self, inputs: ShellExecInputs, ctx: ActionContext) -> dict[str, Any]:
        program = inputs.argv[0]
        settings = ctx.services.settings
        why = refusal(program, settings, inputs.env)
        if why:
            raise PermanentError(why)
        executable = resolve(program, settings)
        if inputs.cwd is not None and not os.path.isdir(inputs.cwd):
            raise PermanentError(shown(ctx, f"working directory {inputs.cwd!r} does not exist"))
        limits = shell_limits(settings)
        done = shell_sandbox.run(
            executable,
            inputs.argv,
            env=inputs.env,
            shell_path=shell_path(settings),
            limits=limits,
            timeout=inputs.timeout,
            should_stop=ctx.should_stop,
            cwd=inputs.cwd,
        )
        if done.start_error:
            raise PermanentError(shown(ctx, f"{program!r} could not start: {done.start_error}"))
        last = shown(ctx, done.last_error_line)
        detail = f": {last}" if last else ""
        if done.ended_by == "timeout":
            raise OutcomeUnknownError(
                f"{program!r} did not finish within {fmt_seconds(inputs.timeout)} and was "
                f"killed{detail}"
            )
        if done.ended_by == "stopped":
            raise OutcomeUnknownError(f"{program!r} was killed before it finished (run stopped)")
        if done.ended_by == "output":
            raise PermanentError(
                f"{program!r} printed more than {format_size(limits.output)} "
                "(runbooks.shell_limits.output) and was killed"
            )
        code = done.code
        limit = shell_sandbox.LIMIT_SIGNALS.get(-code) if code < 0 else None
        if limit == "cpu":
            raise PermanentError(
                f"{program!r} was killed by SIGXCPU: it used more than {limits.cpu}s of CPU "
                "time (runbooks.shell_limits.cpu)"
            )
        if limit == "file_size":
            raise PermanentError(
                f"{program!r} was killed by SIGXFSZ: it wrote a file larger than "
                f"{format_size(limits.file_size)} (runbooks.shell_limits.file_size)"
            )
        if inputs.check and code != 0:
            if code < 0:
                raise PermanentError(f"{program!r} was killed by {_signal_name(-code)}{detail}")
            raise PermanentError(f"{program!r} exited with code {code}{detail}")
        return {
            "exit_code": code,
            "stdout": shown(ctx, done.stdout),
            "stderr": shown(ctx, done.stderr),
        }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
