"""``systemd.restart``: restart a systemd unit on this host or, over SSH, on another.

Runs ``systemctl restart <unit>`` (locally), or ``ssh <options> <host> systemctl restart
<unit>``, then ``systemctl show -p ActiveState,SubState,MainPID,ExecMainStartTimestamp
<unit>`` the same way, and reports what systemd says. Both are argument lists run through
``shell.exec`` (no local shell; the program that runs here, ``systemctl`` or ``ssh``, must
be in ``runbooks.shell_allow``). SSH hands the remote command to the remote user's shell,
so the unit name is held to characters no shell treats specially, and SSH options are
checked against a list (options that run local or remote commands are refused).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError, RetryableError
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.shell_exec import ShellExec, ShellExecInputs, refusal
from incidentbot.runbooks.actions.web3._util import Timeout

SHOW_PROPERTIES = ("ActiveState", "SubState", "MainPID", "ExecMainStartTimestamp")
# A unit name: what systemd allows minus the backslash escapes (``\x2d``), which a remote
# shell would interpret. The type suffix may be left out (systemctl adds ``.service``).
_UNIT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,249}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}@)?[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")
# ssh options taking a value (``-p 2222`` or ``-p2222``) and flags, as allowed here.
_SSH_VALUE = frozenset("ocipJlFmbS")
_SSH_FLAGS = frozenset("46qvTnCxak")
# -o settings refused: they run commands, locally or in place of ours.
_SSH_REFUSED = frozenset(
    {"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "remotecommand"}
)
# ssh's own exit status (255) with these words: the connection was never made.
_NOT_CONNECTED = (
    "connection refused",
    "connection timed out",
    "no route to host",
    "network is unreachable",
    "operation timed out",
)
_REFUSED_LOGIN = (
    "permission denied",
    "host key verification failed",
    "could not resolve hostname",
    "name or service not known",
    "too many authentication failures",
)


def check_ssh_options(options: list[str]) -> list[str]:
    """``options`` if every one is an allowed ssh option (ValueError naming the first that
    is not)."""
    expect_value: str | None = None
    for option in options:
        if "\0" in option or "\n" in option:
            raise ValueError("ssh options must not contain NUL or newline characters")
        if expect_value is not None:
            if expect_value == "o":
                _check_setting(option)
            expect_value = None
            continue
        if not option.startswith("-") or option in ("-", "--"):
            raise ValueError(
                f"ssh option {option!r} is not an option; give the host in `host` "
                "(options come as ['-p', '2222'] or ['-o', 'BatchMode=yes'])"
            )
        letter, rest = option[1], option[2:]
        if letter in _SSH_VALUE:
            if rest:
                if letter == "o":
                    _check_setting(rest)
            else:
                expect_value = letter
        elif not all(c in _SSH_FLAGS for c in option[1:]):
            allowed = " ".join(f"-{c}" for c in sorted(_SSH_VALUE | _SSH_FLAGS))
            raise ValueError(f"ssh option {option!r} is not allowed here (allowed: {allowed})")
    if expect_value is not None:
        raise ValueError(f"ssh option -{expect_value} needs a value after it")
    return options


def _check_setting(setting: str) -> None:
    key = re.split(r"[\s=]", setting.strip(), maxsplit=1)[0].lower()
    if key in _SSH_REFUSED:
        raise ValueError(f"ssh option -o {key} is refused: it runs a command of its own")


class SystemdRestartInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str
    host: str | None = None
    ssh_options: list[str] = Field(default_factory=list)
    timeout: Timeout = 120.0

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        if not _UNIT.match(value):
            raise ValueError(
                f"{value!r} is not a unit name this action accepts: letters, digits and "
                "_ . : @ - (not starting with - or .), such as geth.service or "
                "lighthouse@mainnet.service"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _HOST.match(value):
            raise ValueError(
                f"{value!r} is not an SSH destination: write host or user@host (a name, an "
                "IPv4 or IPv6 address, or an ssh_config alias; no spaces, not starting with -)"
            )
        return value

    @field_validator("ssh_options")
    @classmethod
    def _ssh_options(cls, value: list[str]) -> list[str]:
        return check_ssh_options(value)

    def argv(self, *command: str) -> list[str]:
        """``command`` (a systemctl command line) as run here: itself, or through ssh."""
        if self.host is None:
            return list(command)
        return ["ssh", *self.ssh_options, self.host, *command]


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show``'s ``Key=Value`` lines."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values


def _pid(value: str | None) -> int | None:
    try:
        pid = int(value or "")
    except ValueError:
        return None
    return pid or None


class SystemdRestart(Action):
    """Restart a systemd unit, here or on ``host`` over SSH, and read its state back.

    ``systemctl restart`` waits for the unit's start job, so a unit that fails to start makes
    it exit non-zero: that fails the step with systemctl's message. An ssh failure before the
    connection was made (refused, timed out) is retryable; a refused login is permanent;
    anything else after sending is "outcome unknown"."""

    name = "systemd.restart"
    description = (
        "Restart a systemd unit (locally or over SSH) with systemctl, then report its "
        "ActiveState, SubState, MainPID and start time."
    )
    idempotent = False
    Inputs = SystemdRestartInputs
    outputs: ClassVar[dict[str, str]] = {
        "unit": "the unit",
        "host": "the SSH destination (null: this host)",
        "active_state": "ActiveState after the restart (active, activating, failed, ...)",
        "sub_state": "SubState (running, exited, dead, auto-restart, ...)",
        "main_pid": "MainPID (null when the unit has no main process)",
        "started_at": "ExecMainStartTimestamp as systemd prints it (null when never started)",
        "ok": "true when ActiveState is active",
        "command": "the restart command line that ran",
    }

    def plan(self, inputs: SystemdRestartInputs, ctx: ActionContext) -> str:
        restart = inputs.argv("systemctl", "restart", inputs.unit)
        where = f" on {inputs.host}" if inputs.host else ""
        line = (
            f"restart {inputs.unit}{where}: {shlex.join(restart)}, then systemctl show "
            f"-p {','.join(SHOW_PROPERTIES)} (timeout {fmt_seconds(inputs.timeout)} each)"
        )
        why = refusal(restart[0], ctx.services.settings)
        if why:
            line += f" — would be refused: {why}"
        return shown(ctx, line)

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        where = f" on {o['host']}" if o.get("host") else ""
        state = f"{o.get('active_state', '?')} ({o.get('sub_state', '?')})"
        return f"Restarted {o.get('unit', 'the unit')}{where}; it is {state}"

    def run(self, inputs: SystemdRestartInputs, ctx: ActionContext) -> dict[str, Any]:
        restart = inputs.argv("systemctl", "restart", inputs.unit)
        show = inputs.argv("systemctl", "show", "-p", ",".join(SHOW_PROPERTIES), inputs.unit)
        why = refusal(restart[0], ctx.services.settings)
        if why:
            raise PermanentError(why)
        result = self._exec(restart, inputs, ctx)
        if result["exit_code"] != 0:
            raise self._failure(inputs, result, "restart")
        try:
            result = self._exec(show, inputs, ctx)
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(f"{exc} (the restart itself succeeded)") from None
        if result["exit_code"] != 0:
            raise OutcomeUnknownError(
                f"{self._failure(inputs, result, 'show')} (the restart itself succeeded)"
            )
        values = parse_show(result["stdout"])
        missing = [p for p in SHOW_PROPERTIES if p not in values]
        if missing:
            raise OutcomeUnknownError(
                shown(
                    ctx,
                    f"systemctl show {inputs.unit} did not report {', '.join(missing)} "
                    f"(the restart itself succeeded); it printed: {result['stdout'][:200]!r}",
                )
            )
        return {
            "unit": inputs.unit,
            "host": inputs.host,
            "active_state": values["ActiveState"],
            "sub_state": values["SubState"],
            "main_pid": _pid(values["MainPID"]),
            "started_at": values["ExecMainStartTimestamp"] or None,
            "ok": values["ActiveState"] == "active",
            "command": shown(ctx, shlex.join(restart)),
        }

    def _exec(
        self, argv: list[str], inputs: SystemdRestartInputs, ctx: ActionContext
    ) -> dict[str, Any]:
        shell = ShellExec()
        return shell.run(ShellExecInputs(argv=argv, timeout=inputs.timeout, check=False), ctx)

    def _failure(
        self, inputs: SystemdRestartInputs, result: dict[str, Any], what: str
    ) -> Exception:
        code = result["exit_code"]
        err = result["stderr"].strip()
        last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), "")
        detail = f": {last}" if last else ""
        if inputs.host is not None and code == 255:
            lowered = err.lower()
            message = f"ssh to {inputs.host} failed (exit 255){detail}"
            if any(words in lowered for words in _NOT_CONNECTED):
                return RetryableError(f"{message}; nothing was run")
            if any(words in lowered for words in _REFUSED_LOGIN):
                return PermanentError(f"{message}; nothing was run")
            return OutcomeUnknownError(message)
        where = f" on {inputs.host}" if inputs.host else ""
        if code < 0:
            return PermanentError(f"systemctl {what} {inputs.unit}{where} was killed{detail}")
        return PermanentError(
            f"systemctl {what} {inputs.unit}{where} exited with code {code}{detail}"
        )
