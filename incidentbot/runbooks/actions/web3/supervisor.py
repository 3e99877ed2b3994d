"""``supervisor.start``, ``supervisor.stop``, ``supervisor.restart``: a node's process under
supervisord, through the XML-RPC interface on supervisord's unix socket.

Start and stop set a state (a running process is left running, a stopped one stopped), so
they are idempotent; a restart always replaces the process and is not. With ``wait`` (the
default) each waits, checking between polls whether the run was stopped, until supervisord
counts the process as started (``RUNNING``: it stayed up for its ``startsecs``) or as exited.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from incidentbot.infra.supervisor import ProcessInfo, SupervisorClient, SupervisorError
from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions._common import fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.web3._util import (
    Timeout,
    after_change,
    program_name,
    supervisor_socket,
    wait_until,
)
from incidentbot.runbooks.egress import policy_of

STOPPED_STATES = ("STOPPED", "EXITED", "FATAL")
# How long one XML-RPC call may take (the waiting itself is done by polling).
CALL_TIMEOUT = 10.0


class SupervisorInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    socket: str
    program: str
    wait: bool = True
    timeout: Timeout = 60.0

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return supervisor_socket(value)

    @field_validator("program")
    @classmethod
    def _program(cls, value: str) -> str:
        return program_name(value)


_OUTPUTS = {
    "program": "the program name",
    "state_before": "its supervisord state before (RUNNING, STOPPED, BACKOFF, FATAL, ...)",
    "pid_before": "its pid before (null when it was not running)",
    "state": "its state afterwards",
    "pid": "its pid afterwards (null when not running)",
    "changed": "false when it already was where it was asked to be",
    "uptime_s": "seconds it has been running, as supervisord counts (null when not running)",
}


def _client(ctx: ActionContext, action: str, inputs: SupervisorInputs) -> SupervisorClient:
    policy_of(ctx.services).check_socket(action, inputs.socket, real=True)
    return SupervisorClient(inputs.socket, timeout=min(CALL_TIMEOUT, inputs.timeout))


def _describe(info: ProcessInfo) -> str:
    text = f"state {info.state}"
    if info.pid:
        text += f", pid {info.pid}"
    if info.spawn_error:
        text += f", {info.spawn_error}"
    elif info.description and info.state not in ("RUNNING", "STOPPED"):
        text += f", {info.description}"
    return text


def _outputs(name: str, before: ProcessInfo, after: ProcessInfo, changed: bool) -> dict[str, Any]:
    return {
        "program": name,
        "state_before": before.state,
        "pid_before": before.pid,
        "state": after.state,
        "pid": after.pid,
        "changed": changed,
        "uptime_s": after.uptime_s,
    }


def wait_started(
    ctx: ActionContext, client: SupervisorClient, name: str, timeout: float, where: str
) -> ProcessInfo:
    """Poll until ``name`` is RUNNING; PermanentError once supervisord gave up on it (or it
    went to BACKOFF: it exited too quickly, as supervisord's own wait counts it)."""

    def check() -> tuple[ProcessInfo | None, str]:
        info = client.state(name)
        if info.state == "RUNNING":
            return info, ""
        if info.state in ("BACKOFF", "FATAL", "EXITED", "STOPPED"):
            raise PermanentError(
                shown(ctx, f"{name} did not stay up under {where} ({_describe(info)})")
            )
        return None, _describe(info)

    return wait_until(ctx, check, timeout=timeout, what=f"{name} to be RUNNING")


def wait_stopped(
    ctx: ActionContext, client: SupervisorClient, name: str, timeout: float
) -> ProcessInfo:
    def check() -> tuple[ProcessInfo | None, str]:
        info = client.state(name)
        return (info if info.state in STOPPED_STATES else None), _describe(info)

    return wait_until(ctx, check, timeout=timeout, what=f"{name} to stop")


def start(
    ctx: ActionContext, client: SupervisorClient, name: str, *, wait: bool, timeout: float
) -> ProcessInfo:
    """Start ``name`` (already running: nothing to do); with ``wait``, until RUNNING.

    A process supervisord is backing off from (it keeps exiting) is stopped first, so it
    gets a fresh start rather than the rest of its retries."""
    if client.state(name).state == "BACKOFF":
        client.stop(name, wait=True)
    client.start(name, wait=False)
    if not wait:
        return client.state(name)
    return wait_started(ctx, client, name, timeout, f"supervisord at {client.socket_path}")


def stop(
    ctx: ActionContext, client: SupervisorClient, name: str, *, wait: bool, timeout: float
) -> ProcessInfo:
    """Stop ``name`` (already stopped: nothing to do); with ``wait``, until it exited."""
    client.stop(name, wait=False)
    if not wait:
        return client.state(name)
    return wait_stopped(ctx, client, name, timeout)


class SupervisorStart(Action):
    name = "supervisor.start"
    description = "Start a program under supervisord (already running: nothing to do)."
    idempotent = True
    Inputs = SupervisorInputs
    outputs: ClassVar[dict[str, str]] = dict(_OUTPUTS)

    def plan(self, inputs: SupervisorInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_socket(self.name, inputs.socket)
        how = f", wait up to {fmt_seconds(inputs.timeout)} for RUNNING" if inputs.wait else ""
        return shown(ctx, f"start {inputs.program} through supervisord at {inputs.socket}{how}")

    def describe(self, outputs: dict[str, Any]) -> str:
        return _supervisor_sentence(outputs, "started")

    def run(self, inputs: SupervisorInputs, ctx: ActionContext) -> dict[str, Any]:
        client = _client(ctx, self.name, inputs)
        before = client.state(inputs.program)
        if before.state == "RUNNING":
            return _outputs(inputs.program, before, before, changed=False)
        after = start(ctx, client, inputs.program, wait=inputs.wait, timeout=inputs.timeout)
        return _outputs(inputs.program, before, after, changed=True)


class SupervisorStop(Action):
    name = "supervisor.stop"
    description = "Stop a program under supervisord (already stopped: nothing to do)."
    idempotent = True
    Inputs = SupervisorInputs
    outputs: ClassVar[dict[str, str]] = dict(_OUTPUTS)

    def plan(self, inputs: SupervisorInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_socket(self.name, inputs.socket)
        how = f", wait up to {fmt_seconds(inputs.timeout)} for it to exit" if inputs.wait else ""
        return shown(ctx, f"stop {inputs.program} through supervisord at {inputs.socket}{how}")

    def describe(self, outputs: dict[str, Any]) -> str:
        return _supervisor_sentence(outputs, "stopped")

    def run(self, inputs: SupervisorInputs, ctx: ActionContext) -> dict[str, Any]:
        client = _client(ctx, self.name, inputs)
        before = client.state(inputs.program)
        if before.state in STOPPED_STATES:
            return _outputs(inputs.program, before, before, changed=False)
        after = stop(ctx, client, inputs.program, wait=inputs.wait, timeout=inputs.timeout)
        return _outputs(inputs.program, before, after, changed=True)


class SupervisorRestart(Action):
    """Stop the program (if running) and start it again: a new process, a new pid.

    Not idempotent: a crash half-way leaves the run for a person to check. Errors after the
    stop was sent are reported as "outcome unknown" (never "retry"), saying what was done."""

    name = "supervisor.restart"
    description = "Restart a program under supervisord (stop, then start): a new pid."
    idempotent = False
    Inputs = SupervisorInputs
    outputs: ClassVar[dict[str, str]] = dict(_OUTPUTS)

    def plan(self, inputs: SupervisorInputs, ctx: ActionContext) -> str:
        policy_of(ctx.services).check_socket(self.name, inputs.socket)
        how = f", wait up to {fmt_seconds(inputs.timeout)} for RUNNING" if inputs.wait else ""
        return shown(
            ctx,
            f"restart {inputs.program} through supervisord at {inputs.socket} (stop, then "
            f"start){how}",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        return _supervisor_sentence(outputs, "restarted")

    def run(self, inputs: SupervisorInputs, ctx: ActionContext) -> dict[str, Any]:
        client = _client(ctx, self.name, inputs)
        name = inputs.program
        before = client.state(name)
        try:
            stop(ctx, client, name, wait=True, timeout=inputs.timeout)
        except (SupervisorError, OutcomeUnknownError) as exc:
            raise after_change(ctx, exc, f"stopping {name} was requested") from None
        try:
            after = start(ctx, client, name, wait=inputs.wait, timeout=inputs.timeout)
        except (SupervisorError, OutcomeUnknownError) as exc:
            raise after_change(ctx, exc, f"{name} was stopped; starting it failed") from None
        if inputs.wait and before.pid is not None and after.pid == before.pid:
            raise OutcomeUnknownError(
                shown(ctx, f"{name} still has pid {before.pid} after the restart")
            )
        return _outputs(name, before, after, changed=True)


def _supervisor_sentence(outputs: dict[str, Any], verb: str) -> str:
    program = outputs.get("program", "the program")
    state = str(outputs.get("state", "?")).lower()
    if outputs.get("changed") is False:
        return f"{program} already was {state}"
    pid = f" (pid {outputs['pid']})" if outputs.get("pid") else ""
    return f"{program} {verb}: {state}{pid}"
